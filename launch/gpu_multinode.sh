#!/usr/bin/env bash
# Trains one config on several GPU nodes under SLURM: one process per GPU, joined by jax.distributed.initialize().
set -euo pipefail
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

nodes=2
gpus=8
submit=1
sbatch_args=()

usage() {
  print_text <<EOF
usage: $PROG --config=FILE --workdir=DIR [--nodes=N] [--gpus-per-node=G] [--sbatch-arg=ARG ...] [--no-submit]
       [--env=NAME=VALUE ...] [--dry-run] [--config.field=value ...] [-- FLAG ...]

Submits with sbatch (or, with --no-submit, runs inside your salloc allocation or batch script) the step
  srun --nodes=N --ntasks-per-node=G --gpus-per-node=G env XLA_PYTHON_CLIENT_PREALLOCATE=false \\
      python -m fn2en_jax.main --distributed --config=FILE --workdir=DIR --config.dtype=bfloat16 [overrides]
One process per GPU: with --distributed, jax.distributed.initialize() reads the coordinator (the first node), the
process count and index from SLURM's environment and gives each process the GPU of its SLURM_LOCALID.

  --config=FILE       experiment config (configs/*.py)
  --workdir=DIR       on a filesystem every node sees, as are config.data_dir and config.teacher.init; running the
                      same command again resumes from the newest checkpoint in it
  --nodes=N           nodes (default $nodes)
  --gpus-per-node=G   GPUs per node, one process each (default $gpus)
  --sbatch-arg=ARG    one more sbatch option (repeatable), e.g. --sbatch-arg=--partition=gpu
                      --sbatch-arg=--time=24:00:00
  --no-submit         run srun here instead of submitting with sbatch
  --env=NAME=VALUE    environment for the run (repeatable); XLA_PYTHON_CLIENT_PREALLOCATE=false by default
  --config.field=...  config overrides, passed as given; --config.dtype=bfloat16 unless you set config.dtype
  -- FLAG ...         any other flags of fn2en_jax.main, passed as given
  --dry-run           print the command, one line, exactly as it would run; run nothing, need no tool

The sbatch job asks for SIGTERM 120 s before its time limit (--signal=TERM@120): fn2en_jax.main then saves a
checkpoint and exits with code 6; submit the same command again to resume. --requeue lets SLURM requeue the job
when the cluster preempts it. The job's log is fn2en_jax-<jobid>.log in the current directory.
Exit codes: sbatch's or srun's; 2 for a wrong or missing argument, 127 when sbatch, srun or python is not on PATH.
EOF
}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    --nodes=*) nodes=${1#*=} ;;
    --gpus-per-node=*) gpus=${1#*=} ;;
    --sbatch-arg=*) sbatch_args+=("${1#*=}") ;;
    --no-submit) submit=0 ;;
    *) common_option "$1" || unknown_option "$1" ;;
  esac
  shift
done

need_arg "$CONFIG" --config=FILE 'the experiment config, e.g. configs/sfew.py'
need_arg "$WORKDIR" --workdir=DIR 'where checkpoints and results go, on a filesystem every node sees'
[[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes=$nodes is not a positive number" 'pass --nodes=N, e.g. --nodes=2'
[[ $gpus =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node=$gpus is not a positive number" 'pass --gpus-per-node=G'
if ((submit)); then
  need_tool sbatch 'run this on a SLURM login node'
else
  need_tool srun 'run this inside a SLURM allocation (salloc or a batch script), or drop --no-submit'
fi
# The job runs the python on PATH now (sbatch exports this environment).
need_tool python "activate the environment fn2en_jax is installed in (pip install -e . 'jax[cuda12]')"

default_env XLA_PYTHON_CLIENT_PREALLOCATE false
train_command --distributed
step=(srun --nodes="$nodes" --ntasks-per-node="$gpus" --gpus-per-node="$gpus" "${TRAIN[@]}")
if ((submit)); then
  run_last sbatch --job-name=fn2en_jax --output=fn2en_jax-%j.log --nodes="$nodes" --ntasks-per-node="$gpus" \
    --gpus-per-node="$gpus" --signal=TERM@120 --requeue "${sbatch_args[@]}" --wrap="$(quote_cmd "${step[@]}")"
else
  run_last "${step[@]}"
fi
