"""TFDS builders; importing this package registers every one of them with TFDS."""

from fn2en_jax.data.builders import synth_faces  # noqa: F401
from fn2en_jax.data.builders import ck_plus  # noqa: F401
from fn2en_jax.data.builders import ck_plus_48  # noqa: F401
from fn2en_jax.data.builders import fer2013  # noqa: F401
from fn2en_jax.data.builders import image_folder  # noqa: F401
from fn2en_jax.data.builders import oulu_casia  # noqa: F401
from fn2en_jax.data.builders import sfew  # noqa: F401
from fn2en_jax.data.builders import tfd  # noqa: F401
