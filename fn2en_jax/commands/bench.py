"""How fast the stages train, against the machine's own limit measured in the same run.

  python -m fn2en_jax.bench --config=configs/bench.py --output=bench.json
  python -m fn2en_jax.bench --config=configs/bench.py --config.bench.pytorch=True --compare=old.json

For every train step (the stages' own step functions under `parallel.data_parallel_step`, exactly what training
runs), the teacher's forward pass, the student's inference and the input pipeline: compile time, the median time of
`steps` calls after `warmup` ones (each waited for with `block_until_ready`), images/s, FLOPs per image from XLA's
cost analysis of the compiled program, the achieved FLOP/s and its ratio to the ceiling: an n x n x n matrix product
in the same dtype, timed the same way in the same run. On a shared machine absolute times drift; the ratios to the
same-run ceiling (and to PyTorch's step, `--config.bench.pytorch=True`) are what to compare.

Small convolutions may be bound by memory rather than by the matrix unit, so each row is also placed on a roofline:
the bytes a call moves (XLA's cost analysis), the second ceiling (x -> 2x over `bandwidth_mb` MB, in the same run),
the arithmetic intensity (FLOPs per byte), which bound applies (below the ridge, peak FLOP/s over bandwidth:
memory), and `of_bound`, the fraction of min(peak FLOP/s, intensity x bandwidth) attained.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from fn2en_jax import cli, errors, models
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet, face_nets
from fn2en_jax.stages import a as stage_a
from fn2en_jax.stages import classification
from fn2en_jax.train import parallel
from fn2en_jax.train.state import create_state, init_variables


def student(config, num_classes, adapter_channels=None):
  return expnet.from_config(config, num_classes, axis_name=parallel.AXIS, adapter_channels=adapter_channels)


TRAIN_STAGES = ('face', 'a', 'a_cached', 'b', 'scratch')
PYTORCH_STAGES = ('a', 'b')  # the steps benchmarks/pytorch_stage_a.py reimplements

# The checkout (three levels up from fn2en_jax/commands/bench.py): the PyTorch reference is not part of the package.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTORCH_SCRIPT = os.path.join(REPO, 'benchmarks', 'pytorch_stage_a.py')
# Fields of a row that --compare divides; for the *_s ones smaller is better.
COMPARED = ('compile_s', 'step_s', 'images_per_s', 'gflops_per_s', 'of_ceiling', 'of_bound', 'latency_ms_per_image')


def pytorch_stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages benchmarks/pytorch_stage_a.py can reproduce for this config: its stage a has VGG teachers only."""
  return tuple(s for s in PYTORCH_STAGES if s != 'a' or config.teacher.model == 'vgg_face')


# ---------------------------------------------------------------------------------------------------------------
# Timing and XLA's own accounting


def median_seconds(call: Callable[[], Any], *, warmup: int, steps: int) -> tuple[float, list[float]]:
  """Median wall time of `steps` calls after `warmup` untimed ones; each call is waited for."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def compile_timed(jitted, *args) -> tuple[Any, float]:
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def flops_of(compiled) -> float:
  """FLOPs of one call of a compiled program, by XLA's HLO cost analysis (convolutions and dots count 2 per MAC)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device program
    analysis = analysis[0]
  return float(analysis.get('flops', 0.0)) if analysis else 0.0


