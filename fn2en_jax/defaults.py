"""Defaults every experiment config in configs/ starts from (big_vision style: import, then override a few
fields).

Every field can be overridden on the command line, e.g. `--config.stage_a.learning_rate=0.01`.
"""

import ml_collections


def stage_config(**overrides) -> ml_collections.ConfigDict:
  """Optimizer, schedule and loop settings of one stage."""
  cfg = ml_collections.ConfigDict(dict(
      num_steps=1000,
      batch_size=64,            # global, over all devices and hosts
      optimizer='sgd',          # 'sgd' | 'adamw'
      learning_rate=0.01,
      momentum=0.9,
      nesterov=False,
      weight_decay=5e-4,        # kernels only: biases and BatchNorm are not decayed
      schedule='cosine',        # 'cosine' | 'step' | 'constant'
      warmup_steps=0,
      decay_steps=(),           # schedule='step': steps where the rate is multiplied by decay_factor
      decay_factor=0.1,
      grad_clip_norm=0.0,       # 0 disables clipping
      label_smoothing=0.0,
      log_every=50,
      eval_every=500,           # steps between validation evaluations (config.data.validation)
      checkpoint_every=500,
      # The same budget in epochs of this run's training set; > 0 wins over the step count beside it
      # (fn2en_jax/train/budget.py), so that a recipe does not depend on the dataset's size.
      num_epochs=0.0,
      warmup_epochs=0.0,
      eval_every_epochs=0.0,
      checkpoint_every_epochs=0.0,
      patience=0,               # stop after this many validation evaluations without a better one; 0 = never
      head_lr_scale=1.0,        # face and b: the fresh classifier's rate is this multiple of the stage's
  ))
  cfg.update(overrides)
  return cfg


def data_config(**overrides) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(dict(
      name='synth_faces',
      config='expressions',     # TFDS builder config
      manual_dir='',            # where the licensed files are (real datasets)
      split='train',
      eval_split='',            # an official test split (SFEW: 'validation'); '' = a fold of `split` is the test set
      protocol='subject_folds',  # eval_split='' only. 'subject_folds': test = the subjects of fold `fold` of
                                #   `num_folds` (folds.subject_folds); 'tfd_folds': TFD's official fold `fold`
                                #   (num_folds=5; test = code 3)
      tfd_valid_in_train=True,  # tfd_folds: train on code 1 and 2 (valid) rows, and carve `validation` from them;
                                #   False: train on code 1, and TFD's valid rows are the validation set
      fold=0,                   # -1 = every fold, each in <workdir>/fold_<i>, then kfold.md (fn2en_jax/kfold.py)
      num_folds=10,
      # The fraction of the training subjects (of each fold) held out as validation subjects: every stage is
      # evaluated on them every eval_every steps, its best checkpoint by them is kept, and only that one is
      # evaluated on the test set, once, at the end. 0 = no validation set: the last step is reported, and nothing
      # is evaluated before the end (a test set that is looked at during training ends up choosing).
      validation=0.1,
      extra_train=(),           # 'name[/config]:split' entries appended to the training set, never tested on;
                                #   their label names must equal the dataset's (e.g. ('fer2013:train',) for sfew)
      extra_manual_dir='',      # manual_dir of the extra_train datasets; '' = manual_dir
      holdout_every=0,          # >0: hold out every n-th example instead (identity data, where subjects repeat)
      image_size=224,           # model input
      crop_scale=1.125,         # resize to image_size * crop_scale, then crop image_size (random: train, center: eval)
      flip=True,
      num_threads=2,
      prefetch=4,
      # Options of a builder that makes its config from them (its make_config): image_folder's image_size,
      # subject_regex, ...; synth_faces' image_size, num_subjects, ... Other builders take none.
      builder_options=ml_collections.ConfigDict(),
  ))
  cfg.update(overrides)
  return cfg


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = 'float32'      # activations; 'bfloat16' on GPU/TPU (parameters and optimizer state stay float32)
  config.data_dir = '~/tensorflow_datasets'
  # Compiled XLA programs are kept here, so that a rerun (or the next fold) does not compile them again; '' = off.
  config.compilation_cache_dir = '~/.cache/fn2en_jax/xla'
  # Stages run in this order; a stage whose final checkpoint exists is skipped.
  config.stages = ('face', 'a', 'b', 'scratch')
  # A run refuses to start in a workdir on a disk with less free space than this (GB): checkpoints would fail later.
  config.min_free_gb = 0.5
  # Resuming in a workdir whose config.json differs in a field that changes the model or the data is refused;
  # 'field1,field2' (dotted names, * for any stage: 'stage_*.batch_size') allows those to differ. fn2en_jax/workdir.py
  # lists the fields that may always change (num_steps, log/eval/checkpoint_every, learning_rate, paths, ...).
  config.allow_changed = ''

  config.data = data_config()                       # the expression dataset
  config.face_data = data_config(config='identities', holdout_every=10, validation=0.0)  # face_pretrain only

  config.teacher = ml_collections.ConfigDict(dict(
      model='vgg_face', width=1.0, fc_dim=4096, dropout=0.5,
      batch_norm=False,         # vgg_face only: VGG-16-BN, for a face net trained here from scratch (face_pretrain)
      tap='pool5',              # the teacher layer stage a regresses
      init='',                  # a converted face net directory; '' = the face_pretrain stage of this workdir
  ))
  config.student = ml_collections.ConfigDict(dict(
      widths=(64, 128, 256, 512, 512), fc_dim=256, dropout=0.5,
  ))

  config.stage_face_pretrain = stage_config()
  # linear_probe: before fine-tuning, the fresh classifier is fitted to the pretrained net's frozen features by an
  # L2-regularised logistic regression (L-BFGS, each of linear_probe_l2, the best on the validation subjects):
  # LP-FT, fn2en_jax/stages/linear_probe.py.
  config.stage_face = stage_config(learning_rate=0.001, linear_probe=False, linear_probe_l2=(1e-3, 1e-2, 1e-1, 1.0),
                                   linear_probe_steps=300)
  # views: fixed augmentation views (crop, flip) per training image, one drawn at each visit; 0 = a fresh random
  # view every time. cache_teacher: compute the teacher's map of every view once and train from the stored maps
  # (needs views > 0; the same curve as the online teacher with the same views, without its forward passes).
  config.stage_a = stage_config(p=2, reduction='sum', views=0, cache_teacher=False)
  config.stage_b = stage_config()
  config.stage_scratch = stage_config()
  # The paper's accuracy (percent) of each row this config reproduces, keyed 'scratch', 'face', 'fn2en': printed
  # beside the k-fold report's mean (fn2en_jax/kfold.py); empty where the paper has no such row.
  config.paper = ml_collections.ConfigDict()
  return config
