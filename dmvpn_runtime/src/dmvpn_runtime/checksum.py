"""The Internet checksum (RFC 1071), shared by the NHRP codec and the data planes."""

from __future__ import annotations

import struct
import sys

_NATIVE_WORD = struct.Struct("=H")


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """Ones' complement of the ones' complement sum of 16-bit words, as a wire value.

    Summing native-order words and storing the result in native order gives the
    right bytes on either endianness (RFC 1071 §2(B)); the return value is the
    big-endian integer that belongs in the header field.
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    folded = ~total & 0xFFFF
    if sys.byteorder == "little":
        return int.from_bytes(_NATIVE_WORD.pack(folded), "big")
    return folded
