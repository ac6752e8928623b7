"""Typed codec errors: every failure names a reason and the octet offset it concerns."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a packet could not be decoded or encoded (also the metric label)."""

    TRUNCATED = "truncated"
    LENGTH_BEYOND_PACKET = "length_beyond_packet"
    BAD_LENGTH = "bad_length"
    BAD_CHECKSUM = "bad_checksum"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_PACKET_TYPE = "unknown_packet_type"
    UNSUPPORTED_AFN = "unsupported_afn"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    ADDRESS_LENGTH = "address_length_inconsistent"
    UNSUPPORTED_ADDRESS_TYPE = "unsupported_address_type"
    SUBADDRESS = "subaddress_not_supported"
    RESERVED_NONZERO = "reserved_nonzero"
    BAD_EXTENSION_OFFSET = "bad_extension_offset"
    CIE_OVERRUN = "cie_overrun"
    EXTENSION_OVERRUN = "extension_overrun"
    MISSING_END = "missing_end"
    DATA_AFTER_END = "data_after_end"
    INVALID_EXTENSION = "invalid_extension"
    INVALID_FIELD = "invalid_field"


class CodecError(Exception):
    """A packet that is not valid NHRP (decode) or a model that cannot be sent (encode)."""

    def __init__(self, reason: Reason, offset: int, detail: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.detail = detail
        text = f"{reason.value} at offset {offset}"
        super().__init__(f"{text}: {detail}" if detail else text)


class DecodeError(CodecError):
    """The bytes received are not a valid NHRP packet."""


class EncodeError(CodecError):
    """The packet model cannot be put on the wire (a field out of range, a wrong family)."""
