"""Errors a person can act on: one line of cause, one line of remedy, and an exit code per kind.

Every command-line entry point runs inside `boundary` (through `cli.run_app`, which also turns absl's
flag-parsing errors into `ConfigError`s): an expected error (a `UserError`) prints

  error: <cause, naming the field or file and what was expected>
  remedy: <what to do about it>

on stderr with no traceback and exits with its kind's code; so does a disk that fills up or turns read-only
mid-run (an OSError ENOSPC, EDQUOT or EROFS, reported as a WorkdirError). Anything else is a bug, shown with its
traceback and exit code 1. `--verbose` on the command line or FN2EN_VERBOSE=1 in the environment shows the traceback of
expected errors too.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from typing import Callable, NoReturn


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
