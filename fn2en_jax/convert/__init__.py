"""Converters from pretrained face nets on disk to face-net directories (`face_nets.save`) that
`--config.teacher.init=DIR` and `python -m fn2en_jax.features` read.

  python -m fn2en_jax.convert vgg_face --input=vgg_face_dag.pth --output=DIR [--keep_classifier]
  python -m fn2en_jax.convert dlib_resnet --output=DIR [--input=dlib_face_recognition_resnet_model_v1.dat]
  python -m fn2en_jax.convert sface --output=DIR [--input=face_recognition_sface_2021dec_int8bq.onnx]
  python -m fn2en_jax.convert facenet --output=DIR [--input=graph_final.pb]
"""

from __future__ import annotations

from fn2en_jax import errors
from fn2en_jax.convert import dlib_resnet, facenet, sface, vgg_face
from fn2en_jax.models import face_nets


def convert_vgg_face(input_path: str, output: str, keep_classifier: bool = False) -> None:
  """Reads and checks the whole file before `output` is written, so a bad file leaves no half-written face net."""
  layout, weights = vgg_face.detect(input_path)
  try:
    params, model_kwargs, input_size = vgg_face.to_flax(layout, weights, keep_classifier)
  except ValueError as e:
    raise errors.InputError(f'{input_path}: read as {layout.name}, but {e}', vgg_face.REMEDY) from e
  face_nets.save(output, 'vgg_face', model_kwargs, params, input_size)


def convert_dlib_resnet(input_path: str | None, output: str) -> None:
  """Reads and checks the whole file before `output` is written, so a bad file leaves no half-written face net."""
  path = input_path or dlib_resnet.default_path()
  net = dlib_resnet.read(path)
  try:
    params, model_kwargs = dlib_resnet.to_flax(net)
  except ValueError as e:
    raise errors.InputError(f'{path}: {e}', dlib_resnet.REMEDY) from e
  face_nets.save(output, 'dlib_resnet', model_kwargs, params, net['input']['size'][0])


def _convert_released_file(model: str, reader, input_path: str | None, output: str, what: str) -> None:
  """A face net read from the file a pip package ships (or `input_path`) by `reader` (convert/sface.py,
  convert/facenet.py: default_path, read, to_flax, REMEDY). The whole file is read and checked before `output` is
  written, so a bad file leaves no half-written face net."""
  path = input_path or reader.default_path()
  source = reader.read(path)
  try:
    params, batch_stats, model_kwargs, input_size = reader.to_flax(source)
  except (ValueError, KeyError) as e:
    raise errors.InputError(f'{path}: not {what} ({e})', reader.REMEDY) from e
  face_nets.save(output, model, model_kwargs, params, input_size, batch_stats=batch_stats)


def convert_sface(input_path: str | None, output: str) -> None:
  _convert_released_file('sface', sface, input_path, output, "OpenCV Zoo's SFace net")


def convert_facenet(input_path: str | None, output: str) -> None:
  _convert_released_file('facenet', facenet, input_path, output, "FaceNet's Inception-ResNet-v1 graph")
