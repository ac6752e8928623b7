"""Our nftables table: its rules, creating it, and finding, deleting and reading it.

One ``inet`` table per tunnel holds all the plane needs from netfilter: per-peer GRE
counters (dynamic sets ``tx4``/``rx4``), the NFLOG rules for multicast to replicate and,
on a hub, for hairpinned packets, the drop of ICMP redirects through the tunnel, and in
protected mode the drop of GRE that did not come through IPsec. Creating the table runs
the ``nft`` program (the ruleset is text); looking it up, deleting it and reading the
counters go over nf_tables netlink.

Separate from the plane because the ruleset is the one place where the rules are
written down, and because ``cleanup_stale`` and the tests use the table functions
without a plane.
"""

from __future__ import annotations

import errno
import json
import subprocess
import zlib

from ..base import DataPlaneConfig, DataPlaneError, Role, StaleStateError
from ..netlink import RequestSocket
from .messages import (
    GRE_FLAG_KEY,
    nft_delete_table_batch,
    nft_get_table_request,
    parse_set_counters,
    set_elements_dump_request,
)
from .sockets import NETLINK_NETFILTER

HAIRPIN_HEAD = 128  # octets of a hairpinned packet NFLOG copies (and the sink gets)
PREFIX_HAIRPIN = "dmvpn-hp"
PREFIX_MULTICAST = "dmvpn-mc"
NFT_TIMEOUT = 10.0

# ICMPv6 that must not be replicated: MLD (130-132, 143) and ND (133-137).
LOCAL_ICMPV6 = (130, 131, 132, 133, 134, 135, 136, 137, 143)