def bytes_of(compiled) -> float:
  """Bytes one call reads and writes, by XLA's HLO cost analysis: every fused op's operands and results once, so
  an upper estimate of the memory traffic where caches keep a tensor between ops."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get('bytes accessed', 0.0)) if analysis else 0.0


def memory_of(compiled) -> dict:
  """XLA's plan for the program (temporaries, arguments, outputs) and the device's measured peak, where reported."""
  out = {'xla_temp_mb': None, 'xla_args_mb': None, 'peak_mb': None}
  try:
    m = compiled.memory_analysis()
    out['xla_temp_mb'] = m.temp_size_in_bytes / 2**20
    out['xla_args_mb'] = m.argument_size_in_bytes / 2**20
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    pass
  stats = jax.devices()[0].memory_stats()  # None on CPU
  if stats and 'peak_bytes_in_use' in stats:
    out['peak_mb'] = stats['peak_bytes_in_use'] / 2**20
  return out


@dataclasses.dataclass(frozen=True)
class Ceilings:
  """The machine's two bounds, measured in the same run: the matrix unit's FLOP/s and memory's bytes/s."""
  gflops_per_s: float
  gbytes_per_s: float

  @property
  def ridge(self) -> float:
    """FLOPs per byte where the two bounds meet: a program doing fewer per byte is bound by memory."""
    return self.gflops_per_s / self.gbytes_per_s


def roofline(flops: float, nbytes: float, step_s: float, ceilings: Ceilings) -> dict:
  """Where a program sits on the roofline: its arithmetic intensity, which bound applies to it, and the fraction
  of that bound it attains (attainable = min(peak FLOP/s, intensity x bandwidth))."""
  if not (flops > 0 and nbytes > 0 and step_s > 0):
    return dict(flop_per_byte=None, bound=None, of_bound=None, of_bandwidth=None, gbytes_per_s=None)
  intensity = flops / nbytes
  attainable = min(ceilings.gflops_per_s, intensity * ceilings.gbytes_per_s)
  gbytes_per_s = nbytes / step_s / 1e9
  return dict(flop_per_byte=intensity, bound='memory' if intensity < ceilings.ridge else 'compute',
              of_bound=flops / step_s / 1e9 / attainable, of_bandwidth=gbytes_per_s / ceilings.gbytes_per_s,
              gbytes_per_s=gbytes_per_s)


def row(kind: str, *, compile_s: float, step_s: float, times: list[float], images: int, flops: float,
        nbytes: float, ceilings: Ceilings, memory: dict, **extra) -> dict:
  gflops_per_s = flops / step_s / 1e9 if step_s > 0 else 0.0
  return dict(kind=kind, compile_s=compile_s, step_s=step_s, times_s=times, images_per_call=images,
              images_per_s=images / step_s, gflop_per_image=flops / images / 1e9, gflops_per_s=gflops_per_s,
              of_ceiling=gflops_per_s / ceilings.gflops_per_s, gbyte_per_image=nbytes / images / 1e9,
              **roofline(flops, nbytes, step_s, ceilings), **memory, **extra)


def matmul_ceiling(bench: ml_collections.ConfigDict, dtype) -> dict:
  """The device's attainable FLOP/s: an n^3 matrix product in the steps' dtype, timed like the steps."""
  n = bench.matmul_size
  x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  y = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
  compiled, compile_s = compile_timed(jax.jit(jnp.matmul), x, y)
  step_s, times = median_seconds(lambda: compiled(x, y), warmup=bench.warmup, steps=bench.steps)
  flops = 2.0 * n ** 3
  return dict(kind='ceiling', n=n, compile_s=compile_s, step_s=step_s, times_s=times, gflops_per_s=flops / step_s / 1e9,
              xla_flops=flops_of(compiled))


def bandwidth_ceiling(bench: ml_collections.ConfigDict) -> dict:
  """The device's attainable memory bandwidth: x -> 2 x over a float32 array of `bandwidth_mb` MB (far beyond the
  caches), in place (the input donated, each call's output the next one's input), timed like the steps; the bytes
  are XLA's count (each element read once and written once). In place because a fresh output each call times the
  kernel's zeroing of new pages instead: 3.2 against 20.9 GB/s on 2 AVX2 cores of an AMD EPYC, 2026-12-02."""
  n = bench.bandwidth_mb * 2**20 // 4
  holder = [jnp.ones((n,), jnp.float32)]
  compiled, compile_s = compile_timed(jax.jit(lambda v: v * 2, donate_argnums=0), holder[0])

  def call():
    holder[0] = compiled(holder[0])
    return holder[0]

  step_s, times = median_seconds(call, warmup=bench.warmup, steps=bench.steps)
  nbytes = bytes_of(compiled)
  return dict(kind='ceiling', mb=bench.bandwidth_mb, compile_s=compile_s, step_s=step_s, times_s=times,
              bytes=nbytes, gbytes_per_s=nbytes / step_s / 1e9)


