#!/usr/bin/env bash
# Trains one config on every GPU of this machine: one process, one data-parallel replica per GPU.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

usage() {
  print_text <<EOF
usage: $PROG --config=FILE --workdir=DIR [--env=NAME=VALUE ...] [--dry-run] [--config.field=value ...] [-- FLAG ...]

Runs, in the current directory, with the python on PATH (pip install -e . 'jax[cuda12]'):
  env XLA_PYTHON_CLIENT_PREALLOCATE=false python -m fn2en_jax.main --config=FILE --workdir=DIR \\
      --config.dtype=bfloat16 [--config.field=value ...]

  --config=FILE       experiment config (configs/*.py)
  --workdir=DIR       checkpoints, logs and results; running the same command again resumes from its newest
                      checkpoint (after a preemption, exit code 6, too)
  --env=NAME=VALUE    environment for the run (repeatable); XLA_PYTHON_CLIENT_PREALLOCATE=false by default, so
                      that XLA takes GPU memory as it needs it
  --config.field=...  config overrides, passed as given; --config.dtype=bfloat16 (activations in bfloat16,
                      parameters in float32) unless you set config.dtype
  -- FLAG ...         any other flags of fn2en_jax.main, passed as given
  --dry-run           print the command, one line, exactly as it would run; run nothing, need no tool

Every stage's batch_size must be divisible by the number of GPUs. Exit codes: those of fn2en_jax.main; 2 for a
wrong or missing argument, 127 when python is not on PATH.
EOF
}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) common_option "$1" || unknown_option "$1" ;;
  esac
  shift
done

need_arg "$CONFIG" --config=FILE 'the experiment config, e.g. configs/sfew.py'
need_arg "$WORKDIR" --workdir=DIR 'where checkpoints and results go'
need_tool python "activate the environment fn2en_jax is installed in (pip install -e . 'jax[cuda12]')"

default_env XLA_PYTHON_CLIENT_PREALLOCATE false
train_command
run_last "${TRAIN[@]}"
