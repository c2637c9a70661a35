"""Prepares TFDS datasets in the array_record format that grain reads."""

from __future__ import annotations

import tensorflow_datasets as tfds

from fn2en_jax.data import builders  # noqa: F401  (registers the builders)


def get_builder(name: str, *, data_dir: str, manual_dir: str | None = None,
                config: tfds.core.BuilderConfig | None = None) -> tfds.core.DatasetBuilder:
  """Returns the builder `name` ('ds' or 'ds/config'), prepared on first use.

  Preparing twice is a no-op: TFDS finds the finished dataset in `data_dir`.
  """
  kwargs = {'config': config} if config is not None else {}
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record', **kwargs)
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  builder.download_and_prepare(download_config=download_config)
  return builder
