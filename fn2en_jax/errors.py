"""Errors a person can act on: one line of cause, one line of remedy, and an exit code per kind.

Every command-line entry point runs inside `boundary` (through `run_app`, which also turns absl's flag-parsing
errors into `ConfigError`s): an expected error (a `UserError`) prints

  error: <cause, naming the field or file and what was expected>
  remedy: <what to do about it>

on stderr with no traceback and exits with its kind's code; so does a disk that fills up or turns read-only
mid-run (an OSError ENOSPC, EDQUOT or EROFS, reported as a WorkdirError). Anything else is a bug, shown with its
traceback and exit code 1. `--verbose` on the command line or FN2EN_VERBOSE=1 in the environment shows the traceback of
expected errors too.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

from absl import app, flags

# Exit codes, one per kind of failure (the README's "When things go wrong" lists them).
OK = 0
BUG = 1
CONFIG = 2         # a config field or command-line flag is wrong
INPUT = 3          # an input file or dataset is missing or unreadable
WORKDIR = 4        # the workdir cannot be written, is full, or holds a run of another config
DIVERGED = 5       # the loss became NaN or infinite
PREEMPTED = 6      # SIGTERM: a checkpoint was saved; run the same command again to resume
# A process of a multi-host run whose peer died is ended by JAX's own coordination service (SIGABRT, shell exit
# status 134, "another task died"), from C++, where no Python handler runs: it has no code of its own here.


class UserError(Exception):
  """An error the user can fix: `cause` says what is wrong, `remedy` what to do."""
  exit_code = BUG

  def __init__(self, cause: str, remedy: str):
    super().__init__(cause)
    self.cause = cause
    self.remedy = remedy

  def __str__(self) -> str:
    return f'{self.cause}\n{self.remedy}'


class ConfigError(UserError, ValueError):
  exit_code = CONFIG


class InputError(UserError, ValueError):
  exit_code = INPUT


class MissingInput(InputError, FileNotFoundError):
  """An input file or folder that is not there (exit code INPUT, like any InputError)."""


class WorkdirError(UserError, OSError):
  exit_code = WORKDIR


class Diverged(UserError, FloatingPointError):
  exit_code = DIVERGED


class Preempted(UserError):
  exit_code = PREEMPTED


def verbose(argv: list[str] | None = None) -> bool:
  argv = sys.argv if argv is None else argv
  flag = any(a == '--verbose' or a.split('=', 1)[0] == '--verbose' and a.split('=', 1)[1].lower() in ('1', 'true')
             for a in argv)
  return flag or os.environ.get('FN2EN_VERBOSE', '') not in ('', '0')


def report(error: UserError, *, show_traceback: bool = False) -> None:
  if show_traceback:
    traceback.print_exception(error)
  print(f'error: {error.cause}\nremedy: {error.remedy}', file=sys.stderr, flush=True)


def boundary(fn: Callable[[], object]) -> NoReturn:
  """Runs `fn` (a command's whole body) and exits with the code of what happened."""
  try:
    fn()
  except UserError as e:
    report(e, show_traceback=verbose())
    sys.exit(e.exit_code)
  except SystemExit:
    raise
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    sys.exit(130)
  except BaseException as e:  # pylint: disable=broad-except
    error = disk_error(e)
    if error is None:
      _report_bug()
    report(error, show_traceback=verbose())
    sys.exit(error.exit_code)
  sys.exit(OK)


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def disk_error(error: BaseException) -> WorkdirError | None:
  """A WorkdirError if `error` (or an exception it was raised from) says the disk filled up or went read-only
  while a file was written, else None.

  Python raises OSError(ENOSPC); Orbax's TensorStore writes raise ValueError('RESOURCE_EXHAUSTED: Error writing
  local file "...": ... No space left on device [os_error_code='28']'). Either way it is the user's to fix, not a
  bug, and checkpoints are written to a temporary folder renamed when complete, so the newest complete one is
  intact.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    filename, reason = None, None
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
      filename, reason = error.filename, error.strerror or os.strerror(error.errno)
    else:
      code = re.search(r"os_error_code='?(\d+)", str(error))
      if code and int(code.group(1)) in _DISK_ERRNOS:
        path = re.search(r'"(/[^"]+)"', str(error))
        filename, reason = path and path.group(1), os.strerror(int(code.group(1)))
    if reason:
      return WorkdirError(f'{filename or "writing a file"}: {reason}',
                          'free some space (or remount the disk read-write), then run the same command again: it '
                          'resumes from the newest complete checkpoint')
    error = error.__cause__ or error.__context__
  return None


def _report_bug() -> NoReturn:
  traceback.print_exc()
  print('error: this is a bug in fn2en_jax, not in your input; please report it with the traceback above',
        file=sys.stderr, flush=True)
  sys.exit(BUG)


# --- absl entry points ------------------------------------------------------------------------------------------

HELP = 'run the command with --helpfull to list every flag'


def config_fields(config: Any, prefix: str = '') -> list[str]:
  """Every field of a ConfigDict as a dotted path ('stage_a.learning_rate'), sub-dicts and their leaves alike."""
  names = []
  for key, value in config.items():
    name = f'{prefix}{key}'
    names.append(name)
    if hasattr(value, 'items') and hasattr(value, 'get_type'):  # a nested ConfigDict
      names += config_fields(value, f'{name}.')
  return names


def _initials(name: str) -> str:
  return ''.join(word[0] for word in name.split('_') if word)


def close_fields(path: str, names: Sequence[str], n: int = 3) -> list[str]:
  """The fields a misspelt `path` most likely meant, best first.

  Fields beside it come first: those it abbreviates (lr -> learning_rate, by initials or as a prefix; difflib scores
  'lr' far from 'learning_rate'), else those difflib finds close to its last part; only then difflib's close
  matches over every dotted name.
  """
  parent, _, leaf = path.rpartition('.')
  siblings = {name.rpartition('.')[2]: name for name in names if name.rpartition('.')[0] == parent}
  abbreviated = [name for key, name in siblings.items() if leaf and (_initials(key) == leaf or key.startswith(leaf))]
  near = abbreviated or [siblings[key] for key in difflib.get_close_matches(leaf, list(siblings), n=n)]
  return (near or difflib.get_close_matches(path, names, n=n))[:n]


def _config_overrides(argv: Sequence[str]) -> dict[str, list[str]]:
  """Config flag name -> the dotted paths its overrides name: --config.stage_a.lr=0.1 -> {'config': ['stage_a.lr']}."""
  out = {}
  for arg in argv:
    if arg == '--':
      break
    if arg.startswith('--') and '.' in arg.split('=', 1)[0]:
      flag, _, path = arg[2:].split('=', 1)[0].partition('.')
      if flag in flags.FLAGS:
        out.setdefault(flag, []).append(path)
  return out


def _flag_argument(flag: str, argv: Sequence[str]) -> str | None:
  """The value given to --flag in argv (as --flag=VALUE or --flag VALUE), the last one if several."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{flag}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{flag}' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _missing_config_file(flag: str, argv: Sequence[str]) -> ConfigError | None:
  value = flags.FLAGS[flag].value if flag in flags.FLAGS else None
  path = _flag_argument(flag, argv)
  if type(value).__name__ == '_ErrorConfig' or (path and not os.path.isfile(path.split(':', 1)[0])):
    return ConfigError(f'--{flag}={path}: config file not found',
                       f'pass the path of a config file (configs/*.py), relative to {os.getcwd()} or absolute')
  return None


def _first_missing(config: Any, path: str) -> str | None:
  """The shortest prefix of the dotted `path` that names no field of `config` (stagex.lr -> stagex); None if none."""
  node, keys = config, path.split('.')
  for i, key in enumerate(keys):
    if not hasattr(node, 'items') or key not in node:
      return '.'.join(keys[:i + 1])
    node = node[key]
  return None


def unknown_field_error(argv: Sequence[str]) -> ConfigError | None:
  """The override in `argv` that names no field of its config file, as a ConfigError; None if each one does.

  config_flags raises before it sets the flag's value, so the config file is loaded again here.
  """
  for flag, paths in _config_overrides(argv).items():
    missing = _missing_config_file(flag, argv)
    if missing is not None:
      return missing
    try:
      config = flags.FLAGS[flag].parser.parse(_flag_argument(flag, argv))
    except Exception:  # pylint: disable=broad-except  (the original error is re-raised instead)
      continue
    if not hasattr(config, 'items'):
      continue
    names = config_fields(config)
    for path in paths:
      missing = _first_missing(config, path)
      if missing is not None:
        close = close_fields(missing, names)
        remedy = f'did you mean {" or ".join(close)}? ' if close else ''
        return ConfigError(f'{flag} field {path} does not exist',
                           f'{remedy}fn2en_jax/defaults.py lists every field, with what it does')
  return None


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing, with a wrong flag, flag value, config file or config field raised as a ConfigError.

  ml_collections' config_flags reports an override of a missing field as AttributeError("'lr'"), naming neither
  the flag nor the path; the override is found again here by resolving each one against the config file.
  """
  argv = list(argv)
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as e:
    required = re.search(r'Flag --(\w+) must have a value other than None', str(e))
    if required:
      raise ConfigError(f'--{required.group(1)} is required', f'pass --{required.group(1)}=...; {HELP}') from e
    cause = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ConfigError(cause, f'fix the flag; {HELP}') from e
  except (AttributeError, KeyError, OSError) as e:
    error = unknown_field_error(argv)
    if error is None:
      raise
    raise error from e
  for name in flags.FLAGS:
    error = _missing_config_file(name, argv) if type(flags.FLAGS[name].value).__name__ == '_ErrorConfig' else None
    if error is not None:
      raise error
  return remaining


def run_app(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> NoReturn:
  """`absl.app.run(main)` inside `boundary`, for every command-line entry point.

  Flag errors (an unknown flag or config field, a value of the wrong type, a missing required flag) and
  `app.UsageError`s raised by `main` become ConfigErrors: one line of cause, one of remedy, exit code 2.
  """
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False, 'On an expected error, show its traceback too (or set FN2EN_VERBOSE=1).')

  def checked_main(args: list[str]) -> object:
    try:
      return main(args)
    except app.UsageError as e:
      raise ConfigError(str(e), HELP) from e

  boundary(lambda: app.run(checked_main, argv=None if argv is None else list(argv), flags_parser=parse_flags))
