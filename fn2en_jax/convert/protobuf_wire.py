"""Just enough of the protobuf wire format to read a .caffemodel without Caffe or its generated classes.

A message is a sequence of (tag, value) records, tag = field_number << 3 | wire_type. Length-delimited values are
returned as memoryviews into the file's bytes, so a 500 MB caffemodel is walked without copying its blobs.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    if pos >= len(buf):
      raise ValueError('protobuf: truncated varint')
    byte = buf[pos]
    value |= (byte & 0x7F) << shift
    pos += 1
    if not byte & 0x80:
      return value, pos
    shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
  """(field number, wire type, value) of every record of one message."""
  pos = 0
  while pos < len(buf):
    tag, pos = _varint(buf, pos)
    number, wire_type = tag >> 3, tag & 7
    if wire_type == VARINT:
      value, pos = _varint(buf, pos)
    elif wire_type == LENGTH_DELIMITED:
      size, pos = _varint(buf, pos)
      if pos + size > len(buf):
        raise ValueError(f'protobuf: field {number} runs past the end of its message')
      value, pos = buf[pos:pos + size], pos + size
    elif wire_type in (FIXED32, FIXED64):
      size = 4 if wire_type == FIXED32 else 8
      value, pos = buf[pos:pos + size], pos + size
    else:
      raise ValueError(f'protobuf: unsupported wire type {wire_type} (field {number}); not a protobuf message?')
    yield number, wire_type, value


def floats(records: list[tuple[int, int | memoryview]]) -> np.ndarray:
  """A `repeated float` field from its records: packed runs and single values alike."""
  parts = [np.frombuffer(value, '<f4') for _, value in records]
  return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def group(buf: memoryview) -> dict[int, list[tuple[int, int | memoryview]]]:
  """A message's records by field number: {number: [(wire type, value), ...]}."""
  out: dict[int, list] = {}
  for number, wire_type, value in fields(buf):
    out.setdefault(number, []).append((wire_type, value))
  return out