# ---------------------------------------------------------------------------------------------------------------
# What is measured


def _images(batch: int, size: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def _teacher(config, num_classes, dtype):
  return face_nets.build(config.teacher, num_classes, dtype, axis_name=parallel.AXIS)  # BN stats over replicas


class Setup:
  """The models and variables every measurement shares, built once."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    bench = config.bench
    self.dtype = models.dtype(config)
    self.size = config.data.image_size
    self.mesh = parallel.make_mesh(jax.devices()[:bench.devices])
    self.rng = jax.random.key(config.seed)
    self.teacher = _teacher(config, bench.num_classes, self.dtype)
    self._teacher_vars = None

  @property
  def teacher_vars(self):
    if self._teacher_vars is None:  # random weights: a step takes as long with them as with trained ones
      self._teacher_vars = parallel.replicate(init_variables(self.teacher, self.rng, self.size), self.mesh)
    return self._teacher_vars

  def tap_shape(self) -> tuple[int, ...]:
    return jax.eval_shape(functools.partial(self.teacher.apply, train=False, tap=self.config.teacher.tap),
                          self.teacher_vars, jnp.zeros((1, self.size, self.size, 3))).shape

  def batch(self, **extra) -> dict:
    b = self.config.bench.batch_size
    host = {'image': _images(b, self.size), 'label': np.arange(b, dtype=np.int32) % self.config.bench.num_classes}
    host.update(extra)
    return parallel.shard_batch(host, self.mesh)

  def stage(self, name: str):
    """(state, step, batch, aux) of a train stage, built from the stage modules' own functions."""
    # A fresh key: the state holds its data and is donated to the step, which deletes its buffers.
    config, rng = self.config, jax.random.key(self.config.seed)
    if name == 'face':
      model = self.teacher
      variables = self.teacher_vars
      stage_cfg = config.stage_face
      state = create_state(model, jax.device_get(variables), stage_cfg, rng)
      return state, classification.step_for(stage_cfg), self.batch(), None
    if name in ('a', 'a_cached'):
      # The stage's own build: its student, initial state and step; with `batch['target']` (the cached maps) the
      # step runs the student only.
      built = stage_a.build(config, self.teacher, self.teacher_vars, config.bench.num_classes, rng)
      if name == 'a':
        return built.state, built.train_step, self.batch(), self.teacher_vars
      shape = (config.bench.batch_size, *built.map_shape)
      target = np.random.default_rng(1).normal(size=shape).astype(np.float32)
      return built.state, built.train_step, self.batch(target=target), self.teacher_vars
    stage_cfg = config[f'stage_{name}']
    model = student(config, config.bench.num_classes)
    state = create_state(model, init_variables(model, rng, self.size), stage_cfg, rng)
    return state, classification.step_for(stage_cfg), self.batch(), None


def bench_train_stage(setup: Setup, name: str, ceilings: Ceilings) -> dict:
  bench = setup.config.bench
  state, step, batch, aux = setup.stage(name)
  state = parallel.replicate(state, setup.mesh)
  jitted = parallel.data_parallel_step(step, setup.mesh)
  compiled, compile_s = compile_timed(jitted, state, batch, aux)
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], batch, aux)  # the state is donated, as in training
    return holder[0], metrics

  step_s, times = median_seconds(call, warmup=bench.warmup, steps=bench.steps)
  metrics = jax.device_get(call()[1])
  finite = all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(metrics))
  return row('train', compile_s=compile_s, step_s=step_s, times=times, images=bench.batch_size,
             flops=flops_of(compiled), nbytes=bytes_of(compiled), ceilings=ceilings, memory=memory_of(compiled),
             finite_metrics=finite)


