"""Every stage of the method on a few tiny synthetic faces, in seconds (the smoke test's config).

  python -m fn2en_jax.main --config=tests/tiny_config.py --workdir=/tmp/fn2en_tiny --config.data_dir=/tmp/tfds

Every stage trains with SGD at a constant rate: the tests that compare two runs which differ only in rounding (two
hosts against one process, a cached teacher against the online one) need an update proportional to the gradient,
which AdamW's is not (tests/test_distributed.py says why), and so the one run of this config that the tests share
(`tiny_run`) is also the one-process side of those comparisons. AdamW and the recipe's schedule run end to end in
tests/test_kfold.py (configs/ck_plus.py's recipe, shrunk to 4 steps a stage).
"""

from fn2en_jax import defaults


def get_config():
  config = defaults.get_config()
  config.stages = ('face_pretrain', 'face', 'a', 'b', 'scratch')
  config.compilation_cache_dir = ''  # the tests share one cache of their own (tests/conftest.py)
  config.data.update(dict(image_size=32, num_folds=4, num_threads=1, prefetch=2,
                          builder_options=dict(image_size=32, num_subjects=8, intensities=1, neutral_per_subject=1)))
  config.face_data.update(dict(image_size=32, holdout_every=4, num_threads=1, prefetch=2,
                               builder_options=dict(image_size=32, num_subjects=6, images_per_subject=4)))
  config.teacher.update(dict(width=1 / 16, fc_dim=256))
  config.student.update(dict(widths=(4, 4, 8, 8, 8), fc_dim=16))
  for name in ('face_pretrain', 'face', 'a', 'b', 'scratch'):
    config[f'stage_{name}'].update(dict(num_steps=4, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2,
                                        optimizer='sgd', schedule='constant', learning_rate=1e-3))
  return config
