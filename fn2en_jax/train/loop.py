"""The generic training loop every stage runs: steps, model selection, metrics, checkpoints and progress.

It knows nothing of the stage it runs: a `Stage` brings its state, its pure per-replica steps, its data and how its
checkpoints are ranked (`Selection`). Every `eval_every` steps the stage is evaluated on its validation set (held-out
training subjects), and the best state by that ranking is kept in `<stage>/best/`; at the end that state, and only
it, is evaluated on the test set, once. The test set never chooses anything: no number of it exists before the end.
Without a validation set the last step is reported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metrics, parameter_overview

from fn2en_jax import errors
from fn2en_jax.data import pipeline
from fn2en_jax.train import checkpoint, parallel, preemption, summaries
from fn2en_jax.train.state import TrainState

@dataclasses.dataclass(frozen=True)
class Selection:
  """How a stage's checkpoints are ranked on the validation set: by `metric` of its summary, best at `mode`
  ('max' or 'min'); equal values are ranked by `tiebreak` (smaller is better: a loss), then the earlier step wins."""
  metric: str
  mode: str = 'max'
  tiebreak: str = ''

  def key(self, summary: dict) -> tuple:
    """Larger is better."""
    value = summary[self.metric] if self.mode == 'max' else -summary[self.metric]
    return (value, -summary[self.tiebreak]) if self.tiebreak else (value,)

  def describe(self) -> str:
    return f'the best validation {self.metric} ({self.mode})'


@dataclasses.dataclass
class Stage:
  name: str
  state: TrainState                 # initial state, replicated on the mesh (restores already applied)
  aux: Any                          # frozen inputs of the steps (the teacher's variables), or None
  hparams: ml_collections.ConfigDict
  data_cfg: ml_collections.ConfigDict
  train_examples: pipeline.Examples
  validation_examples: pipeline.Examples | None  # chooses the reported checkpoint; None: the last step is reported
  eval_examples: pipeline.Examples  # the test set: evaluated once, at the end, on the chosen checkpoint
  selection: Selection
  train_step: Callable              # (state, batch, aux) -> (state, metrics), per replica
  eval_step: Callable               # (state, batch, aux) -> per-example outputs, per replica
  summarize: Callable               # host outputs of the whole eval set -> metrics dict
  # Keyword arguments of pipeline.train_iterator for this stage alone (stage a: its fixed views and their cached
  # teacher maps); the loop passes them through without knowing what they are.
  iterator_options: dict = dataclasses.field(default_factory=dict)
  notes: dict = dataclasses.field(default_factory=dict)  # what setup found, added to the summary (the face probe)


def itstime(step: int, every: int, num_steps: int) -> bool:
  """Whether a periodic action (log, evaluate, checkpoint) runs after `step`: every `every` steps, and at the end."""
  return step % every == 0 or step == num_steps


def evaluations_since(best_step: int, step: int, hp: ml_collections.ConfigDict) -> int:
  """How many validation evaluations after `best_step` up to `step` found nothing better."""
  return step // hp.eval_every - best_step // hp.eval_every


def stopped_early(best: dict | None, step: int | None, hp: ml_collections.ConfigDict) -> bool:
  """Whether `hp.patience` evaluations in a row, up to `step`, found nothing better than `best`: the stage ends
  there (early stopping; patience 0 never stops)."""
  return bool(hp.patience and best and step) and evaluations_since(best['step'], step, hp) >= hp.patience


def is_finished(workdir: str, name: str, hp: ml_collections.ConfigDict) -> bool:
  """Whether the stage trained to its end: its final step, or the step where early stopping ended it."""
  stage_dir = os.path.join(workdir, name)
  if not os.path.isdir(stage_dir):
    return False
  mngr = checkpoint.manager(stage_dir)
  latest = mngr.latest_step()
  mngr.close()
  return latest == hp.num_steps or stopped_early(checkpoint.best_record(stage_dir), latest, hp)


def eval_outputs(stage: Stage, state: TrainState, eval_step, arrays: dict, mesh) -> dict[str, np.ndarray]:
  """The stage's eval step over every example of `arrays` (padded batches, `mask` marking the real rows), on the
  host: what `summarize` reads, and what evaluate's report reads beyond it."""
  outputs = [parallel.to_host(eval_step(state, parallel.shard_batch(batch, mesh), stage.aux))
             for batch in pipeline.eval_batches(arrays, stage.hparams.batch_size)]
  return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def _evaluate(stage: Stage, state: TrainState, eval_step, arrays: dict, mesh) -> dict:
  return stage.summarize(eval_outputs(stage, state, eval_step, arrays, mesh))


