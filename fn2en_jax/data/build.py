"""Prepares TFDS datasets in the array_record format that grain reads.

  python -m fn2en_jax.data.build NAME[/CONFIG] --manual_dir=DIR --data_dir=DIR

builds any registered builder (ck_plus/8class, oulu_casia, tfd/96x96, sfew, fer2013, ck_plus_48, synth_faces/...);
docs/datasets.md says what each `--manual_dir` must hold. Afterwards `import fn2en_jax.data.builders` and
`tfds.builder(NAME, data_dir=DIR)` read it back. Building twice is a no-op; a failed build leaves no dataset folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import time

from etils import epath
import tensorflow_datasets as tfds

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

  Preparing twice is a no-op: TFDS finds the finished dataset in `data_dir`. A failed preparation leaves
  `data_dir` without a folder for this dataset (or this config, if others were built), so it can simply be re-run.
  """
  kwargs = {'config': config} if config is not None else {}
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record', **kwargs)
  # TFDS writes into an incomplete.* folder that it removes on failure, but it first creates the dataset and config
  # folders above it; removing the ones this call created leaves data_dir as it was.
  created = _first_missing(builder.data_path, stop=epath.Path(data_dir))
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    builder.download_and_prepare(download_config=download_config)
  except BaseException:
    if created is not None:
      created.rmtree(missing_ok=True)
    raise
  return builder


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


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m fn2en_jax.data.build', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('name', help='NAME or NAME/CONFIG, e.g. ck_plus/6class')
  parser.add_argument('--data_dir', required=True, help='where TFDS writes the prepared dataset')
  parser.add_argument('--manual_dir', default=None,
                      help='the dataset as distributed (not needed for synth_faces); see docs/datasets.md')
  args = parser.parse_args(argv)
  ready = tfds.builder(args.name, data_dir=args.data_dir).is_prepared()
  start = time.perf_counter()
  builder = get_builder(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir)
  status = 'already built' if ready else f'built in {time.perf_counter() - start:.1f} s'
  print(f'{status}: {_summary(builder)}')


if __name__ == '__main__':
  main()
