"""The commands that read or measure a run: each a module with a `main` for absl and a `run()` that parses its
flags and runs it, above the library (nothing in the library imports a command).

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
