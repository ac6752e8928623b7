"""Authentication extension (RFC 2332 §5.3.4, Cisco cleartext form) and authorisation.

Two separate questions:

- *Authentication*: does the packet carry our secret? With a secret configured every
  packet we send carries it (Traffic Indication and Error Indication included, FRR issue
  16371) and every packet we receive must carry it; a failure is counted, logged and
  answered with Error Indication code 11, and the packet is never acted on.
- *Authorisation*: may this peer bind this overlay address and these prefixes? That is
  the :class:`Authoriser`'s call. The default allows everything; the IPsec layer plugs in
  one that checks the IKE peer's certificate (architecture §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

from ..wire import Address, CleartextAuthentication, Extension, KeyedHashAuthentication, Packet
from ..wire.constants import EXTENSION_OFFSET_OFFSET
from .stats import Drop

Network = IPv4Network | IPv6Network

#: What an authoriser answers: True to allow; False or a short reason string to refuse.
Decision = bool | str


class Authoriser(Protocol):
    """Decides whether a peer may hold a binding.

    ``nbma`` is the address the packet came from (post-NAT), ``proto`` the overlay
    address, ``prefixes`` every network the binding would route to that peer, and
    ``ipsec_identity`` whatever the IPsec driver passed with ``Engine.ipsec_up`` for that
    NBMA (None when unknown or IPsec is not used). Called synchronously; must not block.
    """

    def authorise_registration(
        self,
        nbma: Address,
        proto: Address,
        prefixes: Sequence[Network],
        ipsec_identity: Any | None,
    ) -> Decision: ...

    def authorise_resolution_reply(
        self,
        nbma: Address,
        proto: Address,
        prefixes: Sequence[Network],
        ipsec_identity: Any | None,
    ) -> Decision: ...


class AllowAll:
    """The default: every binding is allowed (use with IPsec none, or in tests)."""

    def authorise_registration(
        self,
        nbma: Address,
        proto: Address,
        prefixes: Sequence[Network],
        ipsec_identity: Any | None,
    ) -> Decision:
        return True

    def authorise_resolution_reply(
        self,
        nbma: Address,
        proto: Address,
        prefixes: Sequence[Network],
        ipsec_identity: Any | None,
    ) -> Decision:
        return True


def refusal(decision: Decision) -> str | None:
    """None when allowed, else the reason to log."""
    if decision is True:
        return None
    if isinstance(decision, str) and decision:
        return decision
    return "denied"


def extension(secret: bytes | None) -> CleartextAuthentication | None:
    return CleartextAuthentication(secret) if secret else None


def check(packet: Packet, secret: bytes | None) -> Drop | None:
    """None if the packet is acceptable, else why not. No secret: nothing is required."""
    if secret is None:
        return None
    for ext in packet.extensions:
        if isinstance(ext, CleartextAuthentication):
            return None if ext.secret == secret else Drop.AUTH_MISMATCH
        if isinstance(ext, KeyedHashAuthentication):
            return Drop.AUTH_MISMATCH  # we speak the Cisco form only
    return Drop.AUTH_MISSING


def find(packet: Packet) -> Extension | int:
    """The packet's authentication extension, or where it should be (ar$extoff): what
    an Error Indication for an authentication failure points at."""
    for ext in packet.extensions:
        if isinstance(ext, CleartextAuthentication | KeyedHashAuthentication):
            return ext
    return EXTENSION_OFFSET_OFFSET
