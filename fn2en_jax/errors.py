"""Errors a person can act on: one line of cause, one line of remedy, and an exit code per kind.

Every command-line entry point runs inside `boundary`: an expected error (a `UserError`) prints

  error: <cause, naming the field or file and what was expected>
  remedy: <what to do about it>

on stderr with no traceback and exits with its kind's code; anything else is a bug, shown with its traceback and
exit code 1. `--verbose` on the command line or FN2EN_VERBOSE=1 in the environment shows the traceback of
expected errors too.
"""

from __future__ import annotations

import os
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
PEER_LOST = 7      # another process of a multi-host run died or stopped answering


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


class WorkdirError(UserError, OSError):
  exit_code = WORKDIR


class Diverged(UserError, FloatingPointError):
  exit_code = DIVERGED


class Preempted(UserError):
  exit_code = PREEMPTED


class PeerLost(UserError):
  exit_code = PEER_LOST


def verbose(argv: list[str] | None = None) -> bool:
  argv = sys.argv if argv is None else argv
  return '--verbose' in argv or os.environ.get('FN2EN_VERBOSE', '') not in ('', '0')


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
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    print('error: this is a bug in fn2en_jax, not in your input; please report it with the traceback above',
          file=sys.stderr, flush=True)
    sys.exit(BUG)
  sys.exit(OK)
