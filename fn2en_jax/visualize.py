"""`python -m fn2en_jax.visualize` and `from fn2en_jax import visualize` keep working: the command is in
fn2en_jax/commands/visualize.py, and this name forwards there."""

import sys

from fn2en_jax.commands import visualize as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
