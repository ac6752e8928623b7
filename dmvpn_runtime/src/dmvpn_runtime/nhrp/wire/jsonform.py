"""The JSON form of a :class:`Packet`: what ``dmvpnctl decode`` prints and ``encode`` reads.

Every key is documented in ``docs/codec-json.md``. The form is lossless: for any packet
``p`` the codec can encode, ``packet_from_json(packet_to_json(p)) == p``, and for any
JSON ``j`` this module produces, ``packet_to_json(packet_from_json(j)) == j``.

Input is checked strictly: an unknown key, a key that the packet type has no octets for,
a value of the wrong kind or range, or an address of the wrong family raises
:class:`JsonFormError`, which names the key (as a path such as
``extensions[3].cies[0].client_nbma``) and what was expected. Keys that are missing take
the model's defaults (see the docs), except ``type``, which is required.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, TypeGuard

from .constants import (
    EXT_TYPE_MASK,
    FLAG_NAMES,
    Afn,
    ExtensionType,
    PacketType,
    ProtocolType,
)
from .errors import EncodeError, Reason
from .model import (
    Address,
    Cie,
    CleartextAuthentication,
    DeviceCapabilities,
    End,
    Extension,
    ForwardTransitNhs,
    KeyedHashAuthentication,
    NatAddress,
    Packet,
    ResponderAddress,
    ReverseTransitNhs,
    UnknownExtension,
    VendorPrivate,
)

__all__ = [
    "JsonFormError",
    "extension_name",
    "flag_names",
    "packet_from_json",
    "packet_to_json",
]

_MISSING = object()


class JsonFormError(EncodeError):
    """JSON that does not describe an NHRP packet.

    ``key`` is the path of the offending key, ``expected`` what it should hold; ``str()``
    reads ``<key>: expected <expected>, got <value>``.
    """

    def __init__(self, key: str, expected: str, got: object = _MISSING) -> None:
        self.key = key
        self.expected = expected
        detail = f"{key}: expected {expected}"
        if got is not _MISSING:
            detail += f", got {_show(got)}"
        super().__init__(Reason.INVALID_FIELD, 0, detail)

    def __str__(self) -> str:
        return self.detail


def _is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


# --- names ------------------------------------------------------------------------------

_TYPE_BY_NAME = {t.json_name: t for t in PacketType}
_REQUEST_REPLY = frozenset(t for t in PacketType if t <= PacketType.PURGE_REPLY)

_EXT_NAMES: dict[type[Extension], str] = {
    End: "end",
    ResponderAddress: "responder_address",
    ForwardTransitNhs: "forward_transit_nhs",
    ReverseTransitNhs: "reverse_transit_nhs",
    CleartextAuthentication: "cleartext_authentication",
    KeyedHashAuthentication: "keyed_hash_authentication",
    VendorPrivate: "vendor_private",
    NatAddress: "nat_address",
    DeviceCapabilities: "device_capabilities",
}
_KNOWN_TYPES = {int(t) for t in ExtensionType}
# Which classes a type number may decode to, and the key that tells them apart when
# the JSON has no "name".
_CLASSES_BY_TYPE: dict[int, tuple[tuple[type[Extension], str | None], ...]] = {
    ExtensionType.END: ((End, None),),
    ExtensionType.RESPONDER_ADDRESS: ((ResponderAddress, None),),
    ExtensionType.FORWARD_TRANSIT_NHS: ((ForwardTransitNhs, None),),
    ExtensionType.REVERSE_TRANSIT_NHS: ((ReverseTransitNhs, None),),
    ExtensionType.AUTHENTICATION: (
        (CleartextAuthentication, "secret"),
        (KeyedHashAuthentication, "spi"),
    ),
    ExtensionType.VENDOR_PRIVATE: ((VendorPrivate, None),),
    ExtensionType.NAT_ADDRESS: ((NatAddress, "cies"), (DeviceCapabilities, "source_capabilities")),
}


def extension_name(ext: Extension) -> str:
    """The JSON ``name`` of an extension (also used in summaries)."""
    name = _EXT_NAMES.get(type(ext))
    if name is not None:
        return name
    if ext.type in _KNOWN_TYPES:  # e.g. 10, Mobile NHC Authentication, kept opaque
        return ExtensionType(ext.type).name.lower()
    return "unknown"


def flag_names(ptype: PacketType, flags: int) -> list[str]:
    """Set bits, most significant first: the type's name for a bit, else ``"0x0004"``."""
    names = FLAG_NAMES.get(ptype, {})
    return [
        names.get(bit, f"0x{bit:04x}") for bit in (1 << n for n in range(15, -1, -1)) if flags & bit
    ]


