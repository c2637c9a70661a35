"""A trained net of a workdir, with its preprocessing, as a TensorFlow SavedModel, a TFLite model or an ONNX model.

  python -m fn2en_jax.export --workdir=DIR --format=saved_model --output=OUT [--stage=b] [--fold=i]
  python -m fn2en_jax.export --workdir=DIR --format=tflite --output=OUT
  python -m fn2en_jax.export --workdir=DIR --format=onnx --output=OUT

The exported function takes uint8 RGB face crops, shape (N, S, S, 3) with S = `config.data.image_size` and any N
(the batch dimension is polymorphic), and returns {'probabilities': float32 (N, num_classes)}. Inside it does what
`predictor.Predictor.forward` does, through `jax.experimental.jax2tf`: grey for grey datasets, scaling to [-1, 1], the
net, softmax. A crop of S x S is what `predictor.prepare` makes of a face crop (the training pipeline's evaluation
resize and centre crop); `predictor.crop_face` frames a detected face as the dataset did.

OUT holds, beside the model, `labels.txt` (the class names in output order, one a line) and `export.json` (stage,
input size, the crop margin and sizes, grey or not): what a deployment needs to frame faces as training did.

  saved_model: OUT is the SavedModel folder (signature 'serving_default', input 'images');
  tflite:      OUT/model.tflite, converted by tf.lite.TFLiteConverter from that SavedModel.
  onnx:        OUT/model.onnx (opset 18; input 'images', output 'probabilities', batch dimension 'N'), translated
               from the same function's jaxpr by fn2en_jax/jaxpr_onnx.py (which says why neither jax2onnx nor
               tf2onnx), for ONNX Runtime or OpenCV's DNN module. Needs `pip install 'fn2en-jax[onnx]'`.

The model is written into a temporary folder beside OUT and moved into place when complete: a failed export leaves
nothing behind. OUT must not exist, or be empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags, logging

from fn2en_jax import cli, errors
from fn2en_jax import predictor as predictor_lib

FORMATS = ('saved_model', 'tflite', 'onnx')
LABELS = 'labels.txt'
META = 'export.json'
TFLITE = 'model.tflite'
ONNX = 'model.onnx'
# The exported computation runs where the SavedModel is served, which may have another accelerator than the
# machine that exports it.
PLATFORMS = ('cpu', 'cuda', 'tpu')


def _tf():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def to_tf_module(predictor: predictor_lib.Predictor, platforms: Sequence[str] = PLATFORMS):
  """A tf.Module whose `serve` is `predictor.forward` on its variables, held as tf.Variables (not constants, so a
  big face net does not hit the 2 GB limit of a graph)."""
  tf = _tf()
  from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel
  size = predictor.spec.image_size
  forward = jax2tf.convert(predictor.forward, polymorphic_shapes=[None, f'(b, {size}, {size}, 3)'],
                           with_gradient=False, native_serialization_platforms=tuple(platforms))
  module = tf.Module()
  module.variables_ = tf.nest.map_structure(tf.Variable, jax.tree.map(np.asarray, predictor.variables))

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name='images')])
  def serve(images):
    return {'probabilities': forward(module.variables_, images)}

  module.serve = serve
  return module


def metadata(predictor: predictor_lib.Predictor, stage: str, workdir: str) -> dict:
  return {'stage': stage, 'workdir': os.path.abspath(workdir), 'input': 'uint8 RGB (N, S, S, 3)',
          'class_names': list(predictor.class_names), **dataclasses.asdict(predictor.spec)}


def _write_saved_model(predictor: predictor_lib.Predictor, path: str) -> None:
  tf = _tf()
  module = to_tf_module(predictor)
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})


def _write_tflite(saved_model: str, path: str) -> None:
  converter = _tf().lite.TFLiteConverter.from_saved_model(saved_model)
  with open(path, 'wb') as f:
    f.write(converter.convert())


def _write_onnx(predictor: predictor_lib.Predictor, path: str) -> None:
  from fn2en_jax import jaxpr_onnx  # pylint: disable=import-outside-toplevel
  size = predictor.spec.image_size
  model = jaxpr_onnx.convert(lambda images: predictor.forward(predictor.variables, images),
                             jax.ShapeDtypeStruct((1, size, size, 3), np.uint8),
                             doc=f'fn2en_jax: uint8 RGB (N, {size}, {size}, 3) -> probabilities of '
                                 f'{list(predictor.class_names)}')
  with open(path, 'wb') as f:
    f.write(model.SerializeToString())


def check_output(output: str) -> str:
  """The absolute path of `output`, which must not exist or be an empty folder."""
  output = os.path.abspath(os.path.expanduser(output))
  if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
    raise errors.WorkdirError(f'--output={output} exists and is not an empty folder',
                              'pass a new folder, or remove that one first')
  return output


def export(predictor: predictor_lib.Predictor, output: str, fmt: str, *, stage: str = 'b', workdir: str = '') -> str:
  """Writes the export of `predictor` to `output` (see the module docstring); returns the model's path."""
  if fmt not in FORMATS:
    raise errors.ConfigError(f'--format={fmt!r}: expected one of {FORMATS}', 'e.g. --format=saved_model')
  output = check_output(output)
  parent = os.path.dirname(output)
  try:
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.', dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the export from a serving user
  except OSError as e:
    raise errors.WorkdirError(f'--output={output}: cannot write in {parent} ({e.strerror})',
                              'pass a folder you can write to') from e
  try:
    if fmt == 'saved_model':
      _write_saved_model(predictor, staging)
    elif fmt == 'onnx':
      _write_onnx(predictor, os.path.join(staging, ONNX))
    else:
      with tempfile.TemporaryDirectory() as saved_model:
        _write_saved_model(predictor, saved_model)
        _write_tflite(saved_model, os.path.join(staging, TFLITE))
    with open(os.path.join(staging, LABELS), 'w') as f:
      f.write(''.join(f'{name}\n' for name in predictor.class_names))
    with open(os.path.join(staging, META), 'w') as f:
      json.dump(metadata(predictor, stage, workdir), f, indent=2)
    if os.path.isdir(output):
      os.rmdir(output)
    os.replace(staging, output)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return output if fmt == 'saved_model' else os.path.join(output, {'tflite': TFLITE, 'onnx': ONNX}[fmt])


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'The workdir of a finished run (python -m fn2en_jax.main).')
  flags.DEFINE_enum('stage', 'b', predictor_lib.STAGES, 'Which trained net: b (FN2EN), scratch, or face.')
  flags.DEFINE_integer('fold', None, 'k-fold workdirs: the fold whose net is exported (default: fold 0).')
  flags.DEFINE_enum('format', 'saved_model', FORMATS, 'saved_model, tflite or onnx.')
  flags.DEFINE_string('output', None, 'A new (or empty) folder for the export.')


def main(argv: Sequence[str]) -> None:
  logging.set_verbosity(logging.WARNING)  # Orbax logs every array it restores at INFO
  if len(argv) > 1:
    raise errors.ConfigError(f'unexpected arguments {argv[1:]}', 'pass everything as --flags')
  f = flags.FLAGS
  for name in ('workdir', 'output'):
    if f[name].value is None:
      raise errors.ConfigError(f'--{name} is required', 'see python -m fn2en_jax.export --help')
  check_output(f.output)  # before the minute of loading and converting, not after
  predictor = predictor_lib.Predictor.from_workdir(f.workdir, f.stage, fold=f.fold)
  path = export(predictor, f.output, f.format, stage=f.stage, workdir=f.workdir)
  print(f'exported stage {f.stage} ({len(predictor.class_names)} classes, input uint8 '
        f'(N, {predictor.spec.image_size}, {predictor.spec.image_size}, 3)) to {path}')


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
