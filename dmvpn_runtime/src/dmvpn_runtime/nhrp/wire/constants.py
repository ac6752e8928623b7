"""Numbers on the NHRP wire: RFC 2332, RFC 2735 and draft-detienne-dmvpn.

Every value here is the one the RFC gives; where common implementations differ
(FRR's code 11 for No Binding Exists, code 2 for Loop Detected) the comment says so.
"""

from __future__ import annotations

import enum
from typing import Final

NHRP_VERSION: Final = 1  # RFC 2332 §5.1 ar$op.version
GRE_PROTO_NHRP: Final = 0x2001  # ETH_P_NHRP, the GRE protocol type NHRP rides in
FIXED_HEADER_LEN: Final = 20  # RFC 2332 §5.1
MANDATORY_FIXED_LEN: Final = 8  # src/dst proto len, flags, request id (§5.2.0.1)
CIE_FIXED_LEN: Final = 12  # RFC 2332 §5.2.0.1
EXT_HEADER_LEN: Final = 4  # C|u|type (16) + length (16), RFC 2332 §5.3
MAX_PACKET_LEN: Final = 0xFFFF
# Offsets of fixed-header fields an Error Indication may point at (RFC 2332 §5.1).
HOP_COUNT_OFFSET: Final = 9  # ar$hopcnt
EXTENSION_OFFSET_OFFSET: Final = 14  # ar$extoff: "the extensions", when the one wanted is absent


class PacketType(enum.IntEnum):
    RESOLUTION_REQUEST = 1
    RESOLUTION_REPLY = 2
    REGISTRATION_REQUEST = 3
    REGISTRATION_REPLY = 4
    PURGE_REQUEST = 5
    PURGE_REPLY = 6
    ERROR_INDICATION = 7
    TRAFFIC_INDICATION = 8  # draft-detienne-dmvpn §4 (Cisco "redirect")

    @property
    def json_name(self) -> str:
        return self.name.lower()


class Afn(enum.IntEnum):
    """NBMA address family numbers (IANA), ar$afn."""

    IPV4 = 1
    IPV6 = 2


class ProtocolType(enum.IntEnum):
    """ar$pro.type in its Ethertype form (RFC 2332 §5.1)."""

    IPV4 = 0x0800
    IPV6 = 0x86DD


AFN_ADDRESS_LEN: Final = {Afn.IPV4: 4, Afn.IPV6: 16}
PROTOCOL_ADDRESS_LEN: Final = {ProtocolType.IPV4: 4, ProtocolType.IPV6: 16}


class CieCode(enum.IntEnum):
    """CIE codes, RFC 2332 §5.2.2 and §5.2.4 (FRR wrongly uses 11 for No Binding Exists)."""

    SUCCESS = 0
    ADMINISTRATIVELY_PROHIBITED = 4
    INSUFFICIENT_RESOURCES = 5
    NO_BINDING_EXISTS = 12
    BINDING_NOT_UNIQUE = 13
    UNIQUE_ADDRESS_ALREADY_REGISTERED = 14


class ErrorCode(enum.IntEnum):
    """Error Indication codes, RFC 2332 §5.2.7 (+ RFC 2735)."""

    UNRECOGNIZED_EXTENSION = 1
    LOOP_DETECTED = 3  # FRR sends 2
    PROTOCOL_ADDRESS_UNREACHABLE = 6
    PROTOCOL_ERROR = 7
    SDU_SIZE_EXCEEDED = 8
    INVALID_EXTENSION = 9
    INVALID_RESOLUTION_REPLY = 10
    AUTHENTICATION_FAILURE = 11
    HOP_COUNT_EXCEEDED = 15  # Rockhopper sends 12
    VPN_MISMATCH = 16  # RFC 2735
    VPN_UNSUPPORTED = 17  # RFC 2735


class TrafficCode(enum.IntEnum):
    REDIRECT = 0  # draft-detienne-dmvpn: "a better path may exist"


class ExtensionType(enum.IntEnum):
    END = 0
    RESPONDER_ADDRESS = 3
    FORWARD_TRANSIT_NHS = 4
    REVERSE_TRANSIT_NHS = 5
    AUTHENTICATION = 7
    VENDOR_PRIVATE = 8
    NAT_ADDRESS = 9  # Cisco; RFC 2735 Device Capabilities shares the number (8-octet value)
    MOBILE_NHC_AUTHENTICATION = 10  # RFC 2520, kept opaque


EXT_COMPULSORY: Final = 0x8000
EXT_RESERVED_BIT: Final = 0x4000
EXT_TYPE_MASK: Final = 0x3FFF
DEVICE_CAPABILITIES_LEN: Final = 8  # RFC 2735: src + target capabilities, 4 octets each

# Authentication extension (type 7) forms.
AUTH_TYPE_CLEARTEXT: Final = 1  # Cisco IOS / FRR / opennhrp: u32 type 1 + password
AUTH_CLEARTEXT_MAX_SECRET: Final = 8  # Cisco truncates "ip nhrp authentication" to 8 octets


# Per packet type: bit -> JSON name. Unknown bits are shown as hex so nothing is lost.
FLAG_NAMES: Final[dict[PacketType, dict[int, str]]] = {
    PacketType.RESOLUTION_REQUEST: {
        0x8000: "router",
        0x4000: "authoritative",
        0x2000: "stable_destination",
        0x1000: "unique",
        0x0800: "stable_source",
        0x0002: "nat",
    },
    PacketType.REGISTRATION_REQUEST: {0x8000: "unique", 0x0002: "nat"},
    PacketType.PURGE_REQUEST: {0x8000: "no_reply", 0x0002: "nat"},
}
FLAG_NAMES[PacketType.RESOLUTION_REPLY] = FLAG_NAMES[PacketType.RESOLUTION_REQUEST]
FLAG_NAMES[PacketType.REGISTRATION_REPLY] = FLAG_NAMES[PacketType.REGISTRATION_REQUEST]
FLAG_NAMES[PacketType.PURGE_REPLY] = FLAG_NAMES[PacketType.PURGE_REQUEST]

# Per-type flag bit values for the engine's readability.
RES_FLAG_ROUTER: Final = 0x8000
RES_FLAG_AUTHORITATIVE: Final = 0x4000
RES_FLAG_STABLE_DEST: Final = 0x2000
RES_FLAG_UNIQUE: Final = 0x1000
RES_FLAG_STABLE_SOURCE: Final = 0x0800
REG_FLAG_UNIQUE: Final = 0x8000
PURGE_FLAG_NO_REPLY: Final = 0x8000
FLAG_NAT_CAPABLE: Final = 0x0002

UNIQUE_PREFIX_LENGTH: Final = 0xFF  # RFC 2332 §5.2.3: a unique registration uses prefix 0xFF