# --- Packet -> JSON ---------------------------------------------------------------------


def _addr(addr: Address | None) -> str | None:
    return None if addr is None else str(addr)


def _cie_to_json(cie: Cie) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": cie.code,
        "prefix_length": cie.prefix_length,
        "mtu": cie.mtu,
        "holding_time": cie.holding_time,
        "preference": cie.preference,
        "client_nbma": _addr(cie.client_nbma),
        "client_proto": _addr(cie.client_proto),
    }
    if cie.reserved:
        out["reserved"] = cie.reserved
    return out


def _extension_to_json(ext: Extension) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": int(ext.type),
        "name": extension_name(ext),
        "compulsory": bool(ext.compulsory),
    }
    if ext.__class__ is ResponderAddress:
        out["cie"] = None if ext.cie is None else _cie_to_json(ext.cie)
    elif ext.__class__ in (ForwardTransitNhs, ReverseTransitNhs, NatAddress):
        out["cies"] = [_cie_to_json(c) for c in ext.cies]
    elif ext.__class__ is CleartextAuthentication:
        out["secret"] = bytes(ext.secret).hex()
    elif ext.__class__ is KeyedHashAuthentication:
        out["spi"] = ext.spi
        out["source"] = _addr(ext.source)
        out["data"] = bytes(ext.data).hex()
        if ext.reserved:
            out["reserved"] = ext.reserved
    elif ext.__class__ is VendorPrivate:
        out["vendor_id"] = ext.vendor_id
        out["data"] = bytes(ext.data).hex()
    elif ext.__class__ is DeviceCapabilities:
        out["source_capabilities"] = ext.source
        out["target_capabilities"] = ext.target
    elif ext.__class__ is UnknownExtension:
        out["value"] = bytes(ext.value).hex()
    return out


def packet_to_json(packet: Packet) -> dict[str, Any]:
    """The JSON object for a packet (only the keys its type carries; see the docs)."""
    ptype = PacketType(packet.type)
    out: dict[str, Any] = {
        "type": ptype.json_name,
        "afn": int(packet.afn),
        "protocol_type": f"0x{int(packet.protocol_type):04x}",
        "hop_count": packet.hop_count,
    }
    if ptype in _REQUEST_REPLY:
        out["request_id"] = packet.request_id
        out["flags"] = flag_names(ptype, packet.flags)
    out["src_nbma"] = _addr(packet.src_nbma)
    out["src_proto"] = _addr(packet.src_proto)
    out["dst_proto"] = _addr(packet.dst_proto)
    if ptype in _REQUEST_REPLY:
        out["cies"] = [_cie_to_json(c) for c in packet.cies]
    elif ptype == PacketType.ERROR_INDICATION:
        out["error_code"] = packet.error_code
        out["error_offset"] = packet.error_offset
    else:
        out["traffic_code"] = packet.traffic_code
    if ptype not in _REQUEST_REPLY:
        out["payload"] = bytes(packet.payload).hex()
        if packet.reserved:
            out["reserved"] = packet.reserved
    out["extensions"] = [_extension_to_json(e) for e in packet.extensions]
    return out


