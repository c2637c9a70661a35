# shellcheck shell=bash
# Sourced by the launch scripts: one-line errors, a dry run that prints each command as it would run, and the
# options every script shares. Only bash builtins here, so that --help, --dry-run and the errors work on a machine
# without gcloud, SLURM or Python.

PROG=${0##*/}
DRY_RUN=0
CONFIG=''
WORKDIR=''
ENVS=()       # NAME=VALUE, put in front of the training command with `env`
OVERRIDES=()  # --config.field=value and everything after `--`, passed to fn2en_jax.main as given

# Exit codes: 2 = a wrong or missing argument (as fn2en_jax's ConfigError), 127 = a tool is not installed.
die() {  # CAUSE REMEDY [CODE]
  printf '%s: error: %s; %s\n' "$PROG" "$1" "$2" >&2
  exit "${3:-2}"
}

need_tool() {  # TOOL REMEDY; a dry run needs no tool
  ((DRY_RUN)) && return 0
  command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH" "$2 (or add --dry-run to only print the commands)" 127
}

need_arg() {  # VALUE FLAG WHY
  [[ -n $1 ]] || die "missing $2 ($3)" "pass $2; see $PROG --help"
}

# One shell word, quoted for POSIX sh (sbatch --wrap runs sh) and bash: safe words as they are, others in single
# quotes. printf %q would write bash-only $'...' forms.
quote() {
  local word=$1 q="'\\''"
  if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/$q}"
  fi
}

quote_cmd() {  # WORD...: the command line that runs exactly these words
  local out='' word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

run() {  # COMMAND...: prints it on a dry run, runs it otherwise
  if ((DRY_RUN)); then
    printf '%s\n' "$(quote_cmd "$@")"
  else
    "$@"
  fi
}

run_last() {  # COMMAND...: as run, but replaces this shell, so that SIGTERM (preemption) reaches it directly
  if ((DRY_RUN)); then
    run "$@"
  else
    exec "$@"
  fi
}

# Parses an option every script takes; returns 1 for any other.
common_option() {
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --env=*)
      [[ ${1#*=} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "$1 is not NAME=VALUE" "write --env=NAME=VALUE"
      ENVS+=("${1#*=}") ;;
    --config.*) OVERRIDES+=("$1") ;;
    --config | --workdir | --env) die "$1 needs a value after '='" "write $1=VALUE" ;;
    *) return 1 ;;
  esac
}

unknown_option() {
  die "unknown argument $(quote "$1")" "see $PROG --help; flags for fn2en_jax.main go after --"
}

# The training command: `python -m fn2en_jax.main`, with bfloat16 activations unless an override sets the dtype.
train_command() {  # EXTRA_FLAG...: flags after --workdir (e.g. --distributed)
  local dtype=(--config.dtype=bfloat16) flag
  for flag in "${OVERRIDES[@]}"; do
    [[ $flag == --config.dtype=* ]] && dtype=()
  done
  TRAIN=()
  ((${#ENVS[@]})) && TRAIN=(env "${ENVS[@]}")
  TRAIN+=(python -m fn2en_jax.main "$@" --config="$CONFIG" --workdir="$WORKDIR" "${dtype[@]}" "${OVERRIDES[@]}")
}

default_env() {  # NAME VALUE: adds NAME=VALUE unless --env set NAME; the caller's environment value wins
  local entry
  for entry in "${ENVS[@]}"; do
    [[ $entry == "$1="* ]] && return 0
  done
  ENVS=("$1=${!1:-$2}" "${ENVS[@]}")
}

print_text() {  # copies stdin to stdout (a builtin cat, for --help)
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
  done
}
