"""Stage a: the student's conv trunk regresses the frozen teacher's feature map (eq. 3 of the paper).

The teacher is the face net fine-tuned in the `face` stage. It is read once, passed to every step as a frozen input
(never part of the trained state, never checkpointed again), and gets no gradient. When the teacher's tap and the
student's pool5 differ in shape, a 1x1 conv adapter maps the student's channels and the teacher map is resized to the
student's spatial size; the adapter is discarded after this stage.

With `stage_a.cache_teacher` the teacher's maps of `stage_a.views` fixed views per training image are computed once
(stages/teacher_cache.py) and the batches bring them as `batch['target']`; the step then runs the student only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from fn2en_jax import errors, losses, models
from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet, face_nets
from fn2en_jax.stages import Context, Role, teacher_cache
from fn2en_jax.train import checkpoint, loop, parallel, state

NAME = 'a'
READS = 'face'  # the fine-tuned face net is the teacher
ROLE = Role(net='student', classifies=None)  # regresses the teacher's features; no row of its own


def validate(config) -> None:
  losses.validate_lp(config.stage_a.p, config.stage_a.reduction, field='stage_a')
  if config.stage_a.views < 0:
    raise errors.ConfigError(f'config.stage_a.views must be >= 0, got {config.stage_a.views}',
                             'set --config.stage_a.views=0 (a fresh view at every visit) or a number of fixed views')
  if config.stage_a.cache_teacher and not config.stage_a.views:
    raise errors.ConfigError('config.stage_a.cache_teacher=True stores the teacher map of each fixed view, but '
                             'config.stage_a.views=0 asks for fresh random views', 'set --config.stage_a.views=8')


def teacher_map(teacher, teacher_vars: dict, images: jax.Array, *, tap: str, size: tuple[int, int]) -> jax.Array:
  """G(I): the teacher's tap, resized (area-weighted) to the student's spatial size when they differ."""
  features = teacher.apply(teacher_vars, images, train=False, tap=tap)
  if features.shape[1:3] != size:
    features = jax.image.resize(features, features.shape[:1] + size + features.shape[3:], 'linear', antialias=True)
  return lax.stop_gradient(features)


def train_step(state, batch, teacher_vars, *, teacher, tap, p, reduction):
  def loss_fn(params):
    student_map, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats}, batch['image'],
                                          train=True, mutable=['batch_stats'])
    if 'target' in batch:  # cached (teacher_cache): the same map, computed before the stage
      target = batch['target'].astype(student_map.dtype)
    else:
      target = teacher_map(teacher, teacher_vars, batch['image'], tap=tap, size=student_map.shape[1:3])
    return losses.lp_regression(student_map, target, p, reduction), updates

  (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, parallel.AXIS)
  batch_stats = lax.pmean(updates['batch_stats'], parallel.AXIS)
  return state.apply_gradients(grads, batch_stats), lax.pmean({'loss': loss}, parallel.AXIS)


def eval_step(state, batch, teacher_vars, *, teacher, tap, p, reduction):
  student_map = state.apply_fn(state.variables, batch['image'], train=False)
  target = teacher_map(teacher, teacher_vars, batch['image'], tap=tap, size=student_map.shape[1:3])
  per_example = jax.vmap(lambda s, t: losses.lp_regression(s[None], t[None], p, reduction))(student_map, target)
  return {'loss': per_example, 'mask': batch['mask']}


# The student's map closest to the teacher's on the validation faces: the objective of this stage, eq. 3.
SELECTION = loop.Selection(metric='lp_loss', mode='min')


def summarize(outputs: dict) -> dict:
  keep = outputs['mask'].astype(bool)
  return {'lp_loss': float(outputs['loss'][keep].mean())}


def load_teacher(config, ctx: Context, num_classes: int):
  """The fine-tuned face net of this workdir's `face` stage, replicated on the mesh: (module, variables)."""
  teacher = face_nets.build(config.teacher, num_classes, models.dtype(config), parallel.AXIS)
  variables = state.abstract_variables(teacher, config.data.image_size, ctx.mesh)
  return teacher, checkpoint.restore_into(checkpoint.trained_state_path(ctx.dir_of(READS)), variables,
                                          name='teacher')


