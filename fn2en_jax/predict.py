"""`python -m fn2en_jax.predict` and `from fn2en_jax import predict` keep working: the command is in
fn2en_jax/commands/predict.py, and this name forwards there."""

import sys

from fn2en_jax.commands import predict as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
