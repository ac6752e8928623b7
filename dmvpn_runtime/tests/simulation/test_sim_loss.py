"""Registrations survive a lossy transport."""

from __future__ import annotations

import itertools

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import PacketType


def test_five_percent_loss_keeps_every_registration() -> None:
    net = Net(seed=2024, loss=0.05)
    (hub,), spokes = star(net, spokes=20, spoke_kw={"holdtime": 120})
    expected = {s.overlay() for s in spokes}
    lapses = []
    step = 1.0
    t = 0.0
    while t < 3600:  # 30 refresh cycles per spoke
        t += step
        net.run(until=t)
        if t > 30 and hub.registered_clients() != expected:
            lapses.append((t, expected - hub.registered_clients()))
    assert not lapses, lapses[:3]
    assert net.lost_to_loss > 100  # the loss was real
    assert "registration_down" not in hub.event_kinds()
    for spoke in spokes:
        assert "registration_down" not in spoke.event_kinds()
    # Retransmissions did the work: more requests than the refresh schedule alone needs.
    requests = [w for w in net.wire if w.packet.type == PacketType.REGISTRATION_REQUEST]
    assert len(requests) > 20 * 3600 / 40


def test_resolution_retries_with_the_same_request_id_until_answered() -> None:
    net = Net(seed=99)
    (_hub,), (s1, _s2) = star(net, spokes=2, spoke_kw={"holdtime": 120})
    net.run(until=5)
    net.partition("hub1", "s2")  # the forwarded request is lost for a while
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=10.5)
    net.heal("hub1", "s2")
    net.run(until=20)
    assert s1.shortcut_routes()
    asked = [
        w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    gaps = [round(b.time - a.time, 2) for a, b in itertools.pairwise(asked)]
    assert gaps == [1.0, 2.0, 4.0]  # 1 s doubling (up to 7 s)
    assert len({w.packet.request_id for w in asked}) == 1  # RFC 2332 §5.2.0.1