def bench_teacher(setup: Setup, ceilings: Ceilings) -> dict:
  bench, config = setup.config.bench, setup.config
  tap_shape = setup.tap_shape()
  forward = jax.jit(functools.partial(stage_a.teacher_map, setup.teacher, tap=config.teacher.tap,
                                      size=tuple(tap_shape[1:3])))
  images = jnp.asarray(_images(bench.batch_size, setup.size))
  compiled, compile_s = compile_timed(forward, setup.teacher_vars, images)
  step_s, times = median_seconds(lambda: compiled(setup.teacher_vars, images), warmup=bench.warmup, steps=bench.steps)
  return row('forward', compile_s=compile_s, step_s=step_s, times=times, images=bench.batch_size,
             flops=flops_of(compiled), nbytes=bytes_of(compiled), ceilings=ceilings, memory=memory_of(compiled))


def bench_inference(setup: Setup, ceilings: Ceilings) -> dict[str, dict]:
  """The student's logits (eval mode), latency per image at each batch size and input size."""
  bench, config = setup.config.bench, setup.config
  model = student(config, bench.num_classes)
  rows = {}
  for size in bench.inference_sizes:
    variables = init_variables(model, setup.rng, size)
    forward = jax.jit(functools.partial(model.apply, train=False))
    for batch in bench.inference_batches:
      images = jnp.asarray(_images(batch, size))
      compiled, compile_s = compile_timed(forward, variables, images)
      step_s, times = median_seconds(lambda: compiled(variables, images), warmup=bench.warmup, steps=bench.steps)
      r = row('inference', compile_s=compile_s, step_s=step_s, times=times, images=batch,
              flops=flops_of(compiled), nbytes=bytes_of(compiled), ceilings=ceilings, memory=memory_of(compiled))
      r['latency_ms_per_image'] = step_s / batch * 1e3
      rows[f'inference_{size}px_b{batch}'] = r
  return rows


def bench_pipeline(config: ml_collections.ConfigDict) -> dict:
  """The grain train iterator alone (decode, resize, random crop and flip, batch) over in-memory source images."""
  bench = config.bench
  side = bench.pipeline_source_size
  n = max(4 * bench.batch_size, 64)
  rng = np.random.default_rng(0)
  source = [{'image': rng.integers(0, 256, (side, side, 3), dtype=np.uint8), 'label': i % bench.num_classes}
            for i in range(n)]
  examples = pipeline.Examples(source=source, indices=np.arange(n), labels=np.arange(n) % bench.num_classes,
                               subjects=np.arange(n), class_names=tuple(str(i) for i in range(bench.num_classes)))
  start = time.perf_counter()
  iterator = pipeline.train_iterator(examples, config.data, global_batch_size=bench.batch_size, seed=0)
  next(iterator)
  startup_s = time.perf_counter() - start
  for _ in range(bench.warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(bench.pipeline_batches):
    batch = next(iterator)
  total = time.perf_counter() - start
  assert batch['image'].shape == (bench.batch_size, config.data.image_size, config.data.image_size, 3)
  step_s = total / bench.pipeline_batches
  return dict(kind='pipeline', compile_s=startup_s, step_s=step_s, images_per_call=bench.batch_size,
              images_per_s=bench.batch_size / step_s, source_size=side, threads=config.data.num_threads)


def bench_pytorch(config: ml_collections.ConfigDict, jax_rows: dict, stage: str) -> dict[str, dict]:
  """benchmarks/pytorch_stage_a.py in a subprocess (its own threads, nothing shared with JAX): stage a or b."""
  bench = config.bench
  cmd = [sys.executable, PYTORCH_SCRIPT, f'--stage={stage}', f'--image_size={config.data.image_size}',
         f'--batch_size={bench.batch_size}', f'--widths={",".join(map(str, config.student.widths))}',
         # The teacher only for stage a (b has none: its defaults are never read).
         *([f'--teacher_width={config.teacher.width}', f'--teacher_tap={config.teacher.tap}'] if stage == 'a' else []),
         f'--fc_dim={config.student.fc_dim}',
         f'--num_classes={bench.num_classes}', f'--warmup={bench.warmup}', f'--steps={bench.steps}',
         f'--lr={config.stage_a.learning_rate}', f'--threads={bench.pytorch_threads}']
  done = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f'{" ".join(cmd)} failed:\n{done.stderr[-3000:]}')
  result = json.loads(done.stdout.strip().splitlines()[-1])
  result['kind'] = 'pytorch'
  mine = jax_rows.get(stage)
  if mine:
    # The same computation, so XLA's FLOP count of the JAX step stands for PyTorch's too.
    result['gflop_per_image'] = mine['gflop_per_image']
    result['gflops_per_s'] = mine['gflop_per_image'] * result['images_per_s']
    result['of_ceiling'] = mine['of_ceiling'] * result['images_per_s'] / mine['images_per_s']
    if mine['of_bound'] is not None:  # the same bound, at PyTorch's speed
      result['bound'] = mine['bound']
      result['of_bound'] = mine['of_bound'] * result['images_per_s'] / mine['images_per_s']
    result['jax_over_pytorch'] = mine['images_per_s'] / result['images_per_s']
  return {f'pytorch_{stage}': result}


