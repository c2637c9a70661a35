"""Joining a multi-host run with JAX's own distributed runtime, and leaving it cleanly.

Every process runs the same program on its own devices; `jax.distributed.initialize` connects them to process 0's
coordination service, which also watches that every process is alive (heartbeats): when one dies, the others are
told within `heartbeat_timeout_s` and stop, instead of waiting forever inside a collective.
"""

from __future__ import annotations

import os

import jax


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, heartbeat_timeout_s: int = 100) -> None:
  """Joins the other processes. Arguments left None come from the environment variables JAX_COORDINATOR_ADDRESS
  (which JAX reads itself), JAX_NUM_PROCESSES and JAX_PROCESS_ID, else from JAX's cluster detection (TPU pods,
  SLURM, Open MPI, Kubernetes)."""
  if num_processes is None and os.environ.get('JAX_NUM_PROCESSES'):
    num_processes = int(os.environ['JAX_NUM_PROCESSES'])
  if process_id is None and os.environ.get('JAX_PROCESS_ID'):
    process_id = int(os.environ['JAX_PROCESS_ID'])
  # CPU devices of different processes exchange collectives through gloo (the default stays in one process);
  # GPUs and TPUs use their own interconnect whatever this says.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, heartbeat_timeout_seconds=heartbeat_timeout_s)
