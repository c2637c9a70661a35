"""`python -m fn2en_jax.export` and `from fn2en_jax import export` keep working: the command is in
fn2en_jax/commands/export.py, and this name forwards there."""

from fn2en_jax.commands import forward

forward(__name__, 'export')
