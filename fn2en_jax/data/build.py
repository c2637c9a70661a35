"""Prepares TFDS datasets in the array_record format that grain reads.

  python -m fn2en_jax.data.build NAME[/CONFIG] --manual_dir=DIR --data_dir=DIR [--option=KEY=VALUE ...]

builds any registered builder (ck_plus/8class, oulu_casia, tfd/96x96, sfew, fer2013, ck_plus_48, synth_faces/...);
docs/datasets.md says what each `--manual_dir` must hold. Afterwards `import fn2en_jax.data.builders` and
`tfds.builder(NAME, data_dir=DIR)` read it back. Building twice is a no-op; a failed build leaves `--data_dir` as it
found it (no dataset folder, no downloads/), and a bad input file stops it with one line naming the file.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
import time

from absl import flags
from etils import epath
import tensorflow_datasets as tfds

from fn2en_jax import cli, errors
from fn2en_jax.data import builders  # noqa: F401  (registers the builders)


def _first_missing(path: epath.Path, stop: epath.Path) -> epath.Path | None:
  """The outermost folder between `stop` (exclusive) and `path` (inclusive) that does not exist yet."""
  missing = None
  while path != stop and not path.exists():
    missing, path = path, path.parent
  return missing


def get_builder(name: str, *, data_dir: str, manual_dir: str | None = None,
                config: tfds.core.BuilderConfig | None = None) -> tfds.core.DatasetBuilder:
  """Returns the builder `name` ('ds' or 'ds/config'), prepared on first use.

  Preparing twice is a no-op: TFDS finds the finished dataset in `data_dir`. A failed preparation leaves `data_dir`
  as it was: without a folder for this dataset (or this config, if others were built), and without the downloads/
  folder (and downloads/extracted/) TFDS makes on the way, if this call made them; so it can simply be re-run.
  A missing or empty `manual_dir` raises errors.MissingInput with the dataset's instructions.
  """
  kwargs = {'config': config} if config is not None else {}
  if config is None:
    _check_name(name)
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record', **kwargs)
  # TFDS writes into an incomplete.* folder that it removes on failure, but it first creates the dataset and config
  # folders above it, and data_dir/downloads/ (its default download, extraction and manual dirs live there).
  root = epath.Path(data_dir)
  created = [_first_missing(builder.data_path, stop=root), _first_missing(root / 'downloads' / 'extracted', stop=root)]
  if not root.exists():
    created = [root]
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=download_config)
  except BaseException as e:
    for path in created:
      if path is not None:
        path.rmtree(missing_ok=True)
    if isinstance(e, AssertionError) and str(e).startswith('Manual directory'):
      raise _manual_dir_error(builder, manual_dir) from e
    raise
  return builder


def _manual_dir_error(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> errors.InputError:
  """TFDS's AssertionError for a missing or empty manual dir, as one line of cause and the builder's instructions."""
  instructions = ' '.join((builder.MANUAL_DOWNLOAD_INSTRUCTIONS or '').split())
  what = f'--manual_dir={manual_dir}: folder missing or empty' if manual_dir else 'no --manual_dir given'
  return errors.MissingInput(
      f'{what}; {builder.name} is built from files you obtain yourself',
      f'{instructions} (docs/datasets.md)' if instructions else 'see docs/datasets.md')


def builder_config(name: str, *, manual_dir: str | None,
                   options: dict[str, object] | None = None) -> tfds.core.BuilderConfig | None:
  """The config of builder `name` ('ds' or 'ds/config') made from `options`, for a builder class that declares
  `make_config(config, *, manual_dir, **options)` (image_folder); None for the others, which take no options."""
  dataset, _, config = name.partition('/')
  make = getattr(tfds.builder_cls(dataset), 'make_config', None)
  if make is None:
    if options:
      raise errors.ConfigError(f'{dataset} takes no builder options, got {sorted(options)}',
                               'drop the options, or pick a named config: NAME/CONFIG')
    return None
  return make(config, manual_dir=manual_dir, **(options or {}))


def parse_options(entries: Sequence[str]) -> dict[str, object]:
  """['key=value', ...] -> {key: value}; values are Python literals where they parse as one, else strings."""
  options = {}
  for entry in entries:
    key, sep, value = entry.partition('=')
    if not (sep and key):
      raise errors.ConfigError(f'--option={entry!r} is not KEY=VALUE', 'e.g. --option=image_size=96')
    try:
      options[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      options[key] = value
  return options


def _summary(builder: tfds.core.DatasetBuilder) -> str:
  info = builder.info
  lines = [f'{info.full_name} at {builder.data_dir}']
  lines += [f'  {split}: {info.splits[split].num_examples} examples' for split in info.splits]
  label = info.features['label']
  lines.append(f'  label: {label.num_classes} classes {label.names[:10]}{" ..." if label.num_classes > 10 else ""}')
  metadata = info.metadata or {}
  if 'faces' in metadata:
    lines.append(f'  faces: {metadata["faces"]}; no face found: {metadata["no_face_count"]}')
  return '\n'.join(lines)


def _check_name(name: str) -> None:
  """A ConfigError unless `name` is a registered builder and, where it has named configs, one of them."""
  dataset, _, config = name.partition(':')[0].partition('/')  # ':1.0.0' (a version) is TFDS's to check
  try:
    cls = tfds.builder_cls(dataset)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise errors.ConfigError(f'no dataset builder named {dataset!r}',
                             'docs/datasets.md lists the names (ck_plus, ck_plus_48, fer2013, oulu_casia, sfew, tfd, '
                             'synth_faces, ...)') from e
  configs = list(cls.builder_configs)
  if config and configs and config not in configs and not hasattr(cls, 'make_config'):
    raise errors.ConfigError(f'{dataset} has no config {config!r}', f'pick one of {configs}: {dataset}/{configs[0]}')


def define_flags() -> None:
  """The command's flags; defined on demand, not at import time, because the pipeline imports this module into
  `fn2en_jax.main`, whose command line must not grow these flags."""
  if 'data_dir' in flags.FLAGS:
    return
  # Not required=True: absl would then refuse to parse any other command's flags in a process that defined these.
  flags.DEFINE_string('data_dir', None, 'Where TFDS writes the prepared dataset (required).')
  flags.DEFINE_string('manual_dir', None, 'The dataset as distributed (not needed for synth_faces); see '
                      'docs/datasets.md.')
  flags.DEFINE_multi_string('option', [], 'KEY=VALUE, a builder option, repeatable (image_folder: image_size, '
                            'alignment, margin, subject_regex, classes); see docs/datasets.md.')


def main(argv: Sequence[str]) -> None:
  """Builds the dataset named by the one argument after the flags; `cli.run_app` runs it."""
  if len(argv) != 2:
    raise errors.ConfigError(f'expected one dataset name after the flags, got {list(argv[1:])}',
                             'python -m fn2en_jax.data.build NAME[/CONFIG] --data_dir=DIR --manual_dir=DIR, e.g. '
                             'ck_plus/6class; docs/datasets.md lists the names')
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if not FLAGS.data_dir:
    raise errors.ConfigError('--data_dir is missing', 'give the folder TFDS writes the dataset to, e.g. '
                             '--data_dir=$HOME/tensorflow_datasets')
  name = argv[1]
  _check_name(name)
  config = builder_config(name, manual_dir=FLAGS.manual_dir, options=parse_options(FLAGS.option))
  name = name.partition('/')[0] if config is not None else name
  kwargs = {'config': config} if config is not None else {}
  ready = tfds.builder(name, data_dir=FLAGS.data_dir, **kwargs).is_prepared()
  start = time.perf_counter()
  builder = get_builder(name, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, config=config)
  status = 'already built' if ready else f'built in {time.perf_counter() - start:.1f} s'
  print(f'{status}: {_summary(builder)}')


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
