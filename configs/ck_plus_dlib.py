"""CK+, 8 classes, 10 subject-independent folds, with dlib's public-domain ResNet as the face net: FN2EN on real
data without VGG-Face weights (the face net installs with pip: `face_recognition_models`).

  python -m fn2en_jax.convert dlib_resnet --output=$HOME/face_nets/dlib_resnet
  python -m fn2en_jax.data.build ck_plus/8class --manual_dir=$HOME/data/ck_plus --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/ck_plus_dlib.py --workdir=$HOME/runs/ck_plus_dlib \
      --config.teacher.init=$HOME/face_nets/dlib_resnet --config.data.fold=-1

The net was trained on 150x150 face chips, so the whole pipeline runs at 150x150. Stage a regresses the teacher's
`res4` map (the residual level before the last, late but still spatial: the counterpart of VGG's pool5), 4x4x256 at
150 px, the spatial size of the student's pool5 (4x4x512): a 1x1 adapter maps the student's 512 channels to 256
(docs/design.md, "The method"). Not a paper row: the paper's teacher is VGG-Face.
Hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='ck_plus', config='8class', num_folds=10)
  config.data.image_size = 150
  config.teacher.update(dict(model='dlib_resnet', tap='res4'))
  return config
