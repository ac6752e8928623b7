"""GRE framing: RFC 2784 with the key and sequence extensions of RFC 2890.

The receive fast path in :mod:`.decapsulation` handles the one header shape a DMVPN peer
sends (K bit only, or no bits without a key); everything else comes here to be parsed
or dropped with a reason.
"""

from __future__ import annotations

import struct

from ...checksum import internet_checksum
from ..base import GRE_PROTO_NHRP, Drop

FLAG_C = 0x8000  # checksum present (RFC 2784 §2.5)
FLAG_R = 0x4000  # routing present: RFC 1701 only, RFC 2784 receivers discard
FLAG_K = 0x2000  # key present (RFC 2890 §2.1)
FLAG_S = 0x1000  # sequence number present (RFC 2890 §2.2)
VERSION_MASK = 0x0007
# Strict source route, recursion control and flag bits of RFC 1701; RFC 2784 §2.3 says
# a receiver that does not do RFC 1701 discards packets with any of them set.
RESERVED_MASK = 0x0FF8

PROTO_IPV4 = 0x0800
PROTO_IPV6 = 0x86DD
PROTO_NHRP = GRE_PROTO_NHRP

BASE = struct.Struct("!HH")  # flags+version, protocol type
KEYED = struct.Struct("!HHI")  # the same plus the key


def header(proto: int, key: int | None) -> bytes:
    """The GRE header we send: no checksum, no sequence number, key if configured."""
    if key is None:
        return BASE.pack(0, proto)
    return KEYED.pack(FLAG_K, proto, key)


def parse(
    buf: bytes | bytearray | memoryview, start: int, end: int, key: int | None
) -> tuple[int, int] | Drop:
    """Parse the GRE header at ``buf[start:end]``.

    Returns ``(protocol, payload offset)`` or the reason to drop the packet. The key
    must be present exactly when we have one, and equal to it.
    """
    if end - start < BASE.size:
        return Drop.TRUNCATED
    flags, proto = BASE.unpack_from(buf, start)
    if flags & VERSION_MASK:
        return Drop.BAD_VERSION
    if flags & (FLAG_R | RESERVED_MASK):
        return Drop.BAD_FLAGS
    length = BASE.size + 4 * (bool(flags & FLAG_C) + bool(flags & FLAG_K) + bool(flags & FLAG_S))
    if end - start < length:
        return Drop.TRUNCATED
    offset = start + BASE.size
    if flags & FLAG_C:
        # RFC 2784 §2.5: the checksum covers the GRE header and the payload.
        if internet_checksum(memoryview(buf)[start:end]) != 0:
            return Drop.BAD_CHECKSUM
        offset += 4
    if flags & FLAG_K:
        (received,) = struct.unpack_from("!I", buf, offset)
        if received != key:
            return Drop.KEY_MISMATCH
        offset += 4
    elif key is not None:
        return Drop.KEY_MISMATCH
    if flags & FLAG_S:
        offset += 4  # sequence numbers are accepted and ignored (RFC 2890 §2.2 allows it)
    return proto, offset
