"""The benchmark (`python -m fn2en_jax.bench --config=configs/bench.py`) at the paper's shapes.

VGG-16 face net teacher (VGG-Face's architecture), the full ExpNet student (64-128-256-512-512), 224x224 inputs,
batch 16, the optimizer settings of defaults.py. Every field can be overridden, e.g. a quick look:

  python -m fn2en_jax.bench --config=configs/bench.py --config.data.image_size=64 --config.bench.batch_size=4 \
    --config.bench.steps=3 --config.bench.stages=a,b
"""

import ml_collections

from fn2en_jax import defaults


def get_config():
  config = defaults.get_config()
  config.compilation_cache_dir = ''  # compile times are part of the measurement: never read them from a cache
  config.data.update(dict(image_size=224, num_threads=2, prefetch=4))
  config.teacher.update(dict(model='vgg_face', width=1.0, fc_dim=4096, batch_norm=False, tap='pool5', init=''))
  config.student.update(dict(widths=(64, 128, 256, 512, 512), fc_dim=256))
  config.bench = ml_collections.ConfigDict(dict(
      batch_size=16,          # global batch of every train step (and of the teacher forward)
      num_classes=7,          # CK+'s seven expressions
      devices=1,              # data-parallel replicas (a mesh over the first `devices` devices)
      warmup=1,               # untimed steps after the compiling one
      steps=5,                # timed steps; the median is reported
      # What to measure: train steps of the stages, 'teacher' (forward to the tap), 'pipeline' (grain alone),
      # 'inference' (the student's logits, latency per image at each batch and input size below).
      stages=('a', 'b', 'a_cached', 'scratch', 'face'),  # face (VGG-16 training) is the slowest: last
      teacher=True,
      pipeline=True,
      pipeline_batches=20,     # batches drawn from the grain iterator (after `warmup` ones)
      pipeline_source_size=256,  # side of the stored source images the pipeline decodes, resizes and crops
      inference=True,
      inference_batches=(1, 64),
      inference_sizes=(224, 96, 48),
      matmul_size=2048,       # the ceiling: an n x n x n matrix product in config.dtype
      bandwidth_mb=512,       # the other ceiling: x -> 2x over a float32 array this large (beyond every cache)
      pytorch=False,          # also run benchmarks/pytorch_stage_a.py (needs torch) and report JAX/PyTorch
      pytorch_threads=0,      # torch.set_num_threads; 0 = torch's default
  ))
  return config
