"""`python -m fn2en_jax.export` and `from fn2en_jax import export` keep working: the command is in
fn2en_jax/commands/export.py, and this name forwards there."""

import sys

from fn2en_jax.commands import export as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
