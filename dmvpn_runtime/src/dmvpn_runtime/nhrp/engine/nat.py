"""The Cisco NAT extension (type 9; nhrp-reference §5).

- An NHC's Registration Request carries the NHS's NBMA and protocol address as the NHC
  sees them; the NHS's reply adds a CIE with the NHC's address as the NHS saw it
  (post-NAT) when that differs from the one in the packet. That is how a spoke learns
  its post-NAT address.
- Resolution Requests carry the requester's post-NAT address; the first NHS adds it
  if the requester did not know it. Resolution Replies carry the responder's post-NAT
  address, so shortcuts to a NATed spoke go to an address that reaches it.
- Two nodes behind one NAT see the same post-NAT address for each other as for
  themselves; they use each other's private (claimed) address instead.

Bindings are keyed by overlay address, never by NBMA, so several spokes behind one NAT
address keep separate, stable entries (FRR issue 8308).
"""

from __future__ import annotations

from ..wire import Address, Cie, NatAddress, Packet


def find(packet: Packet) -> NatAddress | None:
    for ext in packet.extensions:
        if isinstance(ext, NatAddress):
            return ext
    return None


def post_nat(ext: NatAddress | None, proto: Address | None) -> Address | None:
    """The post-NAT NBMA the NAT extension ``ext`` (a packet's :func:`find`) gives for
    overlay address ``proto``."""
    if ext is None or proto is None:
        return None
    for cie in ext.cies:
        if (
            cie.client_nbma is not None
            and cie.client_proto is not None
            and cie.client_proto == proto
        ):
            return cie.client_nbma
    return None


def cie(nbma: Address, proto: Address) -> Cie:
    return Cie(prefix_length=proto.max_prefixlen, client_nbma=nbma, client_proto=proto)


def with_observed(
    ext: NatAddress, proto: Address | None, claimed: Address | None, observed: Address
) -> NatAddress:
    """The extension plus a CIE for ``proto`` at ``observed`` when NAT is detected."""
    # Addresses from the codec are interned: identity settles most comparisons without
    # ipaddress's Python-level __eq__.
    if proto is None or observed is claimed or observed == claimed:
        return ext
    for c in ext.cies:
        if c.client_proto is not None and c.client_proto == proto:
            return ext
    return NatAddress((*ext.cies, cie(observed, proto)), ext.compulsory)


def reachable(
    claimed: Address | None,
    post: Address | None,
    observed: Address | None,
    own_post: Address | None,
) -> Address | None:
    """The NBMA to send to: post-NAT when known, except behind our own NAT (same public
    address as ours), where the private address is the one that works."""
    if post is not None:
        if own_post is not None and claimed is not None and post == own_post:
            return claimed
        return post
    return claimed if claimed is not None else observed
