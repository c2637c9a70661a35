"""SFEW 2.0, 7 classes (anger, disgust, fear, happy, sadness, surprise, neutral): trained on Train (958 faces),
reported on Val (436), as in the paper (the test labels are not public). Paper: scratch 39.55, VGG fine-tune
41.23, FN2EN 48.19.

  python -m fn2en_jax.main --config=configs/sfew.py --workdir=$HOME/runs/sfew \
      --config.data.manual_dir=$HOME/data/sfew --config.teacher.init=$HOME/face_nets/vgg_face

where $HOME/data/sfew holds Train/Train_Aligned_Faces/{Angry,...}/*.png and Val/Val_Aligned_Faces/... The first run
builds the dataset (about 1.5 min); or build it beforehand, after which --config.data.manual_dir is not needed:

  python -m fn2en_jax.data.build sfew --manual_dir=$HOME/data/sfew --data_dir=$HOME/tensorflow_datasets

The face net: docs/face_nets.md (`python -m fn2en_jax.convert vgg_face --input=vgg_face_dag.pth
--output=$HOME/face_nets/vgg_face`); hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU add
`--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(name='sfew', config='', eval_split='validation')
  config.paper = dict(scratch=39.55, face=41.23, fn2en=48.19)
  return config
