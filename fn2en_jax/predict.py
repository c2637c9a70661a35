"""`python -m fn2en_jax.predict` and `from fn2en_jax import predict` keep working: the command is in
fn2en_jax/commands/predict.py, and this name forwards there."""

import importlib
import runpy
import sys

if __name__ == '__main__':  # run as itself, so that --help shows its own text and flags
  runpy.run_module('fn2en_jax.commands.predict', run_name='__main__', alter_sys=True)
else:
  sys.modules[__name__] = importlib.import_module('fn2en_jax.commands.predict')
