"""Data-plane pieces that need no namespace: GRE parsing, configuration, MTU."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from dmvpn_runtime.checksum import internet_checksum
from dmvpn_runtime.dataplane import DataPlaneConfig, Drop, Role
from dmvpn_runtime.dataplane.userspace import gre

PAYLOAD = bytes(range(20))


def keyed(proto: int = 0x0800, key: int = 42, flags: int = gre.FLAG_K) -> bytes:
    return struct.pack("!HHI", flags, proto, key) + PAYLOAD


@pytest.mark.parametrize(
    ("packet", "key", "expected"),
    [
        (keyed(), 42, (0x0800, 8)),
        (keyed(0x2001), 42, (0x2001, 8)),
        (struct.pack("!HH", 0, 0x86DD) + PAYLOAD, None, (0x86DD, 4)),
        (keyed(key=43), 42, Drop.KEY_MISMATCH),
        (struct.pack("!HH", 0, 0x0800) + PAYLOAD, 42, Drop.KEY_MISMATCH),
        (keyed(), None, Drop.KEY_MISMATCH),
        (keyed(flags=gre.FLAG_K | 1), 42, Drop.BAD_VERSION),
        (keyed(flags=gre.FLAG_K | gre.FLAG_R), 42, Drop.BAD_FLAGS),
        (keyed(flags=gre.FLAG_K | 0x0100), 42, Drop.BAD_FLAGS),  # recursion control
        (b"\x20", 42, Drop.TRUNCATED),
        (struct.pack("!HH", gre.FLAG_K, 0x0800) + b"\x00\x00", 42, Drop.TRUNCATED),
        (struct.pack("!HHII", gre.FLAG_K | gre.FLAG_S, 0x0800, 42, 7) + PAYLOAD, 42, (0x0800, 12)),
    ],
)
def test_gre_parse(packet: bytes, key: int | None, expected: object) -> None:
    assert gre.parse(packet, 0, len(packet), key) == expected


def test_gre_checksum_is_verified() -> None:
    blank = struct.pack("!HHHHI", gre.FLAG_C | gre.FLAG_K, 0x0800, 0, 0, 42) + PAYLOAD
    good = blank[:4] + internet_checksum(blank).to_bytes(2, "big") + blank[6:]
    assert gre.parse(good, 0, len(good), 42) == (0x0800, 12)
    bad = good[:4] + b"\x00\x01" + good[6:]
    assert gre.parse(bad, 0, len(bad), 42) == Drop.BAD_CHECKSUM


def test_gre_parse_at_an_offset_inside_a_buffer() -> None:
    buf = bytearray(b"\xff" * 20) + keyed()
    assert gre.parse(buf, 20, len(buf), 42) == (0x0800, 28)


def test_header_round_trips() -> None:
    assert gre.header(0x2001, 42) == bytes.fromhex("200020010000002a")
    assert gre.header(0x86DD, None) == bytes.fromhex("000086dd")
    for key in (None, 0, 42, 0xFFFFFFFF):
        hdr = gre.header(0x0800, key) + PAYLOAD
        assert gre.parse(hdr, 0, len(hdr), key) == (0x0800, len(hdr) - len(PAYLOAD))


def config(**kw: object) -> DataPlaneConfig:
    base: dict[str, object] = {
        "tunnel": "dmvpn0",
        "local_nbma": ["192.0.2.1"],
        "overlay": ["10.99.0.1/24"],
        "key": 42,
    }
    base.update(kw)
    return DataPlaneConfig.from_dict(base)


@pytest.mark.parametrize(
    ("nbma", "key", "mtu"),
    [
        (["192.0.2.1"], 42, 1472),  # 1500 - 20 - 8
        (["192.0.2.1"], None, 1476),  # 1500 - 20 - 4
        (["2001:db8::1"], 42, 1452),  # 1500 - 40 - 8
        (["192.0.2.1", "2001:db8::1"], 42, 1452),  # the wider header decides
    ],
)
def test_mtu_accounts_for_the_encapsulation(nbma: list[str], key: int | None, mtu: int) -> None:
    assert config(local_nbma=nbma, key=key).effective_mtu == mtu


def test_config_normalises_and_validates() -> None:
    cfg = config(role="hub", local_nbma="192.0.2.1", mtu=1400)
    assert cfg.role is Role.HUB and cfg.local_nbma == (ip_address("192.0.2.1"),)
    assert cfg.effective_mtu == 1400 and cfg.nbma_for(6) is None
    with pytest.raises(ValueError) as err:
        DataPlaneConfig.from_dict(
            {
                "tunnel": "a-name-far-too-long",
                "local_nbma": ["192.0.2.1", "192.0.2.2"],
                "overlay": ["fd00::1/64"],
                "key": -1,
                "mtu": 1200,
            }
        )
    text = str(err.value)
    for problem in ("tunnel", "more than one IPv4", "key", "below IPv6's minimum"):
        assert problem in text
    with pytest.raises(ValueError, match="at least one"):
        config(local_nbma=[])