@dataclasses.dataclass(frozen=True)
class Built:
  """Stage a's student and steps for a teacher, built without reading or writing anything (setup and bench)."""
  student: Any                 # the ExpNet, with a 1x1 adapter to the teacher's channels where they differ
  variables: dict              # its initial variables (host arrays)
  state: Any                   # its TrainState (stage_a's optimizer), not yet replicated
  map_shape: tuple[int, ...]   # the student's map (H, W, C): the teacher's tap is resized to its (H, W)
  train_step: Callable         # (state, batch, teacher_vars) -> (state, metrics), per replica
  eval_step: Callable          # (state, batch, teacher_vars) -> per-example Lp loss, per replica


def build(config, teacher, teacher_vars, num_classes: int, rng: jax.Array) -> Built:
  """The student stage a trains against `teacher`'s `config.teacher.tap`, its initial state and its pure steps."""
  tap, size = config.teacher.tap, config.data.image_size
  images = jnp.zeros((1, size, size, 3))
  tap_shape = jax.eval_shape(functools.partial(teacher.apply, train=False, tap=tap), teacher_vars, images).shape
  if len(tap_shape) != 4:
    raise errors.ConfigError(f'config.teacher.tap={tap!r} is a vector {tap_shape}; stage a regresses a spatial map',
                             'set --config.teacher.tap to pool1..pool5 (vgg_face), res1..res5 (dlib_resnet), '
                             'conv_1..conv_14 (sface) or conv2d_1a..block8 (facenet)')
  channels = tap_shape[-1]
  adapter = None if channels == config.student.widths[-1] else channels
  student = expnet.from_config(config, num_classes, axis_name=parallel.AXIS, adapter_channels=adapter)
  variables = state.init_variables(student, rng, size, tap='adapter')
  initial = state.create_state(student, variables, config.stage_a, rng, tap='adapter')
  map_shape = jax.eval_shape(functools.partial(student.apply, train=False, tap='adapter'), variables,
                             images).shape[1:]
  hp = dict(teacher=teacher, tap=tap, p=config.stage_a.p, reduction=config.stage_a.reduction)
  return Built(student=student, variables=variables, state=initial, map_shape=tuple(map_shape),
               train_step=functools.partial(train_step, **hp), eval_step=functools.partial(eval_step, **hp))


def setup(config, ctx: Context):
  splits = pipeline.splits(config.data, ctx.data_dir)
  train = splits.train
  teacher, teacher_vars = load_teacher(config, ctx, len(train.class_names))
  built = build(config, teacher, teacher_vars, len(train.class_names), ctx.rng)
  options = dict(views=config.stage_a.views)
  if config.stage_a.cache_teacher and not loop.is_finished(ctx.workdir, NAME, config.stage_a):
    options['targets'] = cached_targets(config, ctx, train, teacher, teacher_vars, built.map_shape[:2])
  return loop.Stage(
      name=NAME, state=parallel.replicate(built.state, ctx.mesh), aux=teacher_vars,
      hparams=config.stage_a, data_cfg=config.data, train_examples=train, validation_examples=splits.validation,
      eval_examples=splits.test, selection=SELECTION, train_step=built.train_step, eval_step=built.eval_step,
      summarize=summarize, iterator_options=options)


def cached_targets(config, ctx: Context, train, teacher, teacher_vars, map_size) -> teacher_cache.Targets:
  """The teacher's map of every fixed view of every training image, from the stage's cache (computed if missing)."""
  tap, views = config.teacher.tap, config.stage_a.views
  spec = dict(teacher=teacher_cache.teacher_fingerprint(teacher_vars), model=config.teacher.model, tap=tap,
              map_size=list(map_size), dtype=config.dtype, examples=teacher_cache.examples_fingerprint(train),
              image_size=config.data.image_size, crop_scale=config.data.crop_scale, flip=config.data.flip,
              views=views, seed=ctx.seed)
  map_fn = lambda variables, images: teacher_map(teacher, variables, images, tap=tap, size=tuple(map_size))
  return teacher_cache.load_or_build(
      os.path.join(ctx.stage_dir, teacher_cache.DIRNAME), spec, train, config.data, seed=ctx.seed, views=views,
      batch_size=config.stage_a.batch_size // jax.process_count(),
      teacher_map=teacher_cache.local_teacher_map(map_fn, teacher_vars))
