"""The workdir: its file names, reading a run back (its config, whether it is a k-fold run, its folds), atomic
writes, and the checks before any training: that it can be written, has room, and holds no run of another config.

A run writes the resolved config to `<workdir>/config.json`; a later run in the same workdir resumes from the
checkpoints there, which is only meaningful if it trains the same model on the same data. `check_resume` compares
the two configs field by field and refuses (errors.WorkdirError, naming the fields) unless every difference is in
`RESUMABLE` or named in `--config.allow_changed=field1,field2`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from typing import Any

import ml_collections

from fn2en_jax import errors

CONFIG_JSON = 'config.json'    # the resolved config, written first: what every later command reads back
RESULTS_JSON = 'results.json'  # a single-fold run's table, written last (it carries the config too)
KFOLD_JSON = 'kfold.json'      # a k-fold run's report, written when every fold has finished

# Fields a resumed run may change: when and how much to train, log, evaluate and save; how fast to learn from here
# on; where the (same) data lives; this check's own settings. Any other difference (the model, the data, the seed,
# the optimizer, its schedule or batch size) makes the checkpoints belong to another experiment.
RESUMABLE = (
    'stages',
    'data_dir', 'compilation_cache_dir', 'paper', 'allow_changed', 'min_free_gb',
    'data.manual_dir', 'data.extra_manual_dir', 'data.num_threads', 'data.prefetch',
    'face_data.manual_dir', 'face_data.extra_manual_dir', 'face_data.num_threads', 'face_data.prefetch',
    'stage_*.num_steps', 'stage_*.log_every', 'stage_*.eval_every', 'stage_*.checkpoint_every',
    'stage_*.num_epochs', 'stage_*.eval_every_epochs', 'stage_*.checkpoint_every_epochs', 'stage_*.patience',
    'stage_*.learning_rate',
    'stage_a.cache_teacher',  # the same maps, stored or computed at each step
)


def check_writable(workdir: str, min_free_gb: float) -> None:
  """Creates `workdir` if needed and raises errors.WorkdirError unless a file can be written there and the disk
  holding it has at least `min_free_gb` GB free (a run's checkpoints would otherwise fail half-way)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.write_test_'):
      pass
  except OSError as e:
    raise errors.WorkdirError(f'--workdir={workdir}: cannot write there ({e.strerror or e})',
                              'pick a directory you can write to, or fix its permissions or mount') from e
  free_gb = shutil.disk_usage(workdir).free / 1e9
  if free_gb < min_free_gb:
    raise errors.WorkdirError(
        f'--workdir={workdir}: {free_gb:.3g} GB free on its disk, below config.min_free_gb={min_free_gb:g}',
        'free some space (or pick a workdir on a larger disk); lower --config.min_free_gb if the run needs less')


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}{key}.'))
    return out if out or not prefix else {prefix[:-1]: {}}
  return {prefix[:-1]: tree}


def _resumable(field: str, allowed: tuple[str, ...]) -> bool:
  return any(fnmatch.fnmatchcase(field, pattern) or field.startswith(f'{pattern}.') for pattern in allowed)


def changed_fields(saved: dict, config: dict) -> list[str]:
  """Dotted names of the fields whose values differ between two configs (as JSON dicts), or that only one has."""
  old, new = _flatten(saved), _flatten(config)
  return sorted(k for k in old.keys() | new.keys() if old.get(k, '<absent>') != new.get(k, '<absent>'))


def _allow_changed(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  value = config.get('allow_changed', '')
  entries = value.split(',') if isinstance(value, str) else list(value)
  return tuple(e.strip() for e in entries if e.strip())


def as_json(config: ml_collections.ConfigDict) -> dict:
  """The config as config.json stores it (tuples become lists), so that saved and new compare alike."""
  return json.loads(config.to_json_best_effort())


def check_resume(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises errors.WorkdirError if `<workdir>/config.json` holds a config that differs from `config` in a field
  outside RESUMABLE and --config.allow_changed; nothing to check in a new workdir."""
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.WorkdirError(f'{path}: cannot read the config of the run in this workdir ({e})',
                              'use a new --workdir, or delete the file to resume with the config given now') from e
  allowed = RESUMABLE + _allow_changed(config)
  changed = [f for f in changed_fields(saved, as_json(config)) if not _resumable(f, allowed)]
  if changed:
    old, new = _flatten(saved), _flatten(as_json(config))
    shown = ', '.join(f'{f} ({old.get(f, "absent")!r} -> {new.get(f, "absent")!r})' for f in changed[:6])
    more = f' and {len(changed) - 6} more' if len(changed) > 6 else ''
    raise errors.WorkdirError(
        f'--workdir={workdir} holds a run of another config: {shown}{more} changed, which changes the model or '
        'the data it was trained on',
        f'use a new --workdir; or, to resume anyway, add --config.allow_changed={",".join(changed)}')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config the run in `workdir` used: config.json, else (a run older than config.json) the one
  results.json carries."""
  for name, key in ((CONFIG_JSON, None), (RESULTS_JSON, 'config')):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      return ml_collections.ConfigDict(saved[key] if key else saved)
  raise errors.WorkdirError(f'--workdir={workdir}: neither {CONFIG_JSON} nor {RESULTS_JSON} is there, so this is '
                            'not the workdir of a `python -m fn2en_jax.main` run',
                            'pass the --workdir a run wrote (a k-fold one, or one of its fold_<i> folders)')


def fold_dir(workdir: str, fold: int) -> str:
  return os.path.join(workdir, f'fold_{fold}')


def folds(workdir: str) -> list[int]:
  """The folds a k-fold workdir has a fold_<i> folder for, in order (finished or not)."""
  names = os.listdir(workdir) if os.path.isdir(workdir) else []
  return sorted(int(n[5:]) for n in names if n.startswith('fold_') and n[5:].isdigit())


def is_kfold(workdir: str) -> bool:
  """Whether `workdir` holds a k-fold run (fold_<i>/ folders, then kfold.json) rather than the stages of one fold.
  Its config.json says so from the first step (data.fold = -1), finished or not; a workdir without one (a run older
  than config.json) is a k-fold one when it has kfold.json or fold_<i>/ folders."""
  path = os.path.join(workdir, CONFIG_JSON)
  if os.path.exists(path):
    return load_config(workdir).data.fold == -1
  return os.path.exists(os.path.join(workdir, KFOLD_JSON)) or bool(folds(workdir))


def check(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Every check, in the order a user would fix them."""
  check_writable(workdir, config.get('min_free_gb', 0.0))
  check_resume(workdir, config)


def write_text(path: str, text: str) -> None:
  """Writes `path` aside and renames it into place: a reader (another host, a resumed run) never sees it
  half-written, and a kill leaves the old file or the new one."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(f'{path}.tmp', 'w') as f:
    f.write(text)
  os.replace(f'{path}.tmp', path)


def write_json(path: str, value: Any) -> None:
  write_text(path, json.dumps(value, indent=2))
