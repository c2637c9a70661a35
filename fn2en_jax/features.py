"""`python -m fn2en_jax.features` and `from fn2en_jax import features` keep working: the command is in
fn2en_jax/commands/features.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'features')
