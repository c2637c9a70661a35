"""`python -m fn2en_jax.bench` and `from fn2en_jax import bench` keep working: the command is in
fn2en_jax/commands/bench.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'bench')
