#!/usr/bin/env bash
# Runs one config on every worker of a Cloud TPU VM pod slice (each host runs the same command; JAX joins them).
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/sfew.py gs://bucket/fn2en/sfew [--config.overrides ...]
#
# The workdir and config.data_dir must be visible to every host (a GCS bucket or a shared filesystem): Orbax writes
# one checkpoint from all hosts, and each host reads its own shard of the data.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
overrides=$(printf ' %q' "$@")
here=$(cd "$(dirname "$0")/.." && pwd)

# 1. Copy this checkout to every host and install it with JAX for TPU (idempotent).
gcloud compute tpus tpu-vm scp --recurse "$here" "$tpu":~/fn2en_jax --zone="$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e
  cd fn2en_jax
  python3 -m venv ~/fn2en_venv && . ~/fn2en_venv/bin/activate
  pip install -q -e . 'jax[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
"
# 2. Run; --distributed makes every host call jax.distributed.initialize() before touching a device.
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  cd fn2en_jax && . ~/fn2en_venv/bin/activate
  python -m fn2en_jax.main --distributed --config=$config --workdir=$workdir --config.dtype=bfloat16$overrides
"
