#!/usr/bin/env bash
# Runs one config over several GPU hosts under SLURM (one process per host, every GPU of a host in it).
#
#   sbatch --nodes=4 --gpus-per-node=8 --ntasks-per-node=1 launch/gpu_multinode.sh configs/sfew.py /shared/runs/sfew
#
# jax.distributed.initialize() reads the coordinator, process count and index from SLURM's environment.
# The workdir and config.data_dir must be on a filesystem every host sees.
set -euo pipefail
config=$1 workdir=$2
shift 2
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
srun python -m fn2en_jax.main --distributed --config="$config" --workdir="$workdir" --config.dtype=bfloat16 "$@"