def run(config: ml_collections.ConfigDict, on_row: Callable[[dict], None] = lambda results: None) -> dict:
  """Every measurement the config asks for; `on_row(results)` after each, so a long run leaves what it has."""
  bench = config.bench
  unknown = [s for s in bench.stages if s not in TRAIN_STAGES]
  if unknown:
    raise errors.ConfigError(f'config.bench.stages: unknown {unknown}; expected some of {list(TRAIN_STAGES)}',
                             'pass e.g. --config.bench.stages="(\'a\', \'b\')"')
  if bench.batch_size % bench.devices or bench.devices > jax.device_count():
    raise errors.ConfigError(
        f'config.bench.devices={bench.devices} must divide config.bench.batch_size={bench.batch_size} and be at '
        f'most the {jax.device_count()} devices here', 'change --config.bench.devices or --config.bench.batch_size')
  if min(bench.steps, bench.warmup + 1, bench.batch_size, bench.matmul_size, bench.bandwidth_mb) < 1:
    raise errors.ConfigError('config.bench.steps, batch_size, matmul_size and bandwidth_mb must be >= 1 and warmup '
                             '>= 0',
                             'fix the field on the command line')
  setup = Setup(config)
  results = {'meta': meta(config), 'rows': {}}
  if bench.pytorch and 'a' in bench.stages and 'a' not in pytorch_stages(config):
    results['meta']['pytorch_skipped'] = (f'a: benchmarks/pytorch_stage_a.py has VGG teachers only, not '
                                          f'{config.teacher.model!r}')
    print(f'no PyTorch row for stage {results["meta"]["pytorch_skipped"]}', flush=True)
  rows = results['rows']
  ceiling = matmul_ceiling(bench, setup.dtype)
  rows['matmul_ceiling'] = ceiling
  rows['bandwidth_ceiling'] = bandwidth_ceiling(bench)
  peak = Ceilings(ceiling['gflops_per_s'], rows['bandwidth_ceiling']['gbytes_per_s'])
  print(f'ceilings: {bench.matmul_size}^3 matmul in {config.dtype}: {peak.gflops_per_s:.1f} GFLOP/s; '
        f'{bench.bandwidth_mb} MB scaled: {peak.gbytes_per_s:.1f} GB/s (ridge {peak.ridge:.1f} FLOP/byte)', flush=True)
  on_row(results)
  for name in bench.stages:
    rows[name] = bench_train_stage(setup, name, peak)
    print(f'{name}: {rows[name]["images_per_s"]:.2f} img/s, {rows[name]["of_ceiling"]:.2f} of the matmul ceiling, '
          f'{rows[name]["of_bound"]:.2f} of its {rows[name]["bound"]} bound', flush=True)
    on_row(results)
    if bench.pytorch and name in pytorch_stages(config):  # right after JAX's, so both see about the same load
      rows.update(bench_pytorch(config, rows, name))
      on_row(results)
  if bench.teacher:
    rows['teacher_forward'] = bench_teacher(setup, peak)
    on_row(results)
  if bench.pipeline:
    rows['pipeline'] = bench_pipeline(config)
    slowest = min((rows[s]['images_per_s'] for s in bench.stages), default=None)
    if slowest:
      rows['pipeline']['over_slowest_step'] = rows['pipeline']['images_per_s'] / slowest
    on_row(results)
  if bench.inference:
    rows.update(bench_inference(setup, peak))
    on_row(results)
  # The ceiling once more at the end: when the machine is shared its load changes during the run.
  rows['matmul_ceiling_end'] = matmul_ceiling(bench, setup.dtype)
  rows['bandwidth_ceiling_end'] = bandwidth_ceiling(bench)
  on_row(results)
  return results


