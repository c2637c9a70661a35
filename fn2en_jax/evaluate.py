"""`python -m fn2en_jax.evaluate` and `from fn2en_jax import evaluate` keep working: the command is in
fn2en_jax/commands/evaluate.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'evaluate')
