"""`python -m fn2en_jax.bench` and `from fn2en_jax import bench` keep working: the command is in
fn2en_jax/commands/bench.py, and this name forwards there."""

import sys

from fn2en_jax.commands import bench as _command

if __name__ == '__main__':
  _command.run()
else:
  sys.modules[__name__] = _command
