"""The command line of every entry point: absl's flag parsing and `app.run` inside `errors.boundary`.

A wrong flag, flag value, config file or config field becomes a `ConfigError` (one line of cause, one of remedy,
exit code 2), with the fields a misspelt override most likely meant; ml_collections' own errors name neither the
flag nor the field. Only public absl and ml_collections API is used.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, Callable, NoReturn, Sequence

from absl import app, flags
from ml_collections import config_flags

from fn2en_jax.errors import ConfigError, boundary

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
  """A ConfigError if `flag` is a config-file flag whose file, as given in `argv` or as parsed, does not exist.

  ml_collections defers a missing file's IOError until the config is first read; the path itself is checked here,
  through config_flags' public API (get_config_filename), so that it is named before anything runs.
  """
  path = _flag_argument(flag, argv)
  if path is None:
    path = _config_filename(flag)
  if isinstance(path, str) and path and not os.path.isfile(path.split(':', 1)[0]):
    return ConfigError(f'--{flag}={path}: config file not found',
                       f'pass the path of a config file (configs/*.py), relative to {os.getcwd()} or absolute')
  return None


def _config_filename(flag: str) -> str | None:
  """The file a config-file flag was given, or None for any other flag (or one not parsed yet)."""
  if flag not in flags.FLAGS:
    return None
  try:
    return config_flags.get_config_filename(flags.FLAGS[flag])
  except (TypeError, flags.Error):  # TypeError: not a config flag; flags.Error: not parsed yet
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
    error = _missing_config_file(name, argv) if _config_filename(name) is not None else None
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
