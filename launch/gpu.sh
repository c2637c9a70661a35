#!/usr/bin/env bash
# Runs one config on every GPU of this machine (one data-parallel replica per GPU).
#
#   launch/gpu.sh configs/sfew.py /data/runs/sfew [--config.field=value ...]
#
# Needs JAX with CUDA in the active environment: pip install -e . 'jax[cuda12]'.
# The global batch size (config.stage_*.batch_size) must be divisible by the number of GPUs.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
# Let XLA take GPU memory as it needs it; TensorFlow (tensorflow-cpu, used by TFDS and the TensorBoard writer)
# never sees the GPUs.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec python -m fn2en_jax.main --config="$config" --workdir="$workdir" --config.dtype=bfloat16 "$@"
