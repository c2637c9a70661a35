"""The input pipeline: grain over a TFDS random-access data source.

Every model in this package takes RGB images scaled to [-1, 1]; a teacher that was trained with another
normalisation converts inside its own apply function, so that the student and the teacher read the same batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import grain
import jax
import ml_collections
import numpy as np
from PIL import Image

from fn2en_jax import errors
from fn2en_jax.data import build, folds
from fn2en_jax.models import preprocess


PROTOCOLS = ('subject_folds', 'tfd_folds', 'leave_one_subject_out')


@dataclasses.dataclass(frozen=True)
class Examples:
  """A subset of a data source's records, with the columns the splits and reports need.

  `fold_codes`: TFD's official folds, (N, 5) codes 0 unused / 1 train / 2 valid / 3 test; None for other datasets.
  """
  source: Sequence[dict]
  indices: np.ndarray
  labels: np.ndarray
  subjects: np.ndarray
  class_names: tuple[str, ...]
  fold_codes: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i: int) -> dict:
    return self.source[int(self.indices[i])]

  def subset(self, positions: np.ndarray) -> 'Examples':
    return dataclasses.replace(self, indices=self.indices[positions], labels=self.labels[positions],
                               subjects=self.subjects[positions],
                               fold_codes=None if self.fold_codes is None else self.fold_codes[positions])


def validate(data_cfg: ml_collections.ConfigDict, field: str) -> None:
  """Checks a data section (`field`: 'data' or 'face_data') before anything runs."""
  if data_cfg.crop_scale < 1:
    raise errors.ConfigError(f'config.{field}.crop_scale must be >= 1, got {data_cfg.crop_scale}',
                             f'set --config.{field}.crop_scale=1.125 (resize to 1.125x, crop the model input)')
  for entry in data_cfg.extra_train:
    parse_dataset_split(entry)
  if not 0 <= data_cfg.get('validation', 0) < 1:
    raise errors.ConfigError(f'config.{field}.validation must be in [0, 1) (a fraction of the training subjects), '
                             f'got {data_cfg.validation}', f'set --config.{field}.validation=0.1, or 0 for none')


def validate_protocol(data: ml_collections.ConfigDict) -> None:
  """Checks how the expression dataset `config.data` is split into train and test."""
  remedy = 'see docs/datasets.md, "Protocols"'
  if data.protocol not in PROTOCOLS:
    raise errors.ConfigError(f'config.data.protocol must be one of {PROTOCOLS}, got {data.protocol!r}', remedy)
  if data.eval_split:
    if data.protocol != 'subject_folds':
      raise errors.ConfigError(f'config.data.eval_split={data.eval_split!r} is the test set, so data.protocol='
                               f'{data.protocol!r} (which picks a test fold) cannot apply', 'set one of them')
    if data.fold == -1:
      raise errors.ConfigError(f'config.data.fold=-1 runs every fold, but data.eval_split={data.eval_split!r} is '
                               'one official test split', 'set --config.data.fold=0')
    return
  if data.num_folds < 2:
    raise errors.ConfigError(f'config.data.num_folds must be >= 2, got {data.num_folds}', remedy)
  if not -1 <= data.fold < data.num_folds:
    raise errors.ConfigError(f'config.data.fold must be in [0, {data.num_folds}), or -1 for every fold, got '
                             f'{data.fold}', 'set --config.data.fold to one of them')
  if data.protocol == 'tfd_folds' and data.num_folds != folds.TFD_NUM_FOLDS:
    raise errors.ConfigError(f"config.data.num_folds must be {folds.TFD_NUM_FOLDS} with protocol='tfd_folds' "
                             f"(TFD's official folds), got {data.num_folds}",
                             f'set --config.data.num_folds={folds.TFD_NUM_FOLDS}')


class Splits(NamedTuple):
  """A fold's three disjoint parts. `validation` (subjects carved from the training subjects, or None) chooses
  the checkpoint and the budget; `test` is evaluated once, on the chosen checkpoint, and chooses nothing."""
  train: 'Examples'
  validation: 'Examples | None'
  test: 'Examples'


def splits(data: ml_collections.ConfigDict, data_dir: str) -> Splits:
  """The expression dataset split by the config's protocol into (train, test): an official eval split (SFEW's
  validation), TFD's official fold, or a subject-disjoint fold; then `data.validation` of the training subjects
  are held out as the validation set, and `data.extra_train` is appended to what is left to train on (the extra
  data only ever trains)."""
  examples = load(data, data.split, data_dir=data_dir)
  official_valid = None
  if data.eval_split:
    train, test = examples, load(data, data.eval_split, data_dir=data_dir)
  elif data.protocol == 'tfd_folds':
    train, official_valid, test = tfd_split(examples, data.fold, valid_in_train=data.tfd_valid_in_train)
  elif data.protocol == 'leave_one_subject_out':  # num_folds is checked against the subjects here, once they are read
    train, test = leave_one_subject_out_split(examples, data.fold, data.num_folds)
  else:
    train, test = subject_split(examples, data.fold, data.num_folds)
  validation = None
  if data.validation and official_valid is not None:  # TFD's own valid rows, where they do not train
    validation = official_valid
  elif data.validation:
    train, validation = validation_split(train, data.validation)
  return Splits(with_extra_train(train, data, data_dir=data_dir), validation, test)


def validation_split(train: Examples, fraction: float) -> tuple[Examples, Examples]:
  """(train, validation): `fraction` of the training subjects (at least one), evenly spaced in their sorted order,
  become the validation subjects with all their examples. A function of the subject set alone, like the folds, so
  every run of a fold holds out the same people, and no subject is in two parts."""
  unique = np.asarray(sorted(set(train.subjects.tolist())))
  count = max(1, int(round(fraction * len(unique))))
  if count >= len(unique):
    raise errors.ConfigError(f'config.data.validation={fraction} would hold out {count} of the {len(unique)} '
                             'training subjects, leaving none to train on',
                             'lower --config.data.validation, or set it to 0 for no validation set (the last step is then '
                             'reported)')
  held_out = unique[np.round(np.arange(count) * len(unique) / count).astype(int)]
  is_validation = np.isin(train.subjects, held_out)
  return train.subset(np.flatnonzero(~is_validation)), train.subset(np.flatnonzero(is_validation))


def load(data_cfg: ml_collections.ConfigDict, split: str, *, data_dir: str) -> Examples:
  """Reads `split` of the dataset `data_cfg` describes (building it on first use)."""
  return _load(data_cfg.name, data_cfg.config, data_cfg.manual_dir, split, data_dir, builder_options(data_cfg))


def builder_options(data_cfg: ml_collections.ConfigDict) -> tuple:
  """`data_cfg.builder_options` as sorted, hashable (key, value) pairs: the options of a builder that declares
  `make_config` (build.builder_config), e.g. image_folder's image_size and subject_regex, synth_faces' num_subjects."""
  options = data_cfg.builder_options
  options = options.to_dict() if isinstance(options, ml_collections.ConfigDict) else dict(options)
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


# Every stage of a run reads the same splits: read each once per process.
@functools.lru_cache(maxsize=8)
def _load(dataset: str, builder_config: str, manual_dir: str, split: str, data_dir: str, options: tuple) -> Examples:
  name = f'{dataset}/{builder_config}' if builder_config else dataset
  # A builder that makes its config from options (synth_faces, image_folder) is named without the config part.
  config = build.builder_config(name, manual_dir=manual_dir or None, options=dict(options))
  name = dataset if config is not None else name
  builder = build.get_builder(name, data_dir=data_dir, manual_dir=manual_dir or None, config=config)
  if split not in builder.info.splits:
    raise errors.ConfigError(f'data.split: {builder.info.full_name} has splits {sorted(builder.info.splits)}, not '
                             f'{split!r}', f'set the split to one of {sorted(builder.info.splits)}')
  source = builder.as_data_source()[split]
  # One pass over the records to learn labels and subjects; the datasets are small (tens of thousands of faces).
  records = [source[i] for i in range(len(source))]
  labels = np.asarray([r['label'] for r in records], np.int32)
  subjects = np.asarray([_text(r['subject']) for r in records])
  names = tuple(builder.info.features['label'].names)
  fold_codes = None
  if 'folds' in builder.info.features:
    fold_codes = np.asarray([r['folds'] for r in records], np.int32).reshape(len(records), folds.TFD_NUM_FOLDS)
  return Examples(source, np.arange(len(source)), labels, subjects, names, fold_codes)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def subject_split(examples: Examples, fold: int, num_folds: int) -> tuple[Examples, Examples]:
  """(train, test) with no subject in both: the test set is subject fold `fold` of `num_folds`."""
  train, test = folds.fold_split(examples.subjects, fold, num_folds)
  return examples.subset(train), examples.subset(test)


def leave_one_subject_out_split(examples: Examples, fold: int, num_folds: int) -> tuple[Examples, Examples]:
  """(train, test) where the test set is every example of subject `fold` (the subjects sorted); `num_folds` must be
  the number of subjects, so that running every fold tests each example exactly once."""
  train, test = folds.leave_one_subject_out(examples.subjects, fold, num_folds)
  return examples.subset(train), examples.subset(test)


def tfd_split(examples: Examples, fold: int, *,
              valid_in_train: bool) -> tuple[Examples, Examples | None, Examples]:
  """(train, valid, test) of TFD's official fold `fold`: test = code 3; train = code 1, and code 2 (valid) too if
  `valid_in_train` (valid is then None). Rows with code 0 take no part in that fold."""
  if examples.fold_codes is None:
    raise errors.ConfigError("data.protocol='tfd_folds' needs TFD's official folds (the feature `folds` of the tfd "
                             'builder); this dataset has none', "use --config.data.protocol=subject_folds")
  train, valid, test = folds.tfd_fold_split(examples.fold_codes, fold)
  if valid_in_train:
    return examples.subset(np.sort(np.concatenate([train, valid]))), None, examples.subset(test)
  return examples.subset(train), examples.subset(valid), examples.subset(test)


class _Chain(Sequence):
  """The records of several `Examples`, one after the other: one random-access source for grain."""

  def __init__(self, parts: Sequence[Examples]):
    self._parts = tuple(parts)
    self._ends = np.cumsum([len(p) for p in self._parts])

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __getitem__(self, i: int) -> dict:
    if not 0 <= i < len(self):
      raise IndexError(i)
    part = int(np.searchsorted(self._ends, i, side='right'))
    return self._parts[part][i - (int(self._ends[part - 1]) if part else 0)]


def concatenate(parts: Sequence[Examples]) -> Examples:
  """All examples of `parts`, in order; their label names must be the same, in the same order."""
  first = parts[0]
  for part in parts[1:]:
    if part.class_names != first.class_names:
      raise ValueError(f'cannot concatenate datasets whose labels differ: {list(first.class_names)} vs '
                       f'{list(part.class_names)}')
  codes = [p.fold_codes for p in parts]
  return Examples(_Chain(parts), np.arange(sum(len(p) for p in parts)), np.concatenate([p.labels for p in parts]),
                  np.concatenate([p.subjects for p in parts]), first.class_names,
                  None if any(c is None for c in codes) else np.concatenate(codes))


def parse_dataset_split(entry: str) -> tuple[str, str, str]:
  """'name[/config]:split' -> (name, config, split); config may be ''."""
  dataset, sep, split = entry.rpartition(':')
  name, _, config = dataset.partition('/')
  if not (sep and name and split) or '/' in config:
    raise errors.ConfigError(f"config.data.extra_train: {entry!r} is not 'name[/config]:split'",
                             "write it as e.g. 'fer2013:train'")
  return name, config, split


def with_extra_train(train: Examples, data_cfg: ml_collections.ConfigDict, *, data_dir: str) -> Examples:
  """`train` followed by every `data_cfg.extra_train` split (read from `extra_manual_dir`, else `manual_dir`).

  The extra data only ever trains; its label names must equal the dataset's exactly, in the same order, since
  labels travel as indices.
  """
  parts = [train]
  for entry in data_cfg.extra_train:
    name, config, split = parse_dataset_split(entry)
    extra_cfg = ml_collections.ConfigDict({**data_cfg.to_dict(), 'name': name, 'config': config,
                                           'manual_dir': data_cfg.extra_manual_dir or data_cfg.manual_dir})
    extra = load(extra_cfg, split, data_dir=data_dir)
    if extra.class_names != train.class_names:
      raise errors.ConfigError(f'data.extra_train: {entry!r} has the labels {list(extra.class_names)}, but '
                               f'{data_cfg.name} has {list(train.class_names)}; they must match exactly, in order',
                               'add only datasets with the same label names, in the same order (FER2013 to SFEW)')
    parts.append(extra)
  return concatenate(parts) if len(parts) > 1 else train


def holdout_split(examples: Examples, every: int) -> tuple[Examples, Examples]:
  """(train, test) holding out every `every`-th example: for identity data, where test subjects are train subjects."""
  positions = np.arange(len(examples))
  return examples.subset(positions[positions % every != 0]), examples.subset(positions[positions % every == 0])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def preprocess_train(image: np.ndarray, rng: np.random.Generator, image_size: int, resize: int,
                     flip: bool) -> np.ndarray:
  """Resize to `resize`, random `image_size` crop, random horizontal flip."""
  image = _resize(image, resize)
  top, left = rng.integers(0, resize - image_size + 1, size=2)
  image = image[top:top + image_size, left:left + image_size]
  if flip and rng.random() < 0.5:
    image = image[:, ::-1]
  return preprocess.from_uint8(image)


def preprocess_eval(image: np.ndarray, image_size: int, resize: int) -> np.ndarray:
  """Resize to `resize`, center `image_size` crop."""
  image = _resize(image, resize)
  offset = (resize - image_size) // 2
  return preprocess.from_uint8(image[offset:offset + image_size, offset:offset + image_size])


def resize_for(data_cfg: ml_collections.ConfigDict) -> int:
  return int(round(data_cfg.image_size * data_cfg.crop_scale))


def this_host() -> tuple[int, int]:
  """(this process's index, the number of processes): which rows of each global batch this host reads."""
  return jax.process_index(), jax.process_count()


def view_rng(seed: int, index: int, view: int) -> np.random.Generator:
  """The random stream of fixed augmentation view `view` of training example `index`: the same in every epoch, every
  process and every run with this seed, so that the teacher's map of a view can be computed once and stored."""
  return np.random.default_rng((seed, index, view))


def view_image(image: np.ndarray, data_cfg: ml_collections.ConfigDict, *, seed: int, index: int,
               view: int) -> np.ndarray:
  """Fixed augmentation view `view` of training example `index` (its crop and flip from `view_rng`)."""
  return preprocess_train(image, view_rng(seed, index, view), data_cfg.image_size, resize_for(data_cfg),
                          data_cfg.flip)


def train_iterator(examples: Examples, data_cfg: ml_collections.ConfigDict, *, global_batch_size: int, seed: int,
                   host: tuple[int, int] | None = None, views: int = 0, targets=None):
  """An endless, shuffled, augmented, batched and checkpointable iterator over this host's rows of every global
  batch.

  The global order (the shuffle of every epoch and each example's augmentation) is that of a single process: the
  hosts cut each global batch into consecutive row blocks, host i taking block i. So a run on several hosts sees
  the same batches, on the same devices, as a run of as many devices in one process, and the hosts read disjoint
  parts of every epoch.

  `views` = 0: a fresh random crop and flip at every visit of an example. `views` = K > 0: every example has K fixed
  views (`view_rng`), and each visit draws one of them; `targets[i, k]` (stage a's cached teacher maps), when given,
  comes along as `batch['target']`.
  """
  index, hosts = host or this_host()
  if global_batch_size % hosts:
    raise errors.ConfigError(f'batch_size {global_batch_size} is not divisible by the {hosts} hosts',
                             'set the stage\'s batch_size to a multiple of the number of processes')
  size, resize, flip = data_cfg.image_size, resize_for(data_cfg), data_cfg.flip

  def augment(i: int, rng: np.random.Generator) -> dict:
    record = examples[i]
    if views:
      view = int(rng.integers(views))
      image = view_image(record['image'], data_cfg, seed=seed, index=i, view=view)
    else:
      image = preprocess_train(record['image'], rng, size, resize, flip)
    out = {'image': image, 'label': np.int32(record['label'])}
    if targets is not None:
      out['target'] = np.asarray(targets[i, view])
    return out

  per_host = global_batch_size // hosts
  # Shuffled positions rather than records, so that a view knows which example it belongs to.
  dataset = (grain.MapDataset.range(len(examples)).shuffle(seed=seed).repeat().random_map(augment, seed=seed)
             .batch(per_host, drop_remainder=True)[index::hosts])
  options = grain.ReadOptions(num_threads=data_cfg.num_threads, prefetch_buffer_size=data_cfg.prefetch)
  return iter(dataset.to_iter_dataset(options))


def eval_arrays(examples: Examples, data_cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The whole (small) evaluation set, preprocessed, in memory and in a fixed order."""
  size, resize = data_cfg.image_size, resize_for(data_cfg)
  images = np.stack([preprocess_eval(examples[i]['image'], size, resize) for i in range(len(examples))])
  return {'image': images, 'label': examples.labels}


def eval_batches(arrays: dict[str, np.ndarray], global_batch_size: int, host: tuple[int, int] | None = None):
  """Fixed-size batches of this host's rows, zero-padded at the end; `mask` marks the real examples. Host i reads
  block i of each global batch, so that gathering the hosts' rows in order gives back every example once."""
  index, hosts = host or this_host()
  n = len(next(iter(arrays.values())))
  per_host = global_batch_size // hosts
  for start in range(0, n, global_batch_size):
    lo = min(start + index * per_host, n)
    rows = {k: v[lo:min(lo + per_host, n)] for k, v in arrays.items()}
    real = min(lo + per_host, n) - lo
    pad = per_host - real
    batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in rows.items()}
    batch['mask'] = np.concatenate([np.ones(real, bool), np.zeros(pad, bool)])
    yield batch