def table_name(tunnel: str) -> str:
    """Our nftables table for ``tunnel`` (identifier-safe, unique per tunnel name)."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in tunnel)
    if safe != tunnel:
        safe += f"_{zlib.crc32(tunnel.encode()) & 0xFFFF:04x}"
    return f"dmvpn_{safe}"


def _nft_str(text: str) -> str:
    return json.dumps(text)  # a double-quoted string nft accepts (names have no quotes)


def nft_ruleset(config: DataPlaneConfig, group: int) -> str:
    """The nftables table this data plane owns (an ``nft -f`` script, no flush)."""
    table = table_name(config.tunnel)
    tun = _nft_str(config.tunnel)
    local = config.nbma_for(4)
    gre = ""
    if config.key is not None:
        gre = f" @th,0,16 {GRE_FLAG_KEY:#06x} @th,32,32 {config.key}"
    broadcast = ["224.0.0.0/4", "255.255.255.255"]
    for iface in config.overlay:
        if iface.version == 4 and iface.network.prefixlen < 31:
            broadcast.append(str(iface.network.broadcast_address))
    icmp6 = ", ".join(str(t) for t in LOCAL_ICMPV6)
    mc = f'log prefix "{PREFIX_MULTICAST}" group {group} drop'
    lines = [
        f"table inet {table} {{",
        "  set tx4 { type ipv4_addr; size 65535; flags dynamic; counter; }",
        "  set rx4 { type ipv4_addr; size 65535; flags dynamic; counter; }",
        "  chain c_out {",
        "    type filter hook output priority 0; policy accept;",
        # No ICMP redirects through the tunnel: a hub forwarding spoke-to-spoke traffic
        # would name the other spoke as a better first hop, and a spoke would believe
        # it; NHRP's redirect (Traffic Indication) does that job under its policy.
        # (The conf/*/send_redirects and accept_redirects sysctls are ORed with "all".)
        f"    oifname {tun} icmp type redirect counter drop",
        f"    oifname {tun} icmpv6 type nd-redirect counter drop",
        f"    oifname {tun} ip protocol igmp drop",
        f"    oifname {tun} ip6 daddr ff00::/8 icmpv6 type {{ {icmp6} }} drop",
        f"    oifname {tun} ip6 daddr ff00::/8 {mc}",
        f"    oifname {tun} ip daddr {{ {', '.join(broadcast)} }} {mc}",
        f"    meta l4proto gre ip saddr {local}{gre} update @tx4 {{ ip daddr }}",
        "  }",
        "  chain c_in {",
        "    type filter hook input priority 0; policy accept;",
        f"    iifname {tun} icmp type redirect counter drop",
        f"    iifname {tun} icmpv6 type nd-redirect counter drop",
    ]
    if config.protected_ifname:
        # Only GRE that came through IPsec reaches the tunnel: kernel ESP leaves a
        # secpath, userspace ESP (libipsec) arrives through protected_ifname.
        pif = _nft_str(config.protected_ifname)
        lines.append(
            f"    meta l4proto gre ip daddr {local}{gre} iifname != {pif}"
            " meta secpath missing counter drop"
        )
    lines += [
        f"    meta l4proto gre ip daddr {local}{gre} update @rx4 {{ ip saddr }}",
        "  }",
    ]
    if config.role is Role.HUB:
        hp = f'log prefix "{PREFIX_HAIRPIN}" group {group} snaplen {HAIRPIN_HEAD}'
        limit = "limit rate 1/second burst 1 packets"
        lines += [
            "  set hp4 { type ipv4_addr . ipv4_addr; size 65535; flags dynamic,timeout;"
            " timeout 10s; }",
            "  set hp6 { type ipv6_addr . ipv6_addr; size 65535; flags dynamic,timeout;"
            " timeout 10s; }",
            "  chain c_fwd {",
            "    type filter hook forward priority 0; policy accept;",
            f"    iifname {tun} oifname {tun} meta nfproto ipv4"
            f" add @hp4 {{ ip saddr . ip daddr {limit} }} {hp}",
            f"    iifname {tun} oifname {tun} meta nfproto ipv6"
            f" add @hp6 {{ ip6 saddr . ip6 daddr {limit} }} {hp}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def create_table(config: DataPlaneConfig, group: int) -> None:
    """Create our table with ``nft``; StaleStateError when it exists already."""
    table = table_name(config.tunnel)
    # `create table` fails when the table exists: a crashed instance's leftover.
    script = f"create table inet {table}\n" + nft_ruleset(config, group)
    try:
        done = subprocess.run(
            ["nft", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataPlaneError(f"nft table inet {table}: {exc}") from exc
    if done.returncode != 0:
        if "File exists" in done.stderr:
            raise StaleStateError(
                f"nftables table inet {table} already exists; run cleanup_stale() first"
            )
        raise DataPlaneError(f"nft table inet {table}: {done.stderr.strip()}")


def nft_table_exists(table: str) -> bool:
    """Whether ``inet <table>`` exists (nf_tables over netlink; no ``nft`` run)."""
    nl = RequestSocket(NETLINK_NETFILTER)
    seq = nl.next_seq()
    return _table_request(nl, nft_get_table_request(seq, table), seq, "look up", table)


def nft_delete_table(table: str) -> bool:
    """Delete ``inet <table>`` in one nf_tables batch; False when it did not exist."""
    nl = RequestSocket(NETLINK_NETFILTER)
    begin, seq, end = nl.next_seq(), nl.next_seq(), nl.next_seq()
    batch = nft_delete_table_batch(begin, seq, end, table)
    return _table_request(nl, batch, seq, "delete", table)


def _table_request(nl: RequestSocket, message: bytes, seq: int, doing: str, table: str) -> bool:
    """Send ``message`` about ``table`` on ``nl`` and close it; False: no such table."""
    try:
        nl.request(message, seq=seq)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise DataPlaneError(f"{doing} nftables table inet {table}: {exc}") from exc
    finally:
        nl.close()
    return True


def read_set_counters(table: str, name: str) -> dict[bytes, tuple[int, int]]:
    """{key: (packets, bytes)} of set ``name`` in ``inet <table>``, over netlink."""
    nl = RequestSocket(NETLINK_NETFILTER)
    out: dict[bytes, tuple[int, int]] = {}
    try:
        for buf in nl.dump(set_elements_dump_request(nl.next_seq(), table, name)):
            for key, packets, octets in parse_set_counters(buf):
                out[key] = (packets, octets)
    finally:
        nl.close()
    return out
