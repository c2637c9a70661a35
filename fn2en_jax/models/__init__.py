"""Flax Linen models: the teacher (a face net) and the student (ExpNet)."""
