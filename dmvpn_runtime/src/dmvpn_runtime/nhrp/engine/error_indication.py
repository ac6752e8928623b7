"""Error Indication (RFC 2332 §5.2.7): sending, receiving, and the unknown-extension rule.

Sent to the node the offending packet came from, quoting it (at most
``ERROR_PAYLOAD_MAX`` octets), never in answer to an Error Indication, and at most
``limits.errors_per_s`` per source so a flood of bad packets cannot make us one.
Codes are RFC 2332's: 1 unrecognized extension, 3 loop detected, 11 authentication
failure, 15 hop count exceeded. The error offset names where in the quoted packet the
fault is: the unrecognized extension, the Forward Transit record holding us, the
authentication extension (ar$extoff when it is missing), ar$hopcnt. Our
authentication extension is added like on every packet we send.

An Error Indication about one of our requests ends that request (it is an answer); an
NHS relays one addressed to a registered client.
"""

from __future__ import annotations

from ..wire import (
    Address,
    DecodeError,
    ErrorCode,
    Extension,
    Packet,
    PacketType,
    UnknownExtension,
    decode,
    encode,
    extension_offsets,
)
from .actions import EventKind, MappingType
from .core import Core, relayed
from .stats import Drop
from .timers import DEFAULT_HOP_COUNT, ERROR_PAYLOAD_MAX


def send(
    core: Core,
    pkt: Packet | None,
    data: bytes | None,
    src: Address,
    code: int,
    now: float,
    at: Extension | int = 0,
) -> None:
    """Tell ``src`` that its packet (``pkt``, received as ``data``) was refused because
    of ``at``: one of its extensions, or the offset of a fixed-header field."""
    if pkt is not None and pkt.type == PacketType.ERROR_INDICATION:
        return
    if not core.err_limiter.allow(src, now):
        core.stats.counters["error_indication_suppressed"] += 1
        return
    if pkt is None:
        return  # undecodable: we cannot even address the sender's protocol
    own = core.own.get(pkt.protocol_type)
    if own is None:
        return
    if data is None:
        data = encode(pkt)  # the offending packet as decoded (RFC: quote what was received)
    err = Packet(
        PacketType.ERROR_INDICATION,
        core.afn,
        pkt.protocol_type,
        DEFAULT_HOP_COUNT,
        core.nbma,
        own,
        pkt.src_proto,
        error_code=int(code),
        error_offset=at if isinstance(at, int) else _offset_of(pkt, data, at),
        payload=data[:ERROR_PAYLOAD_MAX],
        extensions=core.extensions(),
    )
    core.send(src, err)
    core.stats.counters[f"error_indication_sent_{int(code)}"] += 1


def _offset_of(pkt: Packet, data: bytes, ext: Extension) -> int:
    """Where ``ext``, one of ``pkt``'s extensions, starts in ``data`` (0 if it cannot be
    found: the offset is advice to the sender, never worth failing for)."""
    for i, candidate in enumerate(pkt.extensions):
        if candidate is ext:
            offsets = extension_offsets(data)
            return offsets[i] if i < len(offsets) else 0
    return 0


def refuse_unknown_compulsory(core: Core, pkt: Packet, src: Address, now: float) -> bool:
    """RFC 2332 §5.3: the responder answers an unknown compulsory extension with code 1."""
    for ext in pkt.extensions:
        if isinstance(ext, UnknownExtension) and ext.compulsory:
            core.drop(Drop.UNKNOWN_COMPULSORY_EXTENSION, src, ext_type=ext.type)
            send(core, pkt, None, src, ErrorCode.UNRECOGNIZED_EXTENSION, now, ext)
            return True
    return False


def on_indication(core: Core, pkt: Packet, src: Address, protected: bool, now: float) -> None:
    core.stats.counters[f"error_indication_received_{pkt.error_code}"] += 1
    own = core.own_addresses
    if pkt.dst_proto is not None and pkt.dst_proto not in own:
        entry = core.cache.get(pkt.dst_proto)
        if (
            core.config.is_nhs
            and entry is not None
            and entry.type is MappingType.REGISTERED
            and entry.nbma is not None
            and pkt.hop_count > 1
        ):
            core.send(entry.nbma, relayed(pkt))
            return
        core.drop(Drop.UNMATCHED_REPLY, src, type="error_indication", code=pkt.error_code)
        return
    core.event(EventKind.ERROR_INDICATION, src=src, code=pkt.error_code)
    try:
        orig = decode(pkt.payload)
    except DecodeError:
        return  # quoted packet truncated: logged and counted, nothing to act on
    if orig.src_proto not in own:
        return
    if orig.type == PacketType.RESOLUTION_REQUEST:
        core.resolver.on_error(orig.request_id, pkt.error_code, src, now)
    elif orig.type == PacketType.REGISTRATION_REQUEST:
        core.nhc.on_error(orig.request_id, pkt.error_code, now)
    elif orig.type == PacketType.PURGE_REQUEST:
        core.purger.on_error(orig.request_id)
