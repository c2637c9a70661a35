"""The whole method on the built-in synthetic faces, on a laptop CPU in a few minutes.

  python -m fn2en_jax.main --config=configs/demo.py --workdir=/tmp/fn2en_demo

A thin VGG-16 is trained to recognise 300 synthetic identities (face_pretrain, standing in for VGG-Face), then
fine-tuned on the expressions of 60 other subjects (face); the student regresses its pool5 (a) and is then trained
with labels (b); the same student trained from scratch is the baseline. The test subjects are held out of every stage.
"""

from fn2en_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data_dir = '~/tensorflow_datasets'
  config.stages = ('face_pretrain', 'face', 'a', 'b', 'scratch')

  config.data.update(dict(image_size=64, num_folds=4, fold=0))
  config.face_data.update(dict(image_size=64))
  config.teacher.update(dict(width=0.25, fc_dim=1024, dropout=0.5))
  config.student.update(dict(widths=(16, 32, 64, 128, 128), fc_dim=128))

  common = dict(batch_size=64, log_every=20, eval_every=200, checkpoint_every=200, warmup_steps=20)
  config.stage_face_pretrain.update(dict(common, num_steps=600, optimizer='adamw', learning_rate=1e-3,
                                         weight_decay=1e-4))
  config.stage_face.update(dict(common, num_steps=300, optimizer='adamw', learning_rate=3e-4, weight_decay=1e-4))
  config.stage_a.update(dict(common, num_steps=300, optimizer='adamw', learning_rate=3e-3, weight_decay=1e-4,
                             reduction='mean'))
  config.stage_b.update(dict(common, num_steps=300, optimizer='adamw', learning_rate=1e-3, weight_decay=1e-4))
  config.stage_scratch.update(dict(common, num_steps=300, optimizer='adamw', learning_rate=1e-3,
                                   weight_decay=1e-4))
  return config