def meta(config: ml_collections.ConfigDict) -> dict:
  cpu = ''
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), '')
  return dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), jax=jax.__version__,
              backend=jax.default_backend(), device=str(jax.devices()[0].device_kind), cpu=cpu,
              cpu_count=os.cpu_count(), xla_flags=os.environ.get('XLA_FLAGS', ''), python=platform.python_version(),
              dtype=config.dtype, image_size=config.data.image_size, batch_size=config.bench.batch_size,
              student_widths=list(config.student.widths), teacher=f'{config.teacher.model} x{config.teacher.width}',
              config=json.loads(config.to_json_best_effort()))


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def _fmt(value, spec: str) -> str:
  return 'n/a' if value is None else format(value, spec)


def table(results: dict) -> str:
  rows = results['rows']
  lines = ['| what | compile s | step s | img/s | GFLOP/img | GFLOP/s | of ceiling | GB/s | FLOP/B | bound | of bound '
           '| ms/img | XLA temp MB | peak MB |',
           '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |']
  for name, r in rows.items():
    lines.append('| ' + ' | '.join([
        name, _fmt(r.get('compile_s'), '.1f'), _fmt(r.get('step_s'), '.3f'), _fmt(r.get('images_per_s'), '.2f'),
        _fmt(r.get('gflop_per_image'), '.3g'), _fmt(r.get('gflops_per_s'), '.1f'), _fmt(r.get('of_ceiling'), '.2f'),
        _fmt(r.get('gbytes_per_s'), '.1f'), _fmt(r.get('flop_per_byte'), '.1f'), r.get('bound') or 'n/a',
        _fmt(r.get('of_bound'), '.2f'),
        _fmt(r.get('latency_ms_per_image'), '.1f'), _fmt(r.get('xla_temp_mb'), '.0f'),
        _fmt(r.get('peak_mb'), '.0f')]) + ' |')
  return '\n'.join(lines)


def headline(results: dict) -> str:
  """Each target of the issue beside the measured ratio."""
  rows = results['rows']
  out = []
  for stage in ('a', 'b'):
    if stage in rows:
      line = f'stage {stage}: {rows[stage]["of_ceiling"]:.2f} of the ceiling (target 0.6)'
      if f'pytorch_{stage}' in rows:
        line += f', {rows[f"pytorch_{stage}"]["jax_over_pytorch"]:.2f}x PyTorch (target 1.0)'
      out.append(line)
  if 'a' in rows and 'a_cached' in rows:
    out.append(f'stage a with cached teacher maps: {rows["a_cached"]["images_per_s"] / rows["a"]["images_per_s"]:.2f}x '
               'stage a online (target 2.0)')
  batches = [k for k in rows if k.startswith('inference_') and k.endswith('_b64')]
  for k in batches:
    out.append(f'{k}: {rows[k]["of_ceiling"]:.2f} of the ceiling (target 0.6), '
               f'{rows[k]["latency_ms_per_image"]:.1f} ms/image')
  if 'pipeline' in rows and 'over_slowest_step' in rows['pipeline']:
    out.append(f'input pipeline: {rows["pipeline"]["over_slowest_step"]:.1f}x the slowest step (target 3)')
  return '\n'.join(out)


