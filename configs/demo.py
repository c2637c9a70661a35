"""The whole method on the built-in synthetic faces, on a laptop CPU in a few minutes.

  python -m fn2en_jax.main --config=configs/demo.py --workdir=/tmp/fn2en_demo

A thin VGG-16-BN (1/8 of VGG-Face's width) is trained to recognise 100 synthetic identities (face_pretrain, standing
in for VGG-Face's training), then fine-tuned on the expressions of 45 other subjects (face: the baseline and the
teacher). The student (1/8 of ExpNet's width, so its pool5 has the teacher's shape, as in the paper) regresses the
teacher's pool5 (a) and is then trained with labels (b); the same student trained from scratch is the other
baseline. The three rows of the table (face, b, scratch) each get 200 steps of AdamW at 1e-3; the face stage
first fits its fresh classifier to the frozen features (a linear probe, then fine-tuning: the recipe of
fn2en_jax/recipe.py). Every stage is evaluated on validation subjects (10% of the training subjects) every 25
steps and reports its best checkpoint there. The 15 test subjects are held out of every stage and evaluated once,
at the end of each.
"""

from fn2en_jax import defaults


def get_config():
  config = defaults.get_config()
  config.stages = ('face_pretrain', 'face', 'a', 'b', 'scratch')

  config.data.update(dict(image_size=64, num_folds=4, fold=0))
  # 100 identities x 32 images rather than the builder's default 300 x 16: a thin net learns identities from them
  # in the few hundred steps a CPU demo affords.
  config.face_data.update(dict(image_size=64, builder_options=dict(num_subjects=100, images_per_subject=32)))
  # VGG-16-BN: without BatchNorm a VGG trained from scratch barely moves in that budget.
  config.teacher.update(dict(width=1 / 8, batch_norm=True))
  config.student.update(dict(widths=(8, 16, 32, 64, 64), fc_dim=128))

  common = dict(batch_size=64, log_every=25, optimizer='adamw', weight_decay=1e-4, warmup_steps=20)
  config.stage_face_pretrain.update(dict(common, num_steps=400, learning_rate=1e-3))
  config.stage_face.update(dict(common, num_steps=200, learning_rate=1e-3, linear_probe=True))
  config.stage_a.update(dict(common, num_steps=200, learning_rate=3e-3, reduction='mean'))
  config.stage_b.update(dict(common, num_steps=200, learning_rate=1e-3))
  config.stage_scratch.update(dict(common, num_steps=200, learning_rate=1e-3))
  for name in config.stages:
    config[f'stage_{name}'].update(dict(eval_every=25, checkpoint_every=100))
  return config
