"""SIGTERM (what a preempted cloud VM or a SLURM job at its time limit receives) ends a run cleanly: the loop
saves a checkpoint at the next step boundary and stops with `errors.Preempted`; the next launch resumes there.

On one process a Python handler notes the signal, for the rest of the process (a signal during a stage's last
step stops the next stage at its first step). On several, JAX's distributed runtime already catches SIGTERM and
agrees with the other processes on a step at which all of them stop (Orbax's `reached_preemption`), so that every
host saves the same step; a Python handler would replace that one, so none is installed there.
"""

from __future__ import annotations

import signal
import threading

import jax
import orbax.checkpoint as ocp

_SIGNALLED = threading.Event()
_INSTALLED = threading.Event()


def watch() -> None:
  """Starts noting SIGTERM (once per process; a no-op on multi-host runs, see above)."""
  if jax.process_count() == 1 and not _INSTALLED.is_set():
    signal.signal(signal.SIGTERM, lambda signum, frame: _SIGNALLED.set())
    _INSTALLED.set()


def reached(mngr: ocp.CheckpointManager, step: int) -> bool:
  """Whether to save and stop after `step`. Call it after every step, on every process."""
  if jax.process_count() == 1:
    return _SIGNALLED.is_set()
  return mngr.reached_preemption(step)
