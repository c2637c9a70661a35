"""`python -m fn2en_jax.predict` and `from fn2en_jax import predict` keep working: the command is in
fn2en_jax/commands/predict.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'predict')
