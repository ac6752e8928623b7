"""The model's fast constructors keep dataclass semantics: defaults, factories,
keywords, frozen instances, equality and hashing, ``dataclasses.replace``."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from ipaddress import ip_address

import pytest

from dmvpn_runtime.nhrp.engine.actions import Event, EventKind, SendPacket
from dmvpn_runtime.nhrp.wire import Cie, End, Packet, PacketType, decode, encode


def test_defaults_keywords_and_positional_arguments():
    cie = Cie(0, 32, mtu=1400, client_proto=ip_address("10.0.0.1"))
    assert (cie.prefix_length, cie.mtu, cie.holding_time, cie.client_nbma) == (32, 1400, 0, None)
    assert cie == Cie(prefix_length=32, mtu=1400, client_proto=ip_address("10.0.0.1"))
    assert hash(cie) == hash(dataclasses.replace(cie))
    assert End().compulsory is True
    with pytest.raises(TypeError):
        Cie(0, 32, bogus=1)
    with pytest.raises(TypeError):
        SendPacket()  # required fields stay required


def test_instances_stay_frozen_and_replace_works():
    pkt = Packet(PacketType.RESOLUTION_REQUEST, request_id=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pkt.hop_count = 3  # type: ignore[misc]
    assert dataclasses.replace(pkt, request_id=8).request_id == 8
    assert pkt.request_id == 7


def test_default_factory_gives_each_instance_its_own_value():
    first, second = Event(EventKind.DROP), Event(EventKind.DROP)
    first.fields["reason"] = "x"
    assert second.fields == {}


def test_objects_built_in_an_unfrozen_twin_are_plain_frozen_instances():
    """Packet and Cie are filled as an unfrozen twin class and then made what they are
    (model.slot_init, model.slot_maker): nothing of the twin may show."""
    cie = Cie(0, 32, holding_time=7200, client_proto=ip_address("10.0.0.1"))
    built = Packet(PacketType.RESOLUTION_REQUEST, request_id=7, cies=(cie,))
    decoded = decode(encode(built))
    for pkt in (built, decoded):
        assert pkt.__class__ is Packet and pkt.cies[0].__class__ is Cie
        assert pkt == built and hash(pkt) == hash(built) and repr(pkt) == repr(built)
        with pytest.raises(dataclasses.FrozenInstanceError):
            pkt.request_id = 8  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            pkt.cies[0].mtu = 1  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(pkt)) == pkt == copy.deepcopy(pkt)

    class Subclass(Cie):  # another layout: filled through the descriptors
        pass

    assert Subclass(0, 32).prefix_length == 32 and Subclass(0, 32).__class__ is Subclass
