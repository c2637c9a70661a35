"""SFEW 2.0 with FER2013's 28709 training faces as extra training data; reported on SFEW's Val, as in the paper.
Both use the label order anger, disgust, fear, happy, sadness, surprise, neutral. FER2013 only ever trains.
Paper: FN2EN 55.15 (the other rows are not reported with extra data).

  python -m fn2en_jax.main --config=configs/sfew_fer2013.py --workdir=$HOME/runs/sfew_fer2013 \
      --config.data.manual_dir=$HOME/data/sfew --config.data.extra_manual_dir=$HOME/data/fer2013 \
      --config.teacher.init=$HOME/face_nets/vgg_face

where $HOME/data/fer2013 holds fer2013.csv. Or build both beforehand, after which the manual_dir flags are not
needed:

  python -m fn2en_jax.data.build sfew --manual_dir=$HOME/data/sfew --data_dir=$HOME/tensorflow_datasets
  python -m fn2en_jax.data.build fer2013 --manual_dir=$HOME/data/fer2013 --data_dir=$HOME/tensorflow_datasets

With 31 times more training faces than SFEW alone, each stage runs fewer epochs (about as many steps as 3-4x the
SFEW recipe). The face net: docs/face_nets.md; hyper-parameters, reconstructed: fn2en_jax/recipe.py. On GPU/TPU
add `--config.dtype=bfloat16`.
"""

from fn2en_jax import recipe


def get_config():
  config = recipe.get_config(epochs=dict(face=3, a=5, b=4, scratch=6), name='sfew',
                             config='', eval_split='validation', extra_train=('fer2013:train',))
  config.paper = dict(fn2en=55.15)
  return config
