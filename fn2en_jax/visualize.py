"""`python -m fn2en_jax.visualize` and `from fn2en_jax import visualize` keep working: the command is in
fn2en_jax/commands/visualize.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'visualize')
