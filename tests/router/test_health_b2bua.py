"""Centre probing through the real dispatcher and transaction layer (sans-IO, fake clock)."""

from __future__ import annotations

from b2bua_harness import Harness, Sent, make_harness, response_to

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from router.config import NodruteSettings
from router.health import Availability
from sip.message import Request

INTERVAL_S = 5.0
TIMEOUT_S = 2.0
DOWN_AFTER = 2
UP_AFTER = 2


def probing(snapshot: RoutingSnapshot) -> Harness:
    settings = NodruteSettings(health={"interval_s": INTERVAL_S, "timeout_s": TIMEOUT_S,
                                       "down_after": DOWN_AFTER, "up_after": UP_AFTER})
    h = make_harness(snapshot, settings)
    h.b2bua.start_health(h.now)
    return h


def options_sent(h: Harness) -> list[Sent]:
    return [s for s in h.take() if isinstance(s.message, Request)
            and s.message.method == "OPTIONS"]


def answer(h: Harness, probes: list[Sent], *, status: int = 200,
           silent: frozenset[str] = frozenset()) -> None:
    for sent in probes:
        assert isinstance(sent.message, Request)
        if sent.message.uri not in silent:
            h.feed(response_to(sent.message, status), source=sent.dest)


def all_uris(snapshot: RoutingSnapshot) -> set[str]:
    return {uri for c in snapshot.centres.values() for uri in c.uris}


def test_every_centre_uri_gets_one_options_per_interval(snapshot: RoutingSnapshot,
                                                        centre_uris: dict[str, str]) -> None:
    h = probing(snapshot)
    h.advance(INTERVAL_S)
    sent = options_sent(h)  # unanswered over UDP: retransmitted too (Timer E)
    probes = list({s.message.headers.get("Via"): s for s in sent}.values())
    assert len(probes) < len(sent)
    assert sorted(p.message.uri for p in probes if isinstance(p.message, Request)) == \
        sorted(all_uris(snapshot)), "one transaction per URI"
    oslo = next(p for p in probes if isinstance(p.message, Request)
                and p.message.uri == centre_uris["AMK-OSLO"])
    assert oslo.dest == ("127.0.0.1", 5110) and oslo.transport == "UDP"
    headers = oslo.message.headers
    assert headers.get("Max-Forwards") == "70"
    assert headers.get("CSeq") == "1 OPTIONS"
    assert "tag=" in (headers.get("From") or "") and "tag=" not in (headers.get("To") or "")
    assert (headers.get("Via") or "").startswith("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK")
    call_ids = {p.message.headers.get("Call-ID") for p in probes}
    assert len(call_ids) == len(probes)
    assert h.b2bua.counters["internal_errors"] == 0


def test_silent_centre_is_marked_down_within_interval_times_n_plus_timeout(
        snapshot: RoutingSnapshot, centre_uris: dict[str, str]) -> None:
    oslo = centre_uris["AMK-OSLO"]
    h = probing(snapshot)
    health = h.b2bua.health
    deadline = h.now + INTERVAL_S * DOWN_AFTER + TIMEOUT_S
    became_down_at = None
    while h.now < deadline + INTERVAL_S:
        h.advance(0.5)
        answer(h, options_sent(h), silent=frozenset({oslo}))
        if became_down_at is None and not health.is_up(oslo):
            became_down_at = h.now
    assert became_down_at is not None and became_down_at <= deadline
    assert health.availability(oslo) is Availability.DOWN
    others = all_uris(snapshot) - {oslo}
    assert all(health.availability(u) is Availability.UP for u in others)

    # It comes back: answered again, up after UP_AFTER probes (one interval each).
    back_by = h.now + INTERVAL_S * UP_AFTER
    while h.now < back_by:
        h.advance(0.5)
        answer(h, options_sent(h))
    assert health.availability(oslo) is Availability.UP
    assert h.b2bua.counters["internal_errors"] == 0


def test_a_503_answer_counts_as_a_miss(snapshot: RoutingSnapshot) -> None:
    h = probing(snapshot)
    for _ in range(DOWN_AFTER):
        h.advance(INTERVAL_S)
        answer(h, options_sent(h), status=503)
    assert not any(h.b2bua.health.is_up(u) for u in all_uris(snapshot))
    assert h.b2bua.active_calls == 0 and h.b2bua.counters["internal_errors"] == 0


def test_state_survives_a_table_switch(snapshot: RoutingSnapshot,
                                       centre_uris: dict[str, str]) -> None:
    oslo = centre_uris["AMK-OSLO"]
    h = probing(snapshot)
    for _ in range(DOWN_AFTER + 1):
        h.advance(INTERVAL_S)
        answer(h, options_sent(h), silent=frozenset({oslo}))
    assert not h.b2bua.health.is_up(oslo)
    reloaded = load_snapshot(default_table_dir())  # a new snapshot object, same centres
    assert reloaded is not snapshot
    h.b2bua.snapshot = reloaded  # what TableManager does on a switch
    h.advance(0.001)
    answer(h, options_sent(h), silent=frozenset({oslo}))
    assert not h.b2bua.health.is_up(oslo), "a reload must not forget a centre is down"
    assert h.b2bua.health.is_up(centre_uris["AMK-BERGEN"])


def test_without_start_health_nothing_is_probed(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot)
    h.advance(60.0)
    assert options_sent(h) == []
    assert h.b2bua.next_deadline() is None
