"""fn2en_jax.bench at tiny shapes: every field of every row is produced and sane, FLOPs agree with counts made by
hand, the JSON file round-trips and --compare prints the ratios."""

import copy
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from fn2en_jax import errors
from fn2en_jax.commands import bench

_spec = importlib.util.spec_from_file_location('bench_config', os.path.join(bench.REPO, 'configs', 'bench.py'))
bench_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_config)

SIZE = 32  # VGG-16 needs 32 pixels to reach its FC layers (pool5 1x1)


def tiny_config(**bench_overrides):
  config = bench_config.get_config()
  config.data.update(dict(image_size=SIZE, num_threads=1, prefetch=2))
  # Three student blocks end at 4x4; the teacher's pool3 is 4x4 too (fewer layers to compile than pool5).
  config.teacher.update(dict(width=1 / 32, fc_dim=16, tap='pool3'))
  config.student.update(dict(widths=(4, 4, 8), fc_dim=8))
  config.bench.update(dict(batch_size=4, warmup=1, steps=2, stages=('a', 'b'), pipeline_batches=3,
                           pipeline_source_size=20, inference_batches=(1, 4), inference_sizes=(SIZE,),
                           matmul_size=128, bandwidth_mb=64, pytorch=True, pytorch_threads=1))
  config.bench.update(bench_overrides)
  return config


@pytest.fixture(scope='module')
def results():
  return bench.run(tiny_config())


def test_every_row_and_field(results):
  rows = results['rows']
  inference = [f'inference_{SIZE}px_b1', f'inference_{SIZE}px_b4']
  expected = ['matmul_ceiling', 'bandwidth_ceiling', 'a', 'pytorch_a', 'b', 'pytorch_b', 'teacher_forward',
              'pipeline', *inference, 'matmul_ceiling_end', 'bandwidth_ceiling_end']
  assert list(rows) == expected
  ceilings = bench.Ceilings(rows['matmul_ceiling']['gflops_per_s'], rows['bandwidth_ceiling']['gbytes_per_s'])
  for name in ['a', 'b', 'teacher_forward', *inference]:
    r = rows[name]
    for field in ('compile_s', 'step_s', 'images_per_s', 'gflop_per_image', 'gflops_per_s', 'of_ceiling',
                  'gbyte_per_image', 'gbytes_per_s', 'flop_per_byte', 'of_bandwidth', 'of_bound',
                  'xla_temp_mb', 'xla_args_mb'):
      assert isinstance(r[field], float) and r[field] > 0 and math.isfinite(r[field]), (name, field, r[field])
    # The roofline, recomputed here from the row's own numbers and the same-run ceilings.
    intensity = r['gflop_per_image'] / r['gbyte_per_image']
    assert r['flop_per_byte'] == pytest.approx(intensity)
    assert r['bound'] == ('memory' if intensity < ceilings.ridge else 'compute')
    attainable = min(ceilings.gflops_per_s, intensity * ceilings.gbytes_per_s)
    assert r['of_bound'] == pytest.approx(r['gflops_per_s'] / attainable)
    assert r['of_bandwidth'] == pytest.approx(r['gbyte_per_image'] * r['images_per_s'] / ceilings.gbytes_per_s)
    assert len(r['times_s']) == 2 and r['step_s'] == statistics.median(r['times_s'])
    assert r['images_per_s'] == pytest.approx(r['images_per_call'] / r['step_s'])
    assert r['peak_mb'] is None  # the CPU backend reports no memory statistics
  assert rows['a']['finite_metrics'] and rows['b']['finite_metrics']
  assert rows[inference[1]]['latency_ms_per_image'] == pytest.approx(rows[inference[1]]['step_s'] / 4 * 1e3)
  for name in ('pytorch_a', 'pytorch_b'):
    r = rows[name]
    assert r['images_per_s'] > 0 and r['jax_over_pytorch'] == pytest.approx(
        rows[name[-1]]['images_per_s'] / r['images_per_s'])
  assert rows['pipeline']['images_per_s'] > 0 and rows['pipeline']['over_slowest_step'] > 0
  for name in ('bandwidth_ceiling', 'bandwidth_ceiling_end'):
    r = rows[name]
    assert r['bytes'] == 2 * 64 * 2**20  # XLA's count: 64 MB read and 64 MB written
    assert r['gbytes_per_s'] == pytest.approx(r['bytes'] / r['step_s'] / 1e9) and r['gbytes_per_s'] > 0
  assert results['meta']['image_size'] == SIZE and results['meta']['backend'] == 'cpu'