def _scalars(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if isinstance(v, (int, float))}


def _average(history: list[dict]) -> dict:
  """Running means of the logged metrics, merged with clu's `Average` (a sum and a count per metric)."""
  history = jax.device_get(history)
  merged = {}
  for record in history:
    for key, value in record.items():
      avg = metrics.Average.from_model_output(np.asarray(value, np.float32))
      merged[key] = merged[key].merge(avg) if key in merged else avg
  return {k: float(v.compute()) for k, v in merged.items()}


def _raise_if_diverged(stage: Stage, unchecked: list[tuple[int, Any]], mngr, stage_dir: str) -> None:
  """errors.Diverged naming the first of the `unchecked` (step, metrics) whose metrics are not finite, and the last
  good checkpoint; empties `unchecked`. Runs before every save, so that no checkpoint holds a diverged state."""
  records = jax.device_get(unchecked)
  unchecked.clear()
  for step, values in records:
    bad = {k: float(np.mean(v)) for k, v in values.items() if not np.all(np.isfinite(v))}
    if bad:
      mngr.wait_until_finished()
      last = mngr.latest_step()
      where = (f'the last good checkpoint is step {last} in {stage_dir}' if last else
               'no checkpoint was saved before it')
      raise errors.Diverged(
          f'{stage.name}: training diverged at step {step} ({", ".join(f"{k}={v}" for k, v in bad.items())}); {where}',
          f'lower --config.stage_{stage.name}.learning_rate (now {stage.hparams.learning_rate}) or check the data, '
          f'then run the same command again: it {f"resumes from step {last}" if last else "starts the stage over"}')


def _warn_on_recompiles(name: str, **jitted) -> None:
  """Every batch has the same shapes (drop_remainder for training, a padded last batch for evaluation), so each
  step compiles once; a second compilation means a shape or dtype changed, and costs its compile time each time."""
  for what, fn in jitted.items():
    compiled = fn._cache_size()  # pylint: disable=protected-access  # one entry per input signature seen
    if compiled > 1:
      logging.warning('%s: the %s was compiled %d times (once expected): its input shapes or dtypes changed', name,
                      what, compiled)