def compare(new: dict, old: dict) -> str:
  """new/old of every compared field of the rows both runs have."""
  lines = ['| what | ' + ' | '.join(COMPARED) + ' |', '| --- |' + ' ---: |' * len(COMPARED)]
  for name, r in new['rows'].items():
    o = old['rows'].get(name)
    if not o:
      continue
    cells = []
    for field in COMPARED:
      a, b = r.get(field), o.get(field)
      cells.append(f'{a / b:.2f}' if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else 'n/a')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot_roofline(results: dict, path: str) -> None:
  """The roofline of a run: attainable GFLOP/s against FLOPs per byte (log-log), the two same-run ceilings as its
  roof, each measured row a point at its intensity and achieved GFLOP/s."""
  from fn2en_jax import results as results_lib  # pylint: disable=import-outside-toplevel
  plt = results_lib.pyplot()
  rows = results['rows']
  ceilings = Ceilings(rows['matmul_ceiling']['gflops_per_s'], rows['bandwidth_ceiling']['gbytes_per_s'])
  points = {name: r for name, r in rows.items() if r.get('flop_per_byte')}
  intensities = [r['flop_per_byte'] for r in points.values()] + [ceilings.ridge]
  x = np.geomspace(min(intensities) / 4, max(intensities) * 4, 200)
  fig, ax = plt.subplots(figsize=(9.5, 4.5))
  ax.loglog(x, np.minimum(ceilings.gflops_per_s, x * ceilings.gbytes_per_s), 'k-', lw=1.5,
            label=f'roof: {ceilings.gflops_per_s:.0f} GFLOP/s matmul, {ceilings.gbytes_per_s:.1f} GB/s')
  for name, r in points.items():
    ax.loglog(r['flop_per_byte'], r['gflops_per_s'], 'o',
              label=f"{name}: {r['of_bound']:.2f} of its {r['bound']} bound")
  ax.set_xlabel('FLOPs per byte (XLA cost analysis)')
  ax.set_ylabel('GFLOP/s')
  meta = results['meta']
  ax.set_title(f"{meta['cpu'] or meta['device']}, {meta['image_size']} px, batch {meta['batch_size']}, "
               f"{meta['date']}", fontsize=8)
  ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1))  # beside the plot: it hides no point
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_json(results: dict, *, path: str) -> None:
  workdir_lib.write_json(path, results)  # never a half-written file


def print_none(results: dict) -> None:
  del results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  old = None
  if FLAGS.compare:
    if not os.path.exists(FLAGS.compare):
      raise errors.InputError(f'--compare={FLAGS.compare}: no such file',
                              'pass the JSON file an earlier run wrote with --output')
    with open(FLAGS.compare) as f:
      old = json.load(f)
  results = run(FLAGS.config, on_row=functools.partial(write_json, path=FLAGS.output) if FLAGS.output else print_none)
  print(table(results))
  print(headline(results))
  if FLAGS.roofline:
    plot_roofline(results, FLAGS.roofline)
    print(f'roofline: {FLAGS.roofline}')
  if old is not None:
    print(f'\nratios new/old against {FLAGS.compare} ({old["meta"]["date"]}):')
    print(compare(results, old))


if __name__ == '__main__':
  # Flags only for the command: the tests import this module beside other commands that have an --output.
  config_flags.DEFINE_config_file('config', 'configs/bench.py', 'Benchmark config file.', lock_config=True)
  flags.DEFINE_string('output', '', 'Write the results here as JSON.')
  flags.DEFINE_string('compare', '', 'A JSON file of an earlier run: print the ratios new/old.')
  flags.DEFINE_string('roofline', '', 'Draw the roofline of the run into this PNG file.')
  cli.run_app(main)
