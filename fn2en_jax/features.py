"""`python -m fn2en_jax.features` and `from fn2en_jax import features` keep working: the command is in
fn2en_jax/commands/features.py, and this name forwards there."""

import sys

from fn2en_jax.commands import features as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