def run(stage: Stage, *, workdir: str, mesh, seed: int) -> dict:
  """Trains `stage` to `hparams.num_steps` or until early stopping (resuming from its newest checkpoint), and
  returns the test summary of its chosen checkpoint (`selected_step`, `selected_by` and, with a validation set,
  `validation`: that checkpoint's validation summary)."""
  hp = stage.hparams
  stage_dir = os.path.join(workdir, stage.name)
  mngr = checkpoint.manager(stage_dir)
  best_mngr = checkpoint.best_manager(stage_dir) if stage.validation_examples is not None else None
  data_iter = pipeline.train_iterator(stage.train_examples, stage.data_cfg, global_batch_size=hp.batch_size,
                                      seed=seed, **stage.iterator_options)
  state = stage.state
  start = mngr.latest_step() or 0
  if start:
    state = checkpoint.restore(mngr, state, data_iter, start)
    logging.info('%s: resumed from step %d of %d', stage.name, start, hp.num_steps)
  best = checkpoint.best_record(stage_dir) if best_mngr else None
  done = start >= hp.num_steps or stopped_early(best, start, hp)
  train_step = parallel.data_parallel_step(stage.train_step, mesh)
  eval_step = parallel.data_parallel_eval(stage.eval_step, mesh)
  validation = pipeline.eval_arrays(stage.validation_examples, stage.data_cfg) if best_mngr else None

  # Summaries without TensorFlow (train/summaries.py says why); only process 0 writes files.
  writer = summaries.SummaryWriter(os.path.join(stage_dir, 'tensorboard') if jax.process_index() == 0 else None)
  if not done:
    parameter_overview.log_parameter_overview(state.params)
    writer.write_hparams({k: v for k, v in hp.to_dict().items() if isinstance(v, (int, float, str, bool))})
    logging.info('%s: %d train / %s validation / %d test examples, %d steps of batch %d', stage.name,
                 len(stage.train_examples), len(stage.validation_examples) if best_mngr else 'no',
                 len(stage.eval_examples), hp.num_steps, hp.batch_size)
  progress = summaries.Progress(stage.name, hp.num_steps, writer)

  history, unchecked = [], []
  step = start
  preemption.watch()
  try:
    while not done:
      step += 1
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, step_metrics = train_step(state, parallel.shard_batch(next(data_iter), mesh), stage.aux)
      # At most one step queued behind the running one: enough to hide the dispatch, and it bounds what waits in
      # memory. Unbounded, the hosts of a multi-host CPU run queued hundreds of steps and deadlocked in gloo.
      if history:
        jax.block_until_ready(history[-1])
      history.append(step_metrics)
      unchecked.append((step, step_metrics))
      progress(step)
      if itstime(step, hp.log_every, hp.num_steps):
        _raise_if_diverged(stage, unchecked, mngr, stage_dir)
        means = _average(history)
        history = []
        writer.write_scalars(step, {f'train/{k}': v for k, v in means.items()})
      if best_mngr and itstime(step, hp.eval_every, hp.num_steps):
        summary = _evaluate(stage, state, eval_step, validation, mesh)
        writer.write_scalars(step, {f'validation/{k}': v for k, v in _scalars(summary).items()})
        logging.info('%s step %d, validation: %s', stage.name, step, _scalars(summary))
        if best is None or stage.selection.key(summary) > stage.selection.key(best['summary']):
          _raise_if_diverged(stage, unchecked, mngr, stage_dir)  # a diverged state is never kept
          best = {'step': step, 'summary': _scalars(summary)}
          checkpoint.save_best(best_mngr, state, best)
      done = step >= hp.num_steps or stopped_early(best, step, hp)
      saved = itstime(step, hp.checkpoint_every, hp.num_steps) or done
      if saved:
        _raise_if_diverged(stage, unchecked, mngr, stage_dir)  # a diverged state is never saved
        checkpoint.save(mngr, state, data_iter)
      if step < hp.num_steps and done:
        logging.info('%s: stopped early at step %d: %d evaluations without a better validation %s than step %d',
                     stage.name, step, hp.patience, stage.selection.metric, best['step'])
      if preemption.reached(mngr, step) and not done:
        if not saved:
          _raise_if_diverged(stage, unchecked, mngr, stage_dir)
          checkpoint.save(mngr, state, data_iter)
        mngr.wait_until_finished()
        raise errors.Preempted(f'{stage.name}: stopped by SIGTERM after step {step} of {hp.num_steps}; its checkpoint '
                               f'is saved in {stage_dir}', 'run the same command again: it resumes from there')
    mngr.wait_until_finished()
    if best_mngr and best:
      best_mngr.wait_until_finished()
      state = checkpoint.restore_best(best_mngr, state, best['step'])
      chosen = {'selected_step': best['step'], 'selected_by': stage.selection.describe(),
                'validation': best['summary']}
    else:
      chosen = {'selected_step': step, 'selected_by': 'the last step (no validation set)'}
    # The test set's one evaluation, on the chosen state.
    summary = _evaluate(stage, state, eval_step, pipeline.eval_arrays(stage.eval_examples, stage.data_cfg), mesh)
    writer.write_scalars(step, {f'test/{k}': v for k, v in _scalars(summary).items()})
  finally:
    mngr.close()
    if best_mngr:
      best_mngr.close()
    writer.close()
  _warn_on_recompiles(stage.name, train_step=train_step, eval_step=eval_step)
  logging.info('%s: test %s at step %d, chosen by %s', stage.name, _scalars(summary), chosen['selected_step'],
               chosen['selected_by'])
  return {**summary, **chosen, **stage.notes}
