"""Your own expression set: any `<class>/<image>` tree (fn2en_jax/data/builders/image_folder.py), 10
subject-independent folds, dlib's public-domain face net as the teacher (`pip install face_recognition_models`).

  python -m fn2en_jax.convert dlib_resnet --output=$HOME/face_nets/dlib_resnet
  python -m fn2en_jax.main --config=configs/image_folder.py --workdir=$HOME/runs/my_faces \
      --config.data.manual_dir=$HOME/data/my_faces --config.teacher.init=$HOME/face_nets/dlib_resnet \
      --config.data.fold=-1

The first run builds the dataset from `data.manual_dir` (or build it first: `python -m fn2en_jax.data.build
image_folder --manual_dir=$HOME/data/my_faces --data_dir=$HOME/tensorflow_datasets --option=image_size=150`). The
options of the build are `config.data.builder_options`, e.g.

  --config.data.builder_options.subject_regex='^(?P<subject>[A-Z]+\\d+)-'   # subject = 'AB12' of AB12-happy-3.png
  --config.data.builder_options.alignment=yunet                             # detect and crop the face (or haar)
  --config.data.builder_options.classes=anger,happy,neutral                  # label order; other folders left out

Folds: `data.num_folds` subject folds (`--config.data.fold=-1` runs each and writes kfold.md). With few subjects
(say under 20), hold out one subject at a time instead: `--config.data.protocol=leave_one_subject_out
--config.data.num_folds=<number of subjects>` (the run says the number if it is wrong).
Images are stored at 150x150 (the dlib net's input) and read at `data.image_size`. Hyper-parameters: fn2en_jax/recipe.py,
every budget in epochs of each fold's own training set (so nothing here depends on the size of your dataset), each
stage's checkpoint chosen on validation subjects held out of the training subjects (`data.validation`);
configs/ck_plus_48_dlib.py is a recipe sized for a CPU.
"""

import ml_collections

from fn2en_jax import recipe
from fn2en_jax.data.builders import image_folder


def get_config():
  config = recipe.get_config(name='image_folder', config='', num_folds=10)
  config.data.image_size = 150
  # Every option present, so that each can be set from the command line.
  config.data.builder_options = ml_collections.ConfigDict(dict(
      image_size=150, alignment='none', margin=0.2, subject_regex=image_folder.DEFAULT_SUBJECT_REGEX, classes=''))
  config.teacher.update(dict(model='dlib_resnet', tap='res4'))
  config.paper = {}
  return config
