"""`python -m fn2en_jax.evaluate` and `from fn2en_jax import evaluate` keep working: the command is in
fn2en_jax/commands/evaluate.py, and this name forwards there."""

import sys

from fn2en_jax.commands import evaluate as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
