"""TFD (Toronto Face Database), 7 classes (anger, disgust, fear, happy, sadness, surprise, neutral), the 5 official
folds of TFD_96x96.mat: fold i tests on the rows coded 3 (test) in its column and trains on those coded 1 (train)
and 2 (valid; `--config.data.tfd_valid_in_train=False` leaves them out: nothing here selects models on them).
The 96x96 faces are upsampled to 224x224. Paper: scratch 82.5, VGG fine-tune 86.7, FN2EN 88.9.

  python -m fn2en_jax.data.build tfd/96x96 --manual_dir=$HOME/data/tfd --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.main --config=configs/tfd.py --workdir=$HOME/runs/tfd \
      --config.teacher.init=$HOME/face_nets/vgg_face --config.data.fold=-1

`--config.data.fold=-1` runs the 5 folds and writes kfold.md. The build step is optional: with
`--config.data.manual_dir=$HOME/data/tfd` the first run builds the dataset itself. The face net:
docs/face_nets.md; hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  # ~4178 labelled faces; a fold trains on about 80% of them (train + valid).
  config = recipe.get_config(name='tfd', config='96x96', protocol='tfd_folds', num_folds=5)
  config.paper = dict(scratch=82.5, face=86.7, fn2en=88.9)
  return config
