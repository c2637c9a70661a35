"""The command line of an experiment (the logic is in `experiment`, importable from a colab).

  python -m fn2en_jax.main --config=configs/demo.py --workdir=/tmp/fn2en_demo
  python -m fn2en_jax.main --config=configs/sfew.py --workdir=... --config.stage_a.learning_rate=0.01

A stage whose final checkpoint exists in <workdir>/<stage>/ is not trained again, only evaluated.
"""

from __future__ import annotations

import logging as logging_lib
import os

from absl import app, flags, logging
from ml_collections import config_flags

from fn2en_jax import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard logs and results go here.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Multi-host: join the other processes with '
                                 'jax.distributed.initialize() before using any device. On TPU pods and under SLURM '
                                 'the coordinator, process count and id are detected; elsewhere give the three '
                                 'flags below (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 (implies --distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'How many processes take part (implies --distributed).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes-1 (implies --distributed).')
_HEARTBEAT = flags.DEFINE_integer('heartbeat_timeout_s', 100, 'Multi-host: a process that stops answering for this '
                                  'long is declared dead, and JAX ends the others ("another task died") instead of '
                                  'letting them wait for it.')


class _QuietLibraries(logging_lib.Filter):
  """Orbax logs every step of every save at INFO; the loop's own progress lines are what a user wants to read."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    return record.levelno >= logging_lib.WARNING or '/orbax/' not in record.pathname


def main(argv):
  # Imported here, after the flags parsed: a mistyped flag or config field is reported in a second, not after
  # JAX, TensorFlow and Orbax have loaded.
  from fn2en_jax import experiment  # pylint: disable=import-outside-toplevel
  from fn2en_jax.train import distributed  # pylint: disable=import-outside-toplevel
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _WORKDIR.value is None:
    raise app.UsageError('--workdir is required')
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _DISTRIBUTED.value or any(v is not None for v in explicit) or os.environ.get('JAX_COORDINATOR_ADDRESS'):
    distributed.initialize(*explicit, heartbeat_timeout_s=_HEARTBEAT.value)
  experiment.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  cli.run_app(main)
