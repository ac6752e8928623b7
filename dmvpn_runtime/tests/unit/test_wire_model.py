"""The model's values: dataclass semantics (defaults, factories, keywords, equality,
hashing, ``dataclasses.replace``), and octets kept by the codec that never outlive the
value they were made for."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from ipaddress import ip_address

import pytest

from dmvpn_runtime.nhrp.engine.actions import (
    AddMapping,
    Event,
    EventKind,
    MappingType,
    RemoveMapping,
    SendPacket,
)
from dmvpn_runtime.nhrp.wire import (
    Cie,
    End,
    ForwardTransitNhs,
    Packet,
    PacketType,
    decode,
    encode,
    with_end,
)


def test_defaults_keywords_and_positional_arguments():
    cie = Cie(0, 32, mtu=1400, client_proto=ip_address("10.0.0.1"))
    assert (cie.prefix_length, cie.mtu, cie.holding_time, cie.client_nbma) == (32, 1400, 0, None)
    assert cie == Cie(prefix_length=32, mtu=1400, client_proto=ip_address("10.0.0.1"))
    assert hash(cie) == hash(dataclasses.replace(cie))
    assert End().compulsory is True and End().type == 0 and ForwardTransitNhs().type == 4
    with pytest.raises(TypeError):
        Cie(0, 32, bogus=1)
    with pytest.raises(TypeError):
        SendPacket()  # required fields stay required
    with pytest.raises(TypeError):
        Cie(_wire=b"x")  # the codec's octets are not the caller's to give


def test_default_factory_gives_each_instance_its_own_value():
    first, second = Event(EventKind.DROP), Event(EventKind.DROP)
    first.fields["reason"] = "x"
    assert second.fields == {}


def test_built_and_decoded_values_are_equal_hash_alike_and_pickle():
    cie = Cie(0, 32, holding_time=7200, client_proto=ip_address("10.0.0.1"))
    built = Packet(PacketType.RESOLUTION_REQUEST, request_id=7, cies=(cie,))
    decoded = decode(encode(built))
    for pkt in (built, decoded):
        assert pkt.__class__ is Packet and pkt.cies[0].__class__ is Cie
        assert pkt == built and hash(pkt) == hash(built) and repr(pkt) == repr(built)
        assert pickle.loads(pickle.dumps(pkt)) == pkt == copy.deepcopy(pkt)
        with pytest.raises(AttributeError):
            pkt.bogus = 1  # type: ignore[attr-defined]  # slots: no stray attributes
    add = AddMapping(ip_address("10.0.0.1"), ip_address("192.0.2.1"), MappingType.CACHED)
    for action in (add, RemoveMapping(add.proto, add.nbma, add.type), Event(EventKind.DROP)):
        assert pickle.loads(pickle.dumps(action)) == action == copy.deepcopy(action)
    assert add != RemoveMapping(add.proto, add.nbma, add.type)  # same fields, other action


def test_replace_gives_a_value_that_encodes_afresh():
    """A decoded CIE or extension keeps the octets it came from, so that a hub forwarding
    it does not encode it again; ``dataclasses.replace`` must not carry them over, or the
    changed value would go out with the old octets."""
    cie = Cie(0, 32, mtu=1500, holding_time=7200, client_proto=ip_address("10.0.0.1"))
    forward = ForwardTransitNhs((cie,))
    request = Packet(
        PacketType.RESOLUTION_REQUEST,
        src_proto=ip_address("10.0.0.2"),
        dst_proto=ip_address("10.0.0.3"),
        request_id=9,
        cies=(cie,),
        extensions=with_end([forward]),
    )
    decoded = decode(encode(request))
    assert decoded.cies[0]._wire is not None and decoded.extensions[0]._wire is not None
    smaller = dataclasses.replace(decoded.cies[0], mtu=1400)
    assert smaller._wire is None
    moved = dataclasses.replace(decoded.extensions[0], cies=(smaller,))
    again = decode(encode(dataclasses.replace(decoded, cies=(smaller,), extensions=(moved, End()))))
    assert again.cies[0].mtu == 1400 and again.extensions[0].cies[0].mtu == 1400
    assert decode(encode(decoded)) == request  # the original still encodes as it was
