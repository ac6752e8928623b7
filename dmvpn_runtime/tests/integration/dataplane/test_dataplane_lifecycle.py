"""Userspace data plane, lifecycle: close() and crashes leave nothing, cleanup_stale()
removes only what is ours, and the factory's choices."""

from __future__ import annotations

import time

import pytest
from dataplane_netns import (
    TUNNEL,
    Topology,
    mesh_mappings,
    nbma4,
    overlay4,
    overlay6,
    spec,
)

from dmvpn_runtime.dataplane import (
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneUnavailable,
    NullSink,
    create,
    kernel,
)
from dmvpn_runtime.dataplane.base import ROUTE_PROTO
from dmvpn_runtime.dataplane.userspace.netlink import ALIAS

pytestmark = pytest.mark.integration

ROUTES = {"10.1.2.0/24": overlay4("s2"), "fd01:2::/64": overlay6("s2")}


def leftovers(topo: Topology, host: str) -> list[str]:
    """Anything of a data plane still present in ``host``: device, routes, neighbours,
    raw GRE sockets."""
    found = []
    if topo.sh(host, "ip", "link", "show", TUNNEL, check=False).returncode == 0:
        found.append(f"link {TUNNEL}")
    for family in ("-4", "-6"):
        routes = topo.sh(host, "ip", family, "route", "show", "proto", str(ROUTE_PROTO)).stdout
        found += [f"route {r}" for r in routes.splitlines()]
    neigh = topo.sh(host, "ip", "neigh", "show").stdout
    found += [f"neigh {n}" for n in neigh.splitlines() if "02:d8:" in n]
    raw = topo.sh(host, "ss", "-H", "-w", "-a").stdout
    found += [f"socket {s}" for s in raw.splitlines() if ":gre" in s or ":47" in s]
    return found


def test_close_leaves_nothing(topo: Topology, start) -> None:
    s1 = start("s1", mappings=mesh_mappings("s1", ("s2",)), routes=ROUTES)
    present = leftovers(topo, "s1")
    assert f"link {TUNNEL}" in present
    assert sum(p.startswith("route") for p in present) == 2
    assert sum(p.startswith("neigh") for p in present) == 2
    assert s1.stop() == 0  # end of stdin: the runner calls close()
    assert leftovers(topo, "s1") == []


def test_kill_9_leaves_nothing_and_a_restart_works(topo: Topology, start) -> None:
    s1 = start("s1", mappings=mesh_mappings("s1", ("s2",)), routes=ROUTES)
    s1.kill()
    # The TAP device is not persistent: it, its routes and neighbours die with the process.
    deadline = time.monotonic() + 3
    while leftovers(topo, "s1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(topo, "s1") == []
    again = start(
        "s1",
        raw_spec={
            **spec("s1", mappings=mesh_mappings("s1", ("s2",)), routes=ROUTES),
            "cleanup_stale": True,
        },
    )
    assert again.ready["removed"] == []
    assert len(leftovers(topo, "s1")) == 7  # link, 2 routes, 2 neighbours, 2 sockets


def test_cleanup_stale_removes_our_leftover_and_refuses_a_stranger(topo: Topology, start) -> None:
    # A persistent device with our marker: what an instance killed mid-open could leave.
    topo.sh("s1", "ip", "tuntap", "add", "dev", TUNNEL, "mode", "tap")
    try:
        topo.sh("s1", "ip", "link", "set", TUNNEL, "alias", ALIAS)
        blocked = start("s1", wait=False)
        with pytest.raises(DataPlaneError, match=r"StaleStateError.*exists"):
            blocked.wait_ready()
        # open() failed and closed: the device it did not create is still there.
        assert topo.sh("s1", "ip", "link", "show", TUNNEL, check=False).returncode == 0
        s1 = start("s1", raw_spec={**spec("s1"), "cleanup_stale": True})
        assert s1.ready["removed"] == [f"link {TUNNEL}"]
        s1.stop()
        assert leftovers(topo, "s1") == []

        # Somebody else's device with our name: refused, left alone.
        topo.sh("s1", "ip", "tuntap", "add", "dev", TUNNEL, "mode", "tap")
        stranger = start("s1", wait=False, raw_spec={**spec("s1"), "cleanup_stale": True})
        with pytest.raises(DataPlaneError, match="not ours"):
            stranger.wait_ready()
        assert topo.sh("s1", "ip", "link", "show", TUNNEL, check=False).returncode == 0
    finally:
        topo.sh("s1", "ip", "link", "del", TUNNEL, check=False)


def test_factory_auto_picks_userspace_without_ip_gre(topo: Topology, start) -> None:
    # The probe for ip_gre runs inside the namespace (it creates a link to find out).
    s1 = start("s1", raw_spec={**spec("s1"), "kind": "auto"})
    assert s1.ready["kind"] == "userspace"


def test_factory_kernel_needs_ip_gre_and_unknown_kinds_are_refused() -> None:
    config = DataPlaneConfig.from_dict(
        {"tunnel": TUNNEL, "local_nbma": [nbma4("s1")], "overlay": [f"{overlay4('s1')}/24"]}
    )
    if kernel.available(config):
        pytest.skip("this kernel has ip_gre")
    with pytest.raises(DataPlaneUnavailable):
        create("kernel", config, NullSink())
    with pytest.raises(ValueError, match="expected auto, userspace or kernel"):
        create("vpp", config, NullSink())
