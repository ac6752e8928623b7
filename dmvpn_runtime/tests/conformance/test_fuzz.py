"""Fuzzing the decoder: whatever the octets, the only failure is a DecodeError.

Inputs are random octets, random octets behind a plausible header (checksum fixed so
the parser gets past it), and single-octet, bit and length-field mutations of valid
packets, with and without the checksum fixed afterwards. Any other exception fails the
test. A packet that does decode must encode back to the same octets (the checksum
alias 0xffff for 0x0000 aside), and an error must point inside the input.

``make fuzz-long`` runs these with the ``long`` profile (100,000 examples each).
"""

from __future__ import annotations

import struct

from hypothesis import event, given
from hypothesis import strategies as st
from strategies import packets, random_packets, sample_packets, scaled

from dmvpn_runtime.checksum import internet_checksum
from dmvpn_runtime.nhrp.wire import DecodeError, PacketType, Reason, decode, encode

# Valid packets to mutate: every type/family/extension, 400 seeded random ones, and the
# shared vector (drawing from a fixed pool keeps a case cheap; see also the last test).
CORPUS = [encode(p) for _name, p in sample_packets("cleartext") + sample_packets("keyed")]
CORPUS += [encode(p) for p in random_packets(seed=1071, count=400)]
CORPUS.append(
    bytes.fromhex(  # the shared registration_request vector
        "00010800000000000001005cc4bc0034010304000404800200000001c63364020affff020affff01"
        "00ff000000001c200000000080040000800500008003000000090014002000000000000004000400"
        "cb0071010affff0180000000"
    )
)
VALID = st.sampled_from(CORPUS)


def fix_checksum(data: bytes) -> bytes:
    """Recompute ar$chksum over ar$pktsz octets (when the header allows it)."""
    if len(data) < 14:
        return data
    out = bytearray(data)
    size = int.from_bytes(out[10:12], "big")
    if not 14 <= size <= len(out):
        return data
    out[12:14] = b"\x00\x00"
    struct.pack_into("!H", out, 12, internet_checksum(out[:size]))
    return bytes(out)


def decode_or_error(data: bytes):
    """Decode; a DecodeError is fine, anything else propagates and fails the test."""
    try:
        packet = decode(data)
    except DecodeError as exc:
        assert isinstance(exc.reason, Reason)
        assert 0 <= exc.offset <= len(data), f"offset {exc.offset} outside {len(data)} octets"
        event(f"error: {exc.reason.value}")
        return None
    event(f"decoded: {PacketType(packet.type).json_name}")
    size = int.from_bytes(data[10:12], "big")
    again = encode(packet)
    if again != data[:size]:  # only the ones' complement alias may differ
        assert again[:12] + again[14:] == data[:12] + data[14:size]
        assert (again[12:14], data[12:14]) == (b"\x00\x00", b"\xff\xff")
    return packet


@scaled(2000)
@given(st.binary(max_size=256))
def test_random_octets(data):
    decode_or_error(data)


@st.composite
def plausible(draw: st.DrawFn) -> bytes:
    """A header that passes the first checks, random octets after it, checksum fixed."""
    body = draw(st.binary(min_size=8, max_size=200))
    size = 20 + len(body)
    extoff = draw(st.one_of(st.just(0), st.integers(0, size + 4)))
    head = struct.pack(
        "!HH5sBHHHBBBB",
        draw(st.sampled_from([1, 2, 1, 2, 3])),
        draw(st.sampled_from([0x0800, 0x86DD, 0x0800, 0x86DD, 0x0806])),
        b"\x00" * 5,
        draw(st.integers(0, 255)),
        size,
        0,
        extoff,
        1,
        draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 0, 9])),
        draw(st.sampled_from([0, 4, 16, 4, 16, 5, 0x44, 0x84])),
        draw(st.sampled_from([0, 0, 0, 1])),
    )
    lens = draw(st.sampled_from([b"\x04\x04", b"\x10\x10", b"\x00\x04", b"\x04\x00", b"\x05\x04"]))
    return fix_checksum(head + lens + body[2:])


@scaled(2000)
@given(plausible())
def test_random_body_behind_plausible_header(data):
    decode_or_error(data)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes] = VALID) -> tuple[bytes, bytes, str]:
    """(original, mutant, kind) for one mutation of a valid packet."""
    wire = draw(valid)
    kind = draw(st.sampled_from(["byte", "bit", "u16", "length", "truncate", "extend", "insert"]))
    out = bytearray(wire)
    if kind == "byte":
        i = draw(st.integers(0, len(out) - 1))
        out[i] = (wire[i] + draw(st.integers(1, 255))) % 256
    elif kind == "bit":
        i = draw(st.integers(0, len(out) * 8 - 1))
        out[i // 8] ^= 0x80 >> (i % 8)
    elif kind == "u16":
        i = draw(st.integers(0, len(out) - 2))
        struct.pack_into("!H", out, i, draw(st.integers(0, 0xFFFF)))
    elif kind == "length":  # a length field of the header, mandatory part, CIE or extension
        offsets = [10, 14, 18, 20, 21]
        pos = int.from_bytes(wire[14:16], "big")
        while pos and pos + 4 <= len(wire):  # the extension length fields
            offsets.append(pos + 2)
            pos += 4 + int.from_bytes(wire[pos + 2 : pos + 4], "big")
        i = draw(st.sampled_from(offsets))
        if i in (18, 20, 21):
            out[i] = draw(st.sampled_from([0, 3, 4, 5, 15, 16, 17, 63, 255]))
        else:
            delta = draw(st.sampled_from([-1, 1])) * draw(st.integers(1, 40))
            value = (int.from_bytes(out[i : i + 2], "big") + delta) & 0xFFFF
            struct.pack_into("!H", out, i, value)
    elif kind == "truncate":
        del out[draw(st.integers(0, len(out) - 1)) :]
    elif kind == "extend":
        out += draw(st.binary(min_size=1, max_size=16))
        struct.pack_into("!H", out, 10, len(out))
    else:
        i = draw(st.integers(20, len(out)))
        out[i:i] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()):
        return wire, fix_checksum(bytes(out)), kind + "+checksum"
    return wire, bytes(out), kind


def check_mutant(case: tuple[bytes, bytes, str]) -> None:
    original, mutant, kind = case
    event(kind)
    packet = decode_or_error(mutant)
    if kind in ("byte", "bit") and mutant[:10] + mutant[12:] != original[:10] + original[12:]:
        # One corrupted octet (outside the ar$pktsz field) never gets past the checksum.
        assert packet is None, f"{kind} mutation went unnoticed: {mutant.hex()}"


@scaled(1500)
@given(mutated())
def test_mutations_of_valid_packets(case):
    check_mutant(case)


@scaled(150, long_share=0.2)
@given(mutated(packets().map(encode)))
def test_mutations_of_generated_packets(case):
    check_mutant(case)


@scaled(100)
@given(VALID)
def test_every_truncation_is_a_decode_error(wire):
    for n in range(len(wire)):
        try:
            decode(wire[:n])
        except DecodeError as exc:
            assert exc.reason in (
                Reason.TRUNCATED,
                Reason.LENGTH_BEYOND_PACKET,
                Reason.UNSUPPORTED_VERSION,
            ), exc
        else:
            raise AssertionError(f"{n} of {len(wire)} octets decoded")
