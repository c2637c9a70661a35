#!/usr/bin/env bash
# Creates a Cloud TPU VM slice, trains one config on every worker of it (each runs the same command; JAX joins
# them), shows their logs, deletes it, and after a preemption re-creates it and resumes from the newest checkpoint.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"
repo=$(cd "$here/.." && pwd)

tpu=''
zone=''
project=''
accelerator=v4-32
version=tpu-ubuntu2204-base
spot=0
quiet=0
lines=100
follow=0
worker=all
mount_root=/mnt/gcs               # gs://BUCKET/PATH is $mount_root/BUCKET/PATH on every worker (Cloud Storage FUSE)
rename_dir_limit=100000           # gcsfuse renames directories (Orbax finalises a checkpoint so) up to this size
# On every worker, in its home directory:
code_dir='~/fn2en_jax'            # this checkout's HEAD, unpacked
venv='~/fn2en_venv'               # Python 3.12 with fn2en_jax and jax[tpu]
log='~/fn2en_jax.log'             # the run's output, and its exit code last
pid='~/fn2en_jax.pid'             # the run's process (group) id
archive=${TMPDIR:-/tmp}/fn2en_jax.tar.gz

usage() {
  print_text <<EOF
usage: $PROG COMMAND --tpu=NAME --zone=ZONE [--project=ID] [options] [--dry-run]

Commands (each runs gcloud compute tpus tpu-vm ...):
  create   create the slice (plain create, not a queued resource):
             --accelerator-type=TYPE  default $accelerator (e.g. v5litepod-16 for a v5e-16)
             --version=RUNTIME        default $version (v2-alpha-tpuv5-lite for v5e)
             --spot                   a Spot slice: cheaper, can be preempted at any time
  run      copy this checkout's committed HEAD (git archive) to every worker, install it with jax[tpu] into a
           Python 3.12 venv there ($venv, with uv), and start on every worker, in the background:
             python -m fn2en_jax.main --distributed --config=FILE --workdir=$mount_root/B/P --config.dtype=bfloat16 ...
           writing $log on each worker (it ends with the exit code). Refuses while a run is active there.
           Before it starts, every bucket named by --workdir or by a --FLAG=gs://... value is mounted with Cloud
           Storage FUSE on every worker (gcsfuse --implicit-dirs BUCKET $mount_root/BUCKET; installed from Google's
           apt repository where missing; a bucket already mounted there is left as it is), and each gs://B/P
           value is passed to the run as the path $mount_root/B/P, which is the same on every worker.
             --config=FILE            experiment config (configs/*.py), a path inside the checkout
             --workdir=gs://B/P       on GCS: every worker writes the checkpoints there. Running again with the same
                                      workdir resumes from its newest checkpoint
             --env=NAME=VALUE         environment for the run (repeatable)
             --config.field=...       config overrides, passed as given except gs:// values (as above: give
                                      config.data_dir and config.teacher.init so, gs://B/P, unless the config file
                                      has them on every worker); --config.dtype=bfloat16 unless you set config.dtype
             --mount-root=DIR         where the buckets are mounted, default $mount_root
             -- FLAG ...              any other flags of fn2en_jax.main, passed as given except gs:// values
  logs     print the last lines of $log of every worker, each line prefixed with the worker's host name:
             --lines=N                default $lines
             --follow                 keep printing new lines (Ctrl-C stops)
             --worker=W               only these workers (0, 1-3, 0,2; default all)
  delete   delete the slice (asks first unless --quiet)
  resume   after a preemption: delete, create and run again with the same options and the same --workdir, which
           resumes from the newest checkpoint. Takes the options of create, run and delete.

  --dry-run           print every command, one a line, exactly as it would run; run nothing, need no tool

Exit codes: gcloud's; 2 for a wrong or missing argument, 127 when gcloud (or git, for run) is not on PATH.
EOF
}

command=''
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    create | run | logs | delete | resume)
      [[ -z $command ]] || die "two commands, $command and $1" "pass one; see $PROG --help"
      command=$1 ;;
    --tpu=*) tpu=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --accelerator-type=*) accelerator=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --spot) spot=1 ;;
    --quiet) quiet=1 ;;
    --lines=*) lines=${1#*=} ;;
    --follow) follow=1 ;;
    --worker=*) worker=${1#*=} ;;
    --mount-root=*) mount_root=${1#*=} ;;
    -*) common_option "$1" || unknown_option "$1" ;;
    *) die "unknown command $(quote "$1")" "pass one of create, run, logs, delete, resume; see $PROG --help" ;;
  esac
  shift
done
[[ -n $command ]] || die 'missing COMMAND' "pass one of create, run, logs, delete, resume; see $PROG --help"

need_arg "$tpu" --tpu=NAME 'the TPU VM slice'
need_arg "$zone" --zone=ZONE 'where the slice is, e.g. us-central2-b for v4'
if [[ $command == run || $command == resume ]]; then
  need_arg "$CONFIG" --config=FILE 'the experiment config, e.g. configs/sfew.py'
  need_arg "$WORKDIR" --workdir=gs://BUCKET/PATH 'where every worker writes the checkpoints'
  [[ $WORKDIR == gs://* ]] || die "--workdir=$WORKDIR is not on GCS, and every worker writes the checkpoints" \
    'pass --workdir=gs://BUCKET/PATH (a bucket in the slice'\''s region)'
  [[ $mount_root == /?* ]] || die "--mount-root=$mount_root is not an absolute path" 'pass --mount-root=/DIR'
fi
[[ $lines =~ ^[0-9]+$ ]] || die "--lines=$lines is not a number" 'pass --lines=N'

# gs://BUCKET/PATH -> $mount_root/BUCKET/PATH, for --workdir and every --FLAG=gs://... override: fn2en_jax writes
# and reads them with local file APIs, through the Cloud Storage FUSE mount of each bucket (BUCKETS, in order).
BUCKETS=()
local_path() {  # FLAG=gs://BUCKET[/PATH]: sets LOCAL to FLAG=$mount_root/BUCKET[/PATH], adds BUCKET to BUCKETS
  local flag=${1%%=*} url=${1#*=} bucket known
  bucket=${url#gs://}
  bucket=${bucket%%/*}
  [[ $bucket =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "$1 does not name a bucket" \
    "write $flag=gs://BUCKET/PATH, BUCKET in lowercase letters, digits, '-', '_' and '.'"
  for known in "${BUCKETS[@]}"; do
    [[ $known == "$bucket" ]] && bucket=''
  done
  [[ -n $bucket ]] && BUCKETS+=("$bucket")
  LOCAL="$flag=$mount_root/${url#gs://}"
}

translate_gcs() {
  local i
  local_path "--workdir=$WORKDIR"
  WORKDIR=${LOCAL#*=}
  for i in "${!OVERRIDES[@]}"; do
    if [[ ${OVERRIDES[i]} == --?*=gs://* ]]; then
      local_path "${OVERRIDES[i]}"
      OVERRIDES[i]=$LOCAL
    fi
  done
}
[[ $command == run || $command == resume ]] && translate_gcs

need_tool gcloud 'install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install) and run gcloud init'
[[ $command == run || $command == resume ]] && need_tool git 'install git: run ships this checkout with git archive'

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[[ -n $project ]] && where+=(--project="$project")

on_every_worker() {  # REMOTE_COMMAND [WORKERS]
  run "${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --worker="${2:-all}" --command="$1"
}

create() {
  local flags=(--accelerator-type="$accelerator" --version="$version")
  ((spot)) && flags+=(--spot)
  run "${gcloud_tpu[@]}" create "$tpu" "${where[@]}" "${flags[@]}"
}

delete() {
  local flags=()
  ((quiet)) && flags+=(--quiet)
  run "${gcloud_tpu[@]}" delete "$tpu" "${where[@]}" "${flags[@]}"
}

# Mounts every bucket on every worker, where it is not mounted yet. gcsfuse runs as the ssh user (the run's user)
# and returns once the mount is up; it stays mounted after the ssh session ends, until the worker stops.
mount_buckets() {
  local bucket dir apt=https://packages.cloud.google.com/apt key=/usr/share/keyrings/cloud.google.asc
  local script="set -e; if ! command -v gcsfuse >/dev/null 2>&1; then "
  script+="echo \"deb [signed-by=$key] $apt gcsfuse-\$(lsb_release -c -s) main\" "
  script+="| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; "
  script+="curl -fsSL $apt/doc/apt-key.gpg | sudo tee $key >/dev/null; "
  script+="sudo apt-get update -qq; sudo apt-get install -y -qq gcsfuse; fi"
  for bucket in "${BUCKETS[@]}"; do
    dir=$(quote "$mount_root/$bucket")
    script+="; if ! mountpoint -q $dir; then sudo mkdir -p $dir; sudo chown \"\$(id -u):\$(id -g)\" $dir; \
gcsfuse --implicit-dirs --rename-dir-limit=$rename_dir_limit $(quote "$bucket") $dir; fi"
  done
  on_every_worker "$script"
}

start() {
  local bucket mounted=''
  for bucket in "${BUCKETS[@]}"; do  # the run starts only where every bucket is mounted
    mounted+="mountpoint -q $(quote "$mount_root/$bucket") || \
{ echo \"$(quote "$mount_root/$bucket") is not mounted on \$(hostname)\" >&2; exit 1; }; "
  done
  train_command --distributed
  run git -C "$repo" archive --format=tar.gz --output="$archive" HEAD
  run "${gcloud_tpu[@]}" scp "$archive" "$tpu:fn2en_jax.tar.gz" "${where[@]}" --worker=all
  on_every_worker "set -e; \
if [ -f $pid ] && kill -0 -- \"-\$(cat $pid)\" 2>/dev/null; then \
echo \"fn2en_jax runs on \$(hostname) (process group \$(cat $pid)); stop it: kill -TERM -- -\$(cat $pid)\" >&2; exit 1; fi; \
rm -rf $code_dir; mkdir -p $code_dir; tar -xzf ~/fn2en_jax.tar.gz -C $code_dir; \
[ -x ~/.local/bin/uv ] || curl -LsSf https://astral.sh/uv/install.sh | sh; \
~/.local/bin/uv venv --quiet --allow-existing --python=3.12 $venv; \
~/.local/bin/uv pip install --quiet --python $venv/bin/python -e $code_dir 'jax[tpu]'"
  mount_buckets
  # The run outlives this ssh session: it ignores SIGHUP, and job control (set -m) gives it a process group of its
  # own, so that `kill -TERM -- -PGID` stops it the way a preemption does (a checkpoint, exit code 6). The shell
  # around it traps SIGTERM (python gets the default disposition back) to outlive it and log its exit code.
  on_every_worker "${mounted}cd $code_dir && . $venv/bin/activate || exit 1; trap '' HUP; set -m; \
{ trap : TERM; $(quote_cmd "${TRAIN[@]}"); echo \"fn2en_jax exited with code \$?\"; } > $log 2>&1 < /dev/null & echo \$! > $pid"
}

logs() {
  local tail_flags=(-n "$lines")
  ((follow)) && tail_flags+=(-F)
  on_every_worker "tail ${tail_flags[*]} $log | sed -u \"s/^/[\$(hostname)] /\"" "$worker"
}

case $command in
  create) create ;;
  run) start ;;
  logs) logs ;;
  delete) delete ;;
  resume) delete; create; start ;;
esac
