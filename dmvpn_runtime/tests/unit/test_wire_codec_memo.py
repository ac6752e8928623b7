"""The codec's memos: what they serve equals a fresh decode or encode, they are keyed by
everything the result depends on, they stay bounded, and they never hold an error.

Packets are assembled here octet by octet (``wire``) so that the same extension part can
be put behind different headers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from dmvpn_runtime import native
from dmvpn_runtime.checksum import internet_checksum
from dmvpn_runtime.nhrp import kept
from dmvpn_runtime.nhrp.wire import (
    Afn,
    Cie,
    CleartextAuthentication,
    DecodeError,
    EncodeError,
    End,
    ForwardTransitNhs,
    KeyedHashAuthentication,
    NatAddress,
    Packet,
    PacketType,
    ProtocolType,
    Reason,
    ResponderAddress,
    ReverseTransitNhs,
    codec,
    decode,
    encode,
    intern_address,
    model,
)

HUB_NBMA = IPv4Address("198.18.0.1")
HUB_PROTO = IPv4Address("100.64.0.1")
SPOKE_NBMA = IPv4Address("198.18.0.2")
SPOKE_PROTO = IPv4Address("100.64.0.2")


@pytest.fixture(autouse=True)
def fresh_memos():
    """Each test starts, and leaves the next one, with empty memos."""
    codec._DECODERS.clear()
    codec._ENCODERS.clear()
    yield
    codec._DECODERS.clear()
    codec._ENCODERS.clear()


def forget() -> None:
    codec._DECODERS.clear()
    codec._ENCODERS.clear()


def wire(
    afn: int,
    proto: int,
    nbma: bytes,
    src_proto: bytes,
    dst_proto: bytes,
    extensions: bytes,
    request_id: int = 1,
) -> bytes:
    """A Resolution Request with no CIE and this extension part (RFC 2332 §5.1, §5.2.1)."""
    mandatory = struct.pack("!BBHI", len(src_proto), len(dst_proto), 0, request_id)
    body = mandatory + nbma + src_proto + dst_proto
    extoff = 20 + len(body)
    size = extoff + len(extensions)
    header = struct.pack(
        "!HH5sBHHHBBBB", afn, proto, bytes(5), 64, size, 0, extoff, 1, 1, len(nbma), 0
    )
    packet = bytearray(header + body + extensions)
    struct.pack_into("!H", packet, 12, internet_checksum(packet))
    return bytes(packet)


def ext(ext_type: int, value: bytes = b"", compulsory: bool = True) -> bytes:
    return struct.pack("!HH", ext_type | (0x8000 if compulsory else 0), len(value)) + value


END = ext(0)


def cie(nbma: bytes, proto: bytes, holding_time: int = 7200) -> bytes:
    return struct.pack("!BBHHHBBBB", 0, 32, 0, 0, holding_time, len(nbma), 0, len(proto), 0) + (
        nbma + proto
    )


def request(request_id: int = 1, extensions: tuple = ()) -> Packet:
    return Packet(
        type=PacketType.REGISTRATION_REQUEST,
        src_nbma=SPOKE_NBMA,
        src_proto=SPOKE_PROTO,
        dst_proto=HUB_PROTO,
        request_id=request_id,
        cies=(Cie(prefix_length=255, holding_time=7200),),
        extensions=extensions
        or (
            ResponderAddress(),
            ForwardTransitNhs(),
            ReverseTransitNhs(),
            NatAddress((Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO),)),
            End(),
        ),
    )


# --- decode -------------------------------------------------------------------------


def test_a_memo_hit_equals_a_fresh_decode_and_shares_the_extensions():
    first, second = encode(request(1)), encode(request(2))
    a = decode(first)
    b = decode(second)  # a different packet with the same extension part: a hit
    assert b.extensions is a.extensions
    hit = decode(second)
    forget()
    assert hit == decode(second) == request(2)
    assert decode(first) == request(1)


def test_a_memo_hit_does_not_depend_on_where_the_extension_part_starts():
    exts = ext(4, cie(HUB_NBMA.packed, HUB_PROTO.packed)) + END
    short = wire(1, 0x0800, SPOKE_NBMA.packed, SPOKE_PROTO.packed, b"", exts)
    long = wire(1, 0x0800, SPOKE_NBMA.packed, SPOKE_PROTO.packed, HUB_PROTO.packed, exts)
    assert decode(short).extensions is decode(long).extensions
    hit = decode(long)
    forget()
    assert hit == decode(long)


def test_the_source_protocol_length_keys_the_extension_memo():
    # Keyed-hash authentication (RFC 2332 §5.3.4) starts its data with the source
    # protocol address, as long as ar$spln says: the same octets mean other values.
    auth = ext(7, struct.pack("!HH", 0, 0x0102) + bytes([10, 0, 0, 1]) + b"hash")
    exts = auth + END
    with_src = wire(1, 0x0800, SPOKE_NBMA.packed, SPOKE_PROTO.packed, HUB_PROTO.packed, exts)
    without_src = wire(1, 0x0800, SPOKE_NBMA.packed, b"", HUB_PROTO.packed, exts)
    a = decode(with_src).extensions[0]
    b = decode(without_src).extensions[0]
    assert a == KeyedHashAuthentication(0x0102, IPv4Address("10.0.0.1"), b"hash")
    assert b == KeyedHashAuthentication(0x0102, None, bytes([10, 0, 0, 1]) + b"hash")
    # and in the other order, the one decoded first does not serve the other
    forget()
    assert decode(without_src).extensions[0] == b
    assert decode(with_src).extensions[0] == a


def test_the_afn_and_protocol_type_key_the_extension_memo():
    exts = ext(4, cie(HUB_NBMA.packed, HUB_PROTO.packed)) + END
    v4 = wire(1, 0x0800, SPOKE_NBMA.packed, SPOKE_PROTO.packed, HUB_PROTO.packed, exts)
    nbma_v6 = wire(2, 0x0800, IPv6Address("2001:db8::2").packed, b"", b"", exts)
    proto_v6 = wire(1, 0x86DD, SPOKE_NBMA.packed, b"", b"", exts)
    assert decode(v4).extensions[0].cies[0].client_nbma == HUB_NBMA
    # a 4-octet client NBMA address is wrong with afn 2, a 4-octet protocol address
    # with IPv6: the entry decoded under afn 1 and IPv4 must not serve them
    for data, offset in ((nbma_v6, 20 + 8 + 16 + 4 + 8), (proto_v6, 20 + 8 + 4 + 4 + 10)):
        with pytest.raises(DecodeError) as raised:
            decode(data)
        assert raised.value.reason == Reason.ADDRESS_LENGTH
        assert raised.value.offset == offset


@pytest.mark.parametrize(
    ("exts", "reason"),
    [
        (ext(4, cie(HUB_NBMA.packed, HUB_PROTO.packed)), Reason.MISSING_END),
        (ext(3, cie(HUB_NBMA.packed, HUB_PROTO.packed) * 2) + END, Reason.INVALID_EXTENSION),
        (ext(4, cie(HUB_NBMA.packed, HUB_PROTO.packed)[:-1]) + END, Reason.CIE_OVERRUN),
        (END + ext(4), Reason.DATA_AFTER_END),
    ],
)
def test_an_error_is_raised_again_and_at_its_own_offset(exts, reason):
    short = wire(1, 0x0800, SPOKE_NBMA.packed, b"", b"", exts)
    long = wire(1, 0x0800, SPOKE_NBMA.packed, SPOKE_PROTO.packed, HUB_PROTO.packed, exts)
    offsets = []
    for data in (short, short, long, long):
        with pytest.raises(DecodeError) as raised:
            decode(data)
        assert raised.value.reason == reason
        offsets.append(raised.value.offset)
    assert offsets[0] == offsets[1]
    assert offsets[2] == offsets[3] == offsets[0] + 8  # the long packet's part starts 8 later
    assert all(not dec.extensions_seen for dec in codec._DECODERS.values())


def test_parts_that_differ_in_their_last_octet_are_told_apart():
    for last in range(1, 4):
        proto = IPv4Address(int(HUB_PROTO) + last)
        expected = Cie(
            prefix_length=32, holding_time=7200, client_nbma=HUB_NBMA, client_proto=proto
        )
        exts = ext(4, cie(HUB_NBMA.packed, proto.packed)) + END
        packet = decode(wire(1, 0x0800, SPOKE_NBMA.packed, b"", b"", exts, request_id=last))
        assert packet.extensions == (ForwardTransitNhs((expected,)), End())
        reply = Packet(
            type=PacketType.RESOLUTION_REPLY,
            src_nbma=SPOKE_NBMA,
            cies=(expected,),
            extensions=packet.extensions,
        )
        assert decode(encode(reply)) == reply


def test_the_memos_stay_bounded():
    limit = codec._MEMO_MAX
    for i in range(limit + 100):
        hub = IPv4Address(int(HUB_NBMA) + i).packed
        exts = ext(4, cie(hub, HUB_PROTO.packed)) + END
        for src in (b"", SPOKE_PROTO.packed):
            decode(wire(1, 0x0800, SPOKE_NBMA.packed, src, HUB_PROTO.packed, exts, i))
    assert len(codec._DECODERS) == 2  # one per source protocol length met
    for dec in codec._DECODERS.values():
        assert 0 < len(dec.extensions_seen) <= limit
        assert 0 < len(dec.cies_seen) <= limit


# --- encode ---------------------------------------------------------------------------


def test_encode_keeps_the_octets_on_each_value_and_serves_what_a_fresh_encode_gives():
    packet = request(7)
    data = encode(packet)
    nat = packet.extensions[3]
    assert nat._wire in data and data.endswith(nat._wire + END)
    # a new tuple of the same objects, as a reply echoing a request's extensions
    echoed = Packet(**{**_fields(packet), "extensions": (*packet.extensions[:-1], End())})
    assert encode(packet) == encode(echoed) == data
    # a changed copy has no octets yet: it is encoded from its own contents
    moved = dataclasses.replace(nat, cies=(Cie(prefix_length=32, client_proto=SPOKE_PROTO),))
    assert moved._wire is None
    changed = Packet(**{**_fields(packet), "extensions": (*packet.extensions[:3], moved, End())})
    assert decode(encode(changed)).extensions[3] == moved


def test_decoded_values_carry_the_octets_they_came_from():
    data = encode(request(7))
    packet = decode(data)
    extoff = struct.unpack_from("!H", data, 14)[0]
    assert b"".join(e._wire for e in packet.extensions) == data[extoff:]
    assert packet.cies[0]._wire in data
    assert encode(packet) == data


def test_octets_from_another_context_are_not_used():
    packet = request(7)
    data = encode(packet)
    stranger = codec._Encoder(Afn.IPV6, ProtocolType.IPV6, 16)
    for value in (*packet.extensions, *packet.cies):
        object.__setattr__(value, "_wire", b"stale")
        object.__setattr__(value, "_wire_ctx", stranger.token)
    assert encode(packet) == data


def test_extensions_with_mutable_contents_are_not_remembered():
    cies = [Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO)]
    secret = bytearray(b"secret")
    if native.is_compiled(model):  # it checks the declared types: no list gets in
        with pytest.raises(TypeError):
            ForwardTransitNhs(cies)  # type: ignore[arg-type]
        return
    forward = ForwardTransitNhs(cies)  # a list where the model says tuple
    auth = CleartextAuthentication(secret)
    packet = request(7, (forward, auth, End()))
    encode(packet)
    cies.append(Cie(prefix_length=32, client_nbma=SPOKE_NBMA, client_proto=SPOKE_PROTO))
    secret[:] = b"changed"
    echoed = decode(encode(packet))
    assert echoed.extensions[0].cies == tuple(cies)
    assert echoed.extensions[1].secret == b"changed"


def test_an_extension_part_encoded_again_is_served_as_a_fresh_encode_gives():
    packet = request(7)
    data = encode(packet)
    # the same tuple in another packet, as a hub echoing it in reply after reply
    other = Packet(**{**_fields(packet), "request_id": 8, "dst_proto": SPOKE_PROTO})
    extoff = struct.unpack_from("!H", data, 14)[0]
    for _reply in range(3):  # kept whole from the second sighting, served from the third
        assert encode(other)[extoff:] == data[extoff:]
    forget()
    assert encode(other) == encode(other)
    # in a packet of another family it is checked again: its NAT CIE's NBMA is IPv4
    v6 = Packet(**{**_fields(packet), "afn": Afn.IPV6, "src_nbma": IPv6Address("2001:db8::2")})
    with pytest.raises(EncodeError) as raised:
        encode(v6)
    assert raised.value.reason == Reason.ADDRESS_LENGTH


def test_a_list_of_extensions_is_encoded_from_what_it_holds_each_time():
    exts = [ForwardTransitNhs(), End()]
    if native.is_compiled(model):  # it checks the declared types: no list gets in
        with pytest.raises(TypeError):
            request(7, exts)
        return
    packet = request(7, exts)  # a list where the model says tuple
    encode(packet)
    exts[0] = ReverseTransitNhs()
    assert isinstance(decode(encode(packet)).extensions[0], ReverseTransitNhs)


def test_an_extension_is_remembered_only_in_its_own_context():
    # Encoded in a packet with a source protocol address, a keyed-hash extension must
    # still be refused in a packet without one (its source would not read back).
    auth = KeyedHashAuthentication(0x0102, IPv4Address("10.0.0.1"), b"hash")
    packet = request(7, (auth, End()))
    encode(packet)
    with pytest.raises(EncodeError) as raised:
        encode(Packet(**{**_fields(packet), "src_proto": None}))
    assert raised.value.reason == Reason.INVALID_EXTENSION
    with pytest.raises(EncodeError):  # and again: the error was not remembered
        encode(Packet(**{**_fields(packet), "src_proto": None}))


def test_an_encode_error_is_raised_again():
    packet = request(7, (ForwardTransitNhs(), End(), End()))
    for _attempt in range(2):
        with pytest.raises(EncodeError) as raised:
            encode(packet)
        assert raised.value.reason == Reason.MISSING_END
        assert raised.value.offset == 56  # 20 + 8 + 12 (addresses) + 12 (CIE) + 4 (Forward)


def test_memo_hits_equal_fresh_results_over_random_packets():
    pool = _random_packets(seed=2332, count=400)
    first = [encode(p) for p in pool]
    decoded = [decode(d) for d in first]
    again = [encode(p) for p in pool] + [encode(p) for p in decoded]
    redecoded = [decode(d) for d in first]
    forget()
    assert again == first + first
    assert redecoded == decoded == pool
    assert [encode(p) for p in pool] == first


def _fields(packet: Packet) -> dict:
    return {name: getattr(packet, name) for name in Packet.__dataclass_fields__}


def _random_packets(seed: int, count: int) -> list[Packet]:
    """The conformance suite's seeded packet pool (every type, family and extension)."""
    path = Path(__file__).parent.parent / "conformance" / "strategies.py"
    spec = importlib.util.spec_from_file_location("_conformance_strategies", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.random_packets(seed, count)


def test_decoded_addresses_behave_as_plain_ipaddress_objects():
    packet = decode(encode(request(7)))
    for decoded, plain in ((packet.src_nbma, SPOKE_NBMA), (packet.src_proto, SPOKE_PROTO)):
        assert decoded == plain and hash(decoded) == hash(plain)
        assert {plain: "found"}[decoded] == "found" and {decoded: 1}.get(plain) == 1
        assert repr(decoded) == repr(plain) and str(decoded) == str(plain)
        assert pickle.loads(pickle.dumps(decoded)).__class__ is IPv4Address
        assert (decoded.version, decoded.max_prefixlen) == (plain.version, plain.max_prefixlen)
        assert int(decoded) == int(plain) and int(decoded).__class__ is int
        assert f"{decoded:b}" == f"{plain:b}" and decoded < plain + 1 and plain < decoded + 1
    v6 = IPv6Address("2001:db8::1")
    six = decode(encode(Packet(PacketType.PURGE_REQUEST, Afn.IPV6, src_nbma=v6)))
    assert six.src_nbma == v6 and hash(six.src_nbma) == hash(v6)
    assert repr(six.src_nbma) == repr(v6)
    assert (six.src_nbma.version, six.src_nbma.max_prefixlen) == (6, 128)
    assert six.src_nbma.packed == v6.packed and int(six.src_nbma) == int(v6)
    # ipaddress makes related addresses through self.__class__: they must be right too.
    for decoded, plain in ((packet.src_nbma, SPOKE_NBMA), (six.src_nbma, v6)):
        for near, plain_near in ((decoded + 1, plain + 1), (decoded - 1, plain - 1)):
            assert near == plain_near and hash(near) == hash(plain_near)
            assert near.packed == plain_near.packed and str(near) == str(plain_near)


def test_intern_address_gives_the_decoders_object_for_config_addresses():
    """Configured and data-plane addresses are interned by the engine: the result must be
    the very object decode returns for the same octets, and still equal the plain one."""
    plain = IPv4Address(str(SPOKE_NBMA))
    interned = intern_address(plain)
    assert interned is decode(encode(request(8))).src_nbma
    assert interned == plain and hash(interned) == hash(plain) and repr(interned) == repr(plain)
    assert interned.packed == plain.packed and intern_address(interned) is interned
    v6 = IPv6Address("2001:db8::7")
    assert intern_address(v6) == v6 and intern_address(v6).packed == v6.packed
    assert intern_address(v6) is intern_address(IPv6Address("2001:db8::7"))


def test_the_address_memo_makes_what_it_misses_and_stays_bounded(monkeypatch):
    """The decoder reads every address with one subscript of ``ADDRESS_CACHE``: no
    octets read as no address, 4 and 16 octets as the interned class of the family."""
    cache = kept.ADDRESS_CACHE
    assert cache[b""] is None and b"" not in cache
    v4, v6 = cache[bytes([192, 0, 2, 77])], cache[IPv6Address("2001:db8::77").packed]
    assert v4 == IPv4Address("192.0.2.77") and isinstance(v4, IPv4Address)
    assert v6 == IPv6Address("2001:db8::77") and isinstance(v6, IPv6Address)
    assert (v4.version, v6.version) == (4, 6) and cache[v4.packed] is v4
    monkeypatch.setattr(kept, "_ADDRESS_CACHE_MAX", len(cache) + 2)
    for last in range(3):
        cache[bytes([192, 0, 2, 100 + last])]
    assert len(cache) == 1  # cleared when full, then the new one kept
    assert intern_address(v4) is v4  # interned ones stay themselves
    assert intern_address(IPv4Address("192.0.2.77")) == v4


def test_addresses_of_any_class_encode_as_interned_ones():
    """The encoder takes an interned address's kept octets unchecked: any other instance
    of the family encodes the same, and one of the other family is refused."""

    class Mine(IPv4Address):
        pass

    cie = dataclasses.replace(request(1).cies[0], client_nbma=Mine(str(HUB_NBMA)))
    interned = dataclasses.replace(request(1).cies[0], client_nbma=intern_address(HUB_NBMA))
    plain = dataclasses.replace(
        request(1), cies=(dataclasses.replace(cie, client_nbma=IPv4Address(str(HUB_NBMA))),)
    )
    mine = dataclasses.replace(
        plain, src_nbma=Mine(str(SPOKE_NBMA)), dst_proto=Mine(str(HUB_PROTO)), cies=(cie,)
    )
    kept = dataclasses.replace(
        plain,
        src_nbma=intern_address(SPOKE_NBMA),
        src_proto=intern_address(SPOKE_PROTO),
        dst_proto=intern_address(HUB_PROTO),
        cies=(interned,),
    )
    assert encode(mine) == encode(kept) == encode(plain)
    for field in ("src_nbma", "src_proto", "dst_proto"):
        wrong = dataclasses.replace(kept, **{field: intern_address(IPv6Address("fd00::1"))})
        with pytest.raises(EncodeError) as err:
            encode(wrong)
        assert err.value.reason is Reason.ADDRESS_LENGTH
    wrong_cie = dataclasses.replace(interned, client_proto=intern_address(IPv6Address("fd00::1")))
    with pytest.raises(EncodeError, match="CIE client protocol"):
        encode(dataclasses.replace(kept, cies=(wrong_cie,)))