# --- JSON -> Packet ---------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object, with the path for error messages."""

    def __init__(self, obj: object, path: str, allowed: frozenset[str], what: str) -> None:
        if not isinstance(obj, dict):
            raise JsonFormError(path or "packet", f"a JSON object ({what})", obj)
        for key in obj:
            if key not in allowed:
                raise JsonFormError(
                    self._join(path, str(key)),
                    f"no such key in {what}; allowed: {', '.join(sorted(allowed))}",
                )
        self.obj = obj
        self.path = path

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key(self, key: str) -> str:
        return self._join(self.path, key)

    def get(self, key: str, default: object = _MISSING) -> object:
        value = self.obj.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise JsonFormError(self.key(key), "this required key")
            return default
        return value

    def int(self, key: str, bits: int, default: int = 0) -> int:
        value = self.get(key, default)
        if not _is_int(value) or not 0 <= value < (1 << bits):
            raise JsonFormError(self.key(key), f"an integer 0..{(1 << bits) - 1}", value)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise JsonFormError(self.key(key), "true or false", value)
        return value

    def hex(self, key: str) -> bytes:
        value = self.get(key, "")
        if not isinstance(value, str):
            raise JsonFormError(self.key(key), "a hex string", value)
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise JsonFormError(
                self.key(key), "a hex string (two digits an octet)", value
            ) from None

    def address(self, key: str, family: type, why: str) -> Address | None:
        value = self.get(key, None)
        if value is None:
            return None
        version = 4 if family is IPv4Address else 6
        expected = f"an IPv{version} address or null ({why})"
        if not isinstance(value, str):
            raise JsonFormError(self.key(key), expected, value)
        try:
            addr = ip_address(value)
        except ValueError:
            raise JsonFormError(self.key(key), expected, value) from None
        if not isinstance(addr, family):
            raise JsonFormError(self.key(key), expected, value)
        return addr

    def list(self, key: str) -> list:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise JsonFormError(self.key(key), "a JSON array", value)
        return value


_AFN_FAMILY = {Afn.IPV4: IPv4Address, Afn.IPV6: IPv6Address}
_PROTO_FAMILY = {ProtocolType.IPV4: IPv4Address, ProtocolType.IPV6: IPv6Address}
_PROTO_BY_TEXT = {f"0x{int(p):04x}": p for p in ProtocolType}

_CIE_KEYS = frozenset(
    {
        "code",
        "prefix_length",
        "mtu",
        "holding_time",
        "preference",
        "client_nbma",
        "client_proto",
        "reserved",
    }
)
_COMMON_KEYS = frozenset(
    {
        "type",
        "afn",
        "protocol_type",
        "hop_count",
        "src_nbma",
        "src_proto",
        "dst_proto",
        "extensions",
    }
)
_PACKET_KEYS = {
    "request": _COMMON_KEYS | {"request_id", "flags", "cies"},
    PacketType.ERROR_INDICATION: _COMMON_KEYS
    | {"error_code", "error_offset", "payload", "reserved"},
    PacketType.TRAFFIC_INDICATION: _COMMON_KEYS | {"traffic_code", "payload", "reserved"},
}
_EXT_KEYS: dict[type[Extension], frozenset[str]] = {
    cls: frozenset({"type", "name", "compulsory"} | extra)
    for cls, extra in (
        (End, set()),
        (ResponderAddress, {"cie"}),
        (ForwardTransitNhs, {"cies"}),
        (ReverseTransitNhs, {"cies"}),
        (NatAddress, {"cies"}),
        (CleartextAuthentication, {"secret"}),
        (KeyedHashAuthentication, {"spi", "source", "data", "reserved"}),
        (VendorPrivate, {"vendor_id", "data"}),
        (DeviceCapabilities, {"source_capabilities", "target_capabilities"}),
        (UnknownExtension, {"value"}),
    )
}