def test_flops_agree_with_counts_by_hand(results):
  rows = results['rows']
  n = 128
  assert rows['matmul_ceiling']['xla_flops'] == 2 * n ** 3
  # Stage a runs the teacher's forward and the student's forward and backward: more than the teacher alone.
  assert rows['a']['gflop_per_image'] > rows['teacher_forward']['gflop_per_image']
  # A train step is about three forward passes (the first layer needs no input gradient): 2x to 4x inference.
  ratio = rows['b']['gflop_per_image'] / rows[f'inference_{SIZE}px_b4']['gflop_per_image']
  assert 2.0 < ratio < 4.0, ratio


def test_flops_of_one_conv_layer():
  """XLA counts 2 FLOPs (a multiply and an add) per multiply-accumulate that touches the image, none for padding:
  a 3x3 VALID conv makes N * Ho * Wo * 9 * Cin * Cout of them; with one pixel of zero padding each output row
  sees 3H - 2 of the kernel's row taps over the image (3W - 2 columns likewise)."""
  n, h, w, cin, cout = 2, 10, 12, 5, 8
  x = jnp.zeros((n, h, w, cin))
  for padding, macs in (('VALID', n * (h - 2) * (w - 2) * 9 * cin * cout),
                        (1, n * (3 * h - 2) * (3 * w - 2) * cin * cout)):
    conv = nn.Conv(cout, (3, 3), padding=padding, use_bias=False)
    variables = conv.init(jax.random.key(0), x)
    compiled, _ = bench.compile_timed(jax.jit(conv.apply), variables, x)
    assert bench.flops_of(compiled) == pytest.approx(2 * macs, rel=0.01), padding


def test_roofline_figure(results, tmp_path):
  bench.plot_roofline(results, str(tmp_path / 'roofline.png'))
  assert (tmp_path / 'roofline.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert (tmp_path / 'roofline.png').stat().st_size > 10_000


def test_json_round_trip_and_compare(results, tmp_path):
  path = str(tmp_path / 'bench.json')
  bench.write_json(results, path=path)
  with open(path) as f:
    loaded = json.load(f)
  assert loaded == json.loads(json.dumps(results))
  assert not os.path.exists(path + '.tmp')
  same = bench.compare(results, loaded)
  assert '| a | 1.00 | 1.00 | 1.00 |' in same
  slower = copy.deepcopy(loaded)
  slower['rows']['b']['images_per_s'] /= 2
  line = next(l for l in bench.compare(results, slower).splitlines() if l.startswith('| b |'))
  assert line.split(' | ')[bench.COMPARED.index('images_per_s') + 1] == '2.00'


def test_command_line_output_and_compare(results, tmp_path):
  """The CLI: --output writes the file, --compare prints new/old per row; a missing --compare file is an input
  error (one line of cause, one of remedy, exit code 3). Only the ceiling and the pipeline: nothing to compile."""
  old = str(tmp_path / 'old.json')
  bench.write_json(results, path=old)
  new = str(tmp_path / 'new.json')
  cmd = [sys.executable, '-m', 'fn2en_jax.bench', '--config=configs/bench.py', '--config.bench.stages=()',
         '--config.bench.teacher=False', '--config.bench.inference=False', '--config.bench.matmul_size=128',
         '--config.bench.bandwidth_mb=16',
         '--config.bench.steps=2', f'--config.data.image_size={SIZE}', '--config.bench.pipeline_batches=2',
         '--config.bench.pipeline_source_size=20', '--config.bench.batch_size=4', f'--output={new}']
  done = subprocess.run([*cmd, f'--compare={old}'], cwd=bench.REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'ratios new/old' in done.stdout and '| pipeline |' in done.stdout.split('ratios new/old')[1]
  with open(new) as f:
    written = json.load(f)
  assert set(written['rows']) == {'matmul_ceiling', 'bandwidth_ceiling', 'pipeline', 'matmul_ceiling_end',
                                  'bandwidth_ceiling_end'}
  missing = subprocess.run([*cmd, f'--compare={tmp_path / "nope.json"}'], cwd=bench.REPO, capture_output=True,
                           text=True, timeout=300)
  assert missing.returncode == errors.INPUT
  assert 'nope.json' in missing.stderr and 'remedy:' in missing.stderr


def test_unknown_stage_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='config.bench.stages'):
    bench.run(tiny_config(stages=('a', 'c')))


def test_pytorch_rows_only_for_the_teachers_the_reference_has():
  config = tiny_config()
  assert bench.pytorch_stages(config) == ('a', 'b')
  config.teacher.model = 'dlib_resnet'  # benchmarks/pytorch_stage_a.py reimplements VGG teachers only
  assert bench.pytorch_stages(config) == ('b',)
