"""The Internet checksum (RFC 1071), shared by the NHRP codec and the data planes."""

from __future__ import annotations


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """Ones' complement of the ones' complement sum of 16-bit words, as a wire value.

    The return value is the big-endian integer that belongs in the header field. The
    ones' complement sum of big-endian words is the data read as one big-endian integer
    modulo 0xffff (2**16 = 1 mod 0xffff), except that a sum of nonzero words never folds
    to 0 but to 0xffff; a pad octet for an odd length multiplies by 256. One big-integer
    remainder is several times faster than summing the words.
    """
    n = int.from_bytes(data, "big")
    if len(data) % 2:
        n <<= 8
    total = n % 0xFFFF
    if total == 0 and n:
        total = 0xFFFF
    return 0xFFFF - total