class _Families:
    __slots__ = ("nbma", "nbma_why", "proto", "proto_why")

    def __init__(self, afn: Afn, proto: ProtocolType) -> None:
        self.nbma = _AFN_FAMILY[afn]
        self.nbma_why = f"afn {int(afn)}"
        self.proto = _PROTO_FAMILY[proto]
        self.proto_why = f"protocol_type 0x{int(proto):04x}"


def _cie_from_json(obj: object, path: str, fam: _Families) -> Cie:
    r = _Reader(obj, path, _CIE_KEYS, "a CIE")
    return Cie(
        code=r.int("code", 8),
        prefix_length=r.int("prefix_length", 8),
        mtu=r.int("mtu", 16),
        holding_time=r.int("holding_time", 16),
        preference=r.int("preference", 8),
        client_nbma=r.address("client_nbma", fam.nbma, fam.nbma_why),
        client_proto=r.address("client_proto", fam.proto, fam.proto_why),
        reserved=r.int("reserved", 16),
    )


def _cies(r: _Reader, key: str, fam: _Families) -> tuple[Cie, ...]:
    return tuple(_cie_from_json(c, f"{r.key(key)}[{i}]", fam) for i, c in enumerate(r.list(key)))


def _class_name(cls: type[Extension], ext_type: int) -> str:
    return _EXT_NAMES.get(cls) or extension_name(UnknownExtension(ext_type))


def _extension_class(obj: dict[str, Any], path: str, ext_type: int) -> type[Extension]:
    candidates = _CLASSES_BY_TYPE.get(ext_type, ((UnknownExtension, None),))
    name = obj.get("name", _MISSING)
    if name is not _MISSING:
        for cls, _marker in candidates:
            if name == _class_name(cls, ext_type):
                return cls
        names = " or ".join(_class_name(cls, ext_type) for cls, _marker in candidates)
        raise JsonFormError(f"{path}.name", f"{names} for type {ext_type}", name)
    if len(candidates) == 1:
        return candidates[0][0]
    for cls, marker in candidates:
        if marker in obj:
            return cls
    markers = " or ".join(f'"{m}"' for _cls, m in candidates)
    raise JsonFormError(path, f'a "name" or one of the keys {markers} for type {ext_type}')


def _extension_from_json(obj: object, path: str, fam: _Families) -> Extension:
    if not isinstance(obj, dict):
        raise JsonFormError(path, "a JSON object (an extension)", obj)
    ext_type = obj.get("type", _MISSING)
    if ext_type is _MISSING:
        raise JsonFormError(f"{path}.type", "this required key")
    if not _is_int(ext_type) or not 0 <= ext_type <= EXT_TYPE_MASK:
        raise JsonFormError(f"{path}.type", f"an integer 0..{EXT_TYPE_MASK}", ext_type)
    cls = _extension_class(obj, path, ext_type)
    r = _Reader(obj, path, _EXT_KEYS[cls], f"a {_EXT_NAMES.get(cls, 'opaque')} extension")
    compulsory = r.bool("compulsory", cls().compulsory)  # the class default
    if cls is End:
        return End(compulsory)
    if cls is ResponderAddress:
        cie = r.get("cie", None)
        return ResponderAddress(
            None if cie is None else _cie_from_json(cie, r.key("cie"), fam), compulsory
        )
    if cls in (ForwardTransitNhs, ReverseTransitNhs, NatAddress):
        return cls(_cies(r, "cies", fam), compulsory)
    if cls is CleartextAuthentication:
        return CleartextAuthentication(r.hex("secret"), compulsory)
    if cls is KeyedHashAuthentication:
        return KeyedHashAuthentication(
            spi=r.int("spi", 16),
            source=r.address("source", fam.proto, fam.proto_why),
            data=r.hex("data"),
            reserved=r.int("reserved", 16),
            compulsory=compulsory,
        )
    if cls is VendorPrivate:
        return VendorPrivate(r.int("vendor_id", 24), r.hex("data"), compulsory)
    if cls is DeviceCapabilities:
        return DeviceCapabilities(
            r.int("source_capabilities", 32), r.int("target_capabilities", 32), compulsory
        )
    return UnknownExtension(ext_type, r.hex("value"), compulsory)


