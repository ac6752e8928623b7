"""Shortcut set-up time: first packet of a new spoke-to-spoke flow to the shortcut route
and to the first packet on the direct path, in a real lab of dmvpnd daemons.

``python -m dmvpn_runtime.bench shortcut [--pairs N] [--interval-ms I] [--max-packets M]
[--name LAB] [--nice N] [--check] [--json]`` (root; it builds a lab and always takes it
down, also on an error, Ctrl-C or SIGTERM).

The lab (``dmvpn_runtime.lab``, IPv4 only, userspace data plane, no IPsec): one hub and
the fewest spokes that give ``--pairs`` distinct unordered spoke pairs (7 spokes for 20),
each spoke with a LAN and a LAN host. Every sample uses a pair of spokes that has never
exchanged traffic, so no NHRP cache entry, shortcut or hairpin memory is left from an
earlier sample (a shortcut made by A -> B also serves B -> A, hence unordered pairs).
Before the first sample every spoke is registered, has its routes via the hub, and every
LAN host has pinged its spoke (ARP resolved on both LANs: ARP is not what is measured).

One process does all the measuring, with sockets it opened inside the lab's network
namespaces (``setns``), so every time stamp comes from the same clock
(``CLOCK_REALTIME``, shared by all namespaces):

- a UDP socket in the source LAN host sends one datagram (sample id, sequence number)
  every ``--interval-ms`` to the destination LAN host; t0 is the clock read just before
  the first ``sendto``;
- ``AF_PACKET`` sockets on the ``wan0`` of every spoke and of the hub, with kernel
  receive/transmit time stamps (``SO_TIMESTAMPNS``), see the GRE packets: the probe at
  the hub, the Traffic Indication the hub sends, the Resolution Request at the hub and
  forwarded to the destination spoke, the Resolution Reply at the source spoke, and the
  first probe arriving at the destination spoke's NBMA address with the source spoke's
  NBMA address as outer source (the direct path);
- an rtnetlink socket (routes and neighbours) in each spoke: the time the shortcut route
  (destination LAN via the destination spoke's overlay address) appears on the source
  spoke, and the NBMA mappings (the userspace data plane's neighbour entries) on both
  spokes. Netlink has no kernel time stamps: the clock is read when the message is
  received, netlink sockets first whenever the loop wakes (a few tenths of a ms late at
  most in practice: the route was always seen before the first direct packet left);
- a UDP socket in the destination LAN host receives the probes (kernel time stamps), so
  losses during the switch are counted and no ICMP errors flow back.

The sample ends 20 probes after the first direct one (or after ``--max-packets``) plus
50 ms for stragglers. Once the lab is up, the measuring process (not the daemons) runs
at ``--nice`` (-10), so that a busy machine delays the probes less; the largest gap
between probes up to the first direct one is reported (``max_send_gap_ms``).

Reported: ``shortcut_ms`` (t0 to the route on the source spoke) and ``direct_ms`` (t0
to the first direct packet at the destination spoke), their median and p95 (nearest
rank), and per sample the steps in between.

The package: ``lab_setup`` (the lab, the pairs, waiting until it is ready), ``rig``
(the sockets in the namespaces, the measuring loop, what a sample records), ``wire``
(parsing what the sockets see), ``results`` (the figures and the JSON object) and
``cli`` (``run`` and ``main``).
"""

from __future__ import annotations

from .cli import main, run

__all__ = ["main", "run"]
