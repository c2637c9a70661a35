"""The training state pytree and the Optax optimizer built from a stage's config."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax


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


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """cosine (with linear warmup), step (x`decay_factor` at each of `decay_steps`) or constant."""
  lr, warmup, total = cfg.learning_rate, cfg.warmup_steps, cfg.num_steps
  if cfg.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total, warmup + 1))
  if cfg.schedule == 'step':
    boundaries = {int(step): cfg.decay_factor for step in cfg.decay_steps}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif cfg.schedule == 'constant':
    main = optax.constant_schedule(lr)
  else:
    raise ValueError(f"schedule must be 'cosine', 'step' or 'constant', got {cfg.schedule!r}")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def decay_mask(params) -> Any:
  """Weight decay applies to kernels only: biases and BatchNorm scales/offsets (all 1-D) are left alone."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(cfg)
  if cfg.optimizer == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
  elif cfg.optimizer == 'adamw':
    tx = optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx
