"""TFDS builders; importing this package registers every one of them with TFDS."""

from fn2en_jax.data.builders import synth_faces  # noqa: F401
