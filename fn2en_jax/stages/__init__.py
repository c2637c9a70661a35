"""The training stages of FaceNet2ExpNet, one module each, all with the same interface:

  NAME                 the stage's name in `config.stages`, its directory in the workdir, its config `stage_<NAME>`
  ROLE                 what it trains and reports (`Role`): what the commands that read a finished run look up
  READS                the stage whose final checkpoint it starts from, or None: declared here once, and the
                       orchestrator derives the order checks from it
  validate(config)     checks the config fields this stage alone reads (optional)
  setup(config, ctx)   -> train.loop.Stage: the initial state (restores applied), the pure steps and the data

`Context` is what the orchestrator gives a stage; `stage_rng` is each stage's own random stream.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
from jax.sharding import Mesh

from fn2en_jax.data import pipeline
from fn2en_jax.train import budget

# Every stage's random stream is fold_in(key(seed), its position here): fixed, so that adding a stage or running a
# subset of them never changes another stage's initialisation.
STREAMS = ('face_pretrain', 'face', 'a', 'b', 'scratch')


def stage_rng(seed: int, name: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), STREAMS.index(name))


@dataclasses.dataclass(frozen=True)
class Context:
  """Where and with what a stage runs."""
  name: str
  workdir: str          # the run's directory (a fold's, in a k-fold run)
  data_dir: str         # TFDS data_dir
  mesh: Mesh            # the data-parallel mesh over every device of every host
  seed: int

  @property
  def stage_dir(self) -> str:
    return os.path.join(self.workdir, self.name)

  @property
  def rng(self) -> jax.Array:
    return stage_rng(self.seed, self.name)

  def dir_of(self, stage: str) -> str:
    """The directory of the stage this one READS (its final checkpoint is there once that stage ran)."""
    return os.path.join(self.workdir, stage)


@dataclasses.dataclass(frozen=True)
class Role:
  """What a stage trains and what it reports: read by evaluate, predict, export, visualize, results and kfold, so
  that adding a stage or renaming a row is an edit to that stage's module alone."""
  net: str                       # 'student' (models/expnet) or 'face_net' (models/face_nets)
  classifies: str | None         # 'expressions', 'identities', or None (stage a regresses features)
  row: str | None = None         # its row in results.md and kfold.md, or None
  paper_key: str | None = None   # that row's key in a config's `paper` (the paper's accuracy beside it)
  rank: int = 0                  # the row's position in the table (the paper's order: baselines, then FN2EN)


def _registry() -> dict:
  from fn2en_jax.stages import a, b, face, face_pretrain, scratch  # pylint: disable=import-outside-toplevel
  return {m.NAME: m for m in (face_pretrain, face, a, b, scratch)}


STAGES = _registry()


def classifiers() -> tuple[str, ...]:
  """The stages whose nets classify (expressions or, for face_pretrain, identities)."""
  return tuple(name for name, m in STAGES.items() if m.ROLE.classifies)


def expression_nets() -> tuple[str, ...]:
  """The stages whose trained nets classify expressions: what predict and export can serve, FN2EN first."""
  return tuple(sorted((name for name, m in STAGES.items() if m.ROLE.classifies == 'expressions'),
                      key=lambda name: -STAGES[name].ROLE.rank))


def students() -> tuple[str, ...]:
  """The stages that train the student as an expression classifier (FN2EN and its baseline from scratch)."""
  return tuple(n for n in expression_nets() if STAGES[n].ROLE.net == 'student')


def rows() -> tuple[tuple[str, str], ...]:
  """(row, stage) of the results table, in its order."""
  named = sorted((m.ROLE.rank, m.ROLE.row, name) for name, m in STAGES.items() if m.ROLE.row)
  return tuple((row, name) for _, row, name in named)


def paper_keys() -> dict[str, str]:
  """The paper's key of each row, by the stage that fills it."""
  return {name: m.ROLE.paper_key for name, m in STAGES.items() if m.ROLE.paper_key}


def order_errors(stages: tuple[str, ...]) -> list[str]:
  """Why `stages` cannot run in this order: a stage listed before the stage it READS (each as a sentence)."""
  out = []
  for position, name in enumerate(stages):
    reads = STAGES[name].READS
    if reads in stages and stages.index(reads) > position:
      out.append(f'{name!r} reads the checkpoint of {reads!r}, so it must come after it')
  return out


def train_size(config: ml_collections.ConfigDict, name: str, data_dir: str) -> int:
  """How many examples stage `name` trains on in this run (this fold, less its validation subjects)."""
  module = STAGES[name]
  if hasattr(module, 'train_examples'):  # a stage on other data than config.data (face_pretrain)
    return len(module.train_examples(config, data_dir))
  return len(pipeline.splits(config.data, data_dir).train)


def budgeted(config: ml_collections.ConfigDict, data_dir: str) -> ml_collections.ConfigDict:
  """`config` with each listed stage's step counts derived from its epoch counts (train/budget.py), on this run's
  own training set: what the stages, and the checks of whether one has finished, read."""
  out = config.copy_and_resolve_references()
  for name in out.stages:
    field = f'stage_{name}'
    if any(out[field].get(epochs, 0) > 0 for epochs in budget.EPOCH_FIELDS.values()):
      out[field] = budget.resolve(out[field], train_size(out, name, data_dir))
  return out
