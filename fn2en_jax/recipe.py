"""The training recipe that every real-dataset config in configs/ starts from: the paper's stages at 224x224.

Reconstructed, not from the paper: the paper (and its poster, see docs/design.md) says the nets were trained with
SGD but gives no learning rates, batch sizes or schedules. What is here is the usual practice of its time for each
kind of training, at batch 32, with a cosine schedule after one epoch of warmup:

- face (fine-tune VGG-Face, a fresh classifier): SGD, momentum 0.9, learning rate 1e-3, weight decay 5e-4,
  20 epochs (a pretrained net; a larger rate destroys its features).
- a (the student's trunk regresses the teacher's pool5 with the paper's summed L2 loss, eq. 3): AdamW, 1e-3,
  weight decay 1e-4, 40 epochs. Adam, not SGD: the loss scale is that of the teacher's feature map (VGG-Face's
  pool5 sums ~25k squared activations per face; another face net or tap gives another scale), which Adam's
  step does not depend on, so one learning rate serves any teacher.
- b (fresh fully connected layers on the stage-a trunk, all trained): SGD, momentum 0.9, 1e-3, weight decay
  5e-4, 30 epochs (a pretrained trunk, as in face).
- scratch (the same student from random init, "Train From Scratch (BN)"): SGD, momentum 0.9, 1e-2, weight
  decay 5e-4, 60 epochs.

Epochs become steps through `train_size`, the approximate number of training examples in one fold, which each
config states. Activations stay float32 (what CPUs run); on GPU/TPU add `--config.dtype=bfloat16`.

The face net is not at hand by default: `teacher.init` stays '' (unset), and `experiment.validate` stops a
run without it, saying how to convert VGG-Face (docs/face_nets.md). Alternatively add `face_pretrain` to
`config.stages` and name an identity dataset in `config.face_data` (a TFDS builder with image, label = identity,
subject): the face net is then trained here first, once for all folds of a k-fold run.
"""

from __future__ import annotations

import ml_collections

from fn2en_jax import defaults

BATCH_SIZE = 32
EPOCHS = {'face': 20, 'a': 40, 'b': 30, 'scratch': 60}
OPTIMIZERS = {
    'face': dict(optimizer='sgd', learning_rate=1e-3, weight_decay=5e-4),
    'a': dict(optimizer='adamw', learning_rate=1e-3, weight_decay=1e-4, p=2, reduction='sum'),
    'b': dict(optimizer='sgd', learning_rate=1e-3, weight_decay=5e-4),
    'scratch': dict(optimizer='sgd', learning_rate=1e-2, weight_decay=5e-4),
}


def get_config(*, train_size: int, epochs: dict[str, int] | None = None,
               **data: object) -> ml_collections.ConfigDict:
  """`data`: the `config.data` fields of the dataset and its protocol; `epochs` overrides some of EPOCHS."""
  config = defaults.get_config()
  config.stages = ('face', 'a', 'b', 'scratch')
  config.data.update(dict(image_size=224, **data))
  config.face_data.update(dict(name='', config='', split='train', image_size=224))
  steps_per_epoch = max(train_size // BATCH_SIZE, 1)
  for stage, stage_epochs in {**EPOCHS, **(epochs or {})}.items():
    num_steps = stage_epochs * steps_per_epoch
    every = max(num_steps // 5, 1)  # evaluate and checkpoint 5 times per stage
    config[f'stage_{stage}'].update(dict(
        OPTIMIZERS[stage], num_steps=num_steps, batch_size=BATCH_SIZE, momentum=0.9, schedule='cosine',
        warmup_steps=steps_per_epoch, log_every=min(50, steps_per_epoch), eval_every=every, checkpoint_every=every))
  return config
