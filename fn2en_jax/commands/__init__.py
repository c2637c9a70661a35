"""The commands that read or measure a run: each a module with a `main` for absl (its flags defined where it runs
as `__main__`), above the library (nothing in the library imports a command).

  evaluate    a finished workdir's report: every stage re-evaluated, confusion matrices, mistakes, curves
  predict     the trained expression net on photos and videos, with face detection
  export      the trained net as a TensorFlow SavedModel or TFLite file
  features    a face net's activations at a tap, for your own analysis
  visualize   what the student's and the teacher's units respond to
  kfold       the pooled report of k-fold runs of one config with other seeds
  bench       images per second of every stage, against the machine's matmul ceiling

Each is run as `python -m fn2en_jax.<name>` (a module of that name at the package root forwards here, so that the
command lines and imports written before the commands had a folder of their own keep working); training is
`python -m fn2en_jax.main`.
"""

import importlib
import runpy
import sys


def forward(module_name: str, command: str) -> None:
  """What the module of a command's name at the package root does: run as `python -m fn2en_jax.<command>`, it runs
  the command as `__main__` (so that --help shows the command's own text and flags); imported, it puts the command
  module in its own place, so that `from fn2en_jax import <command>` gets that very module."""
  target = f'{__name__}.{command}'
  if module_name == '__main__':
    runpy.run_module(target, run_name='__main__', alter_sys=True)
  else:
    sys.modules[module_name] = importlib.import_module(target)
