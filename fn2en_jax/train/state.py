"""The training state pytree, its initialisers, and the Optax optimizer built from a stage's config."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fn2en_jax import errors
from fn2en_jax.train import budget, parallel


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes. `apply_fn` and `tx` are static: they are code, not checkpointed data."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # a raw uint32 key: Orbax saves it like any array
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, apply_fn, params, batch_stats, tx, rng) -> 'TrainState':
    return cls(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=tx.init(params),
               rng=rng, apply_fn=apply_fn, tx=tx)

  def apply_gradients(self, grads, batch_stats) -> 'TrainState':
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state)

  @property
  def variables(self) -> dict:
    return {'params': self.params, 'batch_stats': self.batch_stats}


def _main_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  if cfg.schedule == 'step':
    return optax.piecewise_constant_schedule(cfg.learning_rate, {int(s): cfg.decay_factor for s in cfg.decay_steps})
  return optax.constant_schedule(cfg.learning_rate)


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """cosine (with linear warmup), step (x`decay_factor` at each of `decay_steps`) or constant; `validate` has
  checked the name."""
  lr, warmup, total = cfg.learning_rate, cfg.warmup_steps, cfg.num_steps
  if cfg.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total, warmup + 1))
  main = _main_schedule(cfg)
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def decay_mask(params) -> Any:
  """Weight decay applies to kernels only: biases and BatchNorm scales/offsets (all 1-D) are left alone."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  if cfg.optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
                       optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
  return optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)


def head_labels(head: str):
  """Labels each parameter 'head' (its flat key 'params/...' matches the regex `head`) or 'trunk'."""
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: 'head' if re.search(head, 'params/' + jax.tree_util.keystr(path, simple=True, separator='/'))
        else 'trunk', params)
  return labels


def make_optimizer(cfg: ml_collections.ConfigDict, head: str = '') -> optax.GradientTransformation:
  """SGD (momentum, Nesterov, decoupled weight decay on kernels) or AdamW; `validate` has checked the name.

  `head` (a regex of the classifier's flat keys 'params/...') with `head_lr_scale` != 1 gives the classifier that
  multiple of the stage's schedule and the rest of the net the schedule itself (two Optax transforms)."""
  schedule = learning_rate_schedule(cfg)
  scale = cfg.get('head_lr_scale', 1.0)
  if head and scale != 1.0:
    tx = optax.multi_transform({'head': _optimizer(cfg, lambda count: scale * schedule(count)),
                                'trunk': _optimizer(cfg, schedule)}, head_labels(head))
  else:
    tx = _optimizer(cfg, schedule)
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx


SCHEDULES = ('cosine', 'step', 'constant')
OPTIMIZERS = ('sgd', 'adamw')
LOOP_FIELDS = ('num_steps', 'batch_size', 'log_every', 'eval_every', 'checkpoint_every')


def validate(cfg: ml_collections.ConfigDict, field: str, num_devices: int) -> None:
  """Checks one stage's section (`field`, e.g. 'stage_a') before anything runs."""
  budget.validate(cfg, field)
  for name in LOOP_FIELDS:
    if cfg[name] < 1:
      raise errors.ConfigError(f'config.{field}.{name} must be >= 1, got {cfg[name]}',
                               f'set --config.{field}.{name} to a positive number')
  if cfg.batch_size % num_devices:
    raise errors.ConfigError(f'config.{field}.batch_size={cfg.batch_size} must be divisible by the {num_devices} '
                             'devices', f'set --config.{field}.batch_size to a multiple of {num_devices}')
  if cfg.get('head_lr_scale', 1.0) <= 0 or cfg.get('patience', 0) < 0:
    raise errors.ConfigError(f'config.{field}: head_lr_scale must be > 0 and patience >= 0, got '
                             f'{cfg.head_lr_scale} and {cfg.patience}', f'fix --config.{field}.head_lr_scale/patience')
  for name, allowed in (('schedule', SCHEDULES), ('optimizer', OPTIMIZERS)):
    if cfg[name] not in allowed:
      raise errors.ConfigError(f'config.{field}.{name} must be one of {list(allowed)}, got {cfg[name]!r}',
                               f'set --config.{field}.{name} to one of them')


def init_variables(model, rng: jax.Array, image_size: int, **kwargs) -> dict:
  """Random initial variables. Compiling a net's initialisers is slower than running them: XLA's partitionable
  threefry and its full optimisation made this take ~30 s on a CPU for a thin VGG; without both it takes ~2 s."""
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  with jax.threefry_partitionable(False):
    init = jax.jit(functools.partial(model.init, train=False, **kwargs)).lower({'params': rng}, images)
    return init.compile({'xla_backend_optimization_level': 0})({'params': rng}, images)


def abstract_variables(model, image_size: int, mesh, **kwargs) -> dict:
  """Shapes, dtypes and (replicated) shardings of `model`'s variables, for a checkpoint to fill: nothing is
  initialised or compiled for weights that are about to be overwritten."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False, **kwargs), {'params': jax.random.key(0)}, images)
  sharding = parallel.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def create_state(model, variables: dict, stage_cfg: ml_collections.ConfigDict, rng: jax.Array, head: str = '',
                 **apply_kwargs) -> TrainState:
  """`head`: the regex of the classifier's parameters, for make_optimizer's head rate ('' = one rate)."""
  return TrainState.create(apply_fn=functools.partial(model.apply, **apply_kwargs), params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), tx=make_optimizer(stage_cfg, head),
                           rng=jax.random.key_data(rng))