def _flags_from_json(r: _Reader, ptype: PacketType) -> int:
    by_name = {name: bit for bit, name in FLAG_NAMES.get(ptype, {}).items()}
    flags = 0
    for i, item in enumerate(r.list("flags")):
        key = f"{r.key('flags')}[{i}]"
        expected = f'one of {", ".join(sorted(by_name))} or a hex bit such as "0x0004"'
        if not isinstance(item, str):
            raise JsonFormError(key, expected, item)
        bit = by_name.get(item)
        if bit is None:
            try:
                bit = int(item, 16) if item.lower().startswith("0x") else -1
            except ValueError:
                bit = -1
            if not 0 < bit <= 0xFFFF:
                raise JsonFormError(key, expected, item)
        flags |= bit
    return flags


def packet_from_json(obj: object) -> Packet:
    """The packet a JSON object describes; raises :class:`JsonFormError` if it does not."""
    if not isinstance(obj, dict):
        raise JsonFormError("packet", "a JSON object", obj)
    type_name = obj.get("type", _MISSING)
    if type_name is _MISSING:
        raise JsonFormError("type", "this required key (one of " + ", ".join(_TYPE_BY_NAME) + ")")
    ptype = _TYPE_BY_NAME.get(type_name) if isinstance(type_name, str) else None
    if ptype is None:
        raise JsonFormError("type", "one of " + ", ".join(_TYPE_BY_NAME), type_name)
    allowed = _PACKET_KEYS.get(ptype, _PACKET_KEYS["request"])
    r = _Reader(obj, "", allowed, f"a {ptype.json_name}")

    afn_v = r.get("afn", int(Afn.IPV4))
    if not _is_int(afn_v) or afn_v not in Afn._value2member_map_:
        raise JsonFormError("afn", "1 (IPv4) or 2 (IPv6)", afn_v)
    afn = Afn(afn_v)
    proto_v = r.get("protocol_type", f"0x{int(ProtocolType.IPV4):04x}")
    proto = None
    if isinstance(proto_v, str):
        proto = _PROTO_BY_TEXT.get(proto_v.lower())
    elif _is_int(proto_v) and proto_v in ProtocolType._value2member_map_:
        proto = ProtocolType(proto_v)
    if proto is None:
        raise JsonFormError("protocol_type", '"0x0800" (IPv4) or "0x86dd" (IPv6)', proto_v)
    fam = _Families(afn, proto)

    src_proto = r.address("src_proto", fam.proto, fam.proto_why)
    fields: dict[str, Any] = {
        "type": ptype,
        "afn": afn,
        "protocol_type": proto,
        "hop_count": r.int("hop_count", 8, 1),
        "src_nbma": r.address("src_nbma", fam.nbma, fam.nbma_why),
        "src_proto": src_proto,
        "dst_proto": r.address("dst_proto", fam.proto, fam.proto_why),
    }
    if ptype in _REQUEST_REPLY:
        fields["request_id"] = r.int("request_id", 32)
        fields["flags"] = _flags_from_json(r, ptype)
        fields["cies"] = _cies(r, "cies", fam)
    elif ptype == PacketType.ERROR_INDICATION:
        fields["error_code"] = r.int("error_code", 16)
        fields["error_offset"] = r.int("error_offset", 16)
        fields["payload"] = r.hex("payload")
        fields["reserved"] = r.int("reserved", 16)
    else:
        fields["traffic_code"] = r.int("traffic_code", 16)
        fields["payload"] = r.hex("payload")
        fields["reserved"] = r.int("reserved", 32)
    fields["extensions"] = tuple(
        _extension_from_json(e, f"extensions[{i}]", fam) for i, e in enumerate(r.list("extensions"))
    )
    return Packet(**fields)
