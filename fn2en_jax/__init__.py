"""FaceNet2ExpNet in JAX/Flax."""
