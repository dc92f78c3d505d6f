"""HealthMonitor on a fake clock: hysteresis, what counts as a miss, overrides, table reloads,
probe spreading. No transaction layer here (see test_health_b2bua.py for the wiring)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from municipality_map import Centre, Service
from router.health import (
    Availability,
    CentreOverride,
    HealthMonitor,
    HealthSettings,
    OverrideState,
    ProbeOutcome,
    ProbeState,
    build_options,
    probe_phase,
)

A = "sip:amk-a@127.0.0.1:5101"
A2 = "sip:amk-a2@127.0.0.1:5111"
B = "sip:amk-b@127.0.0.1:5102"
C = "sip:amk-c@127.0.0.1:5103"


def centre(centre_id: str, *uris: str) -> Centre:
    return Centre(centre_id=centre_id, name=centre_id, service=Service.AMK, uris=uris,
                  backup_centre_id=None)


@dataclass
class Recorder:
    """A HealthObserver that keeps what it was told."""

    changes: list[tuple[str, str, Availability, bool]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    probes: list[tuple[str, str, ProbeOutcome, float | None]] = field(default_factory=list)

    def destination_changed(self, centre: str, uri: str, availability: Availability,
                            reachable: bool) -> None:
        self.changes.append((centre, uri, availability, reachable))

    def destination_removed(self, centre: str, uri: str) -> None:
        self.removed.append((centre, uri))

    def probe_finished(self, centre: str, uri: str, outcome: ProbeOutcome,
                       latency_s: float | None) -> None:
        self.probes.append((centre, uri, outcome, latency_s))


@dataclass
class Prober:
    """Drives a monitor like the dispatcher does: sends what is due, answers (or not)."""

    monitor: HealthMonitor
    now: float = 100.0
    answers: dict[str, int | None] = field(default_factory=dict)
    """URI -> status it answers with at once; None (or absent): never answers."""
    sent: list[tuple[float, str]] = field(default_factory=list)
    live: dict[str, str] = field(default_factory=dict)
    """URI -> probe transaction the layer is still retransmitting (no Timer F here)."""
    _tx: itertools.count[int] = field(default_factory=itertools.count)

    def run_until(self, end: float) -> None:
        while (due := self.monitor.next_deadline()) is not None and due <= end:
            self.now = max(self.now, due)
            for uri in self.monitor.due_probes(self.now):
                tx = f"c|probe{next(self._tx)}"
                self.sent.append((self.now, uri))
                self.monitor.probe_sent(uri, tx, self.now)
                self.live[uri] = tx
            # A centre that answers now answers the (re)transmission of its live transaction.
            for uri, tx in list(self.live.items()):
                status = self.answers.get(uri)
                if status is not None:
                    del self.live[uri]
                    self.monitor.on_response(tx, status, self.now + 0.01)
        self.now = end


def make(*centres: Centre, observer: Recorder | None = None, **settings: object) -> Prober:
    monitor = HealthMonitor(HealthSettings(**settings), observer)  # type: ignore[arg-type]
    prober = Prober(monitor)
    monitor.start(centres, prober.now)
    return prober


SETTINGS = {"interval_s": 5.0, "timeout_s": 2.0, "down_after": 2, "up_after": 2}


def test_unknown_destination_is_usable_until_probes_say_otherwise() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    assert p.monitor.availability(A) is Availability.UNKNOWN
    assert p.monitor.is_up(A)
    assert p.monitor.is_up("sip:not-in-table@127.0.0.1")


def test_down_after_n_consecutive_timeouts_and_not_before() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    first = p.monitor.next_deadline()
    assert first is not None and 100.0 <= first < 105.0
    p.run_until(first + 2.0)  # one probe sent, its 2 s passed: one miss
    assert p.monitor.is_up(A)
    assert p.monitor.statuses()[0].consecutive_misses == 1
    p.run_until(first + 5.0 + 2.0)  # second probe timed out
    assert not p.monitor.is_up(A)
    assert p.monitor.availability(A) is Availability.DOWN
    assert [t for t, _ in p.sent] == [first], "the unanswered OPTIONS stands for slot two"


def test_back_up_after_m_consecutive_successes() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    p.run_until(120.0)
    assert not p.monitor.is_up(A)
    p.answers[A] = 200
    first_answer = p.now
    while p.monitor.statuses()[0].consecutive_successes < 1:
        p.run_until(p.now + 0.25)
    assert not p.monitor.is_up(A), "one success must not bring it back (up_after=2)"
    p.run_until(first_answer + 10.0)
    assert p.monitor.availability(A) is Availability.UP
    status = p.monitor.statuses()[0]
    assert status.last_latency_s == pytest.approx(0.01)  # from a fresh probe
    assert status.since > first_answer


def test_a_single_miss_between_successes_does_not_take_it_down() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    p.answers[A] = 200
    p.run_until(120.0)
    assert p.monitor.availability(A) is Availability.UP
    p.answers[A] = None
    next_probe = p.monitor.next_deadline()
    assert next_probe is not None
    p.run_until(next_probe + 2.0)  # one miss
    p.answers[A] = 200
    p.run_until(next_probe + 5.0)  # then a success
    assert p.monitor.availability(A) is Availability.UP
    assert p.monitor.statuses()[0].consecutive_misses == 0


@pytest.mark.parametrize(("status", "counts_as"), [
    (200, ProbeOutcome.OK), (404, ProbeOutcome.OK), (405, ProbeOutcome.OK),
    (486, ProbeOutcome.OK), (503, ProbeOutcome.UNAVAILABLE), (408, ProbeOutcome.UNAVAILABLE),
])
def test_any_final_response_but_503_and_408_proves_reachability(
        status: int, counts_as: ProbeOutcome) -> None:
    recorder = Recorder()
    p = make(centre("AMK-A", A), observer=recorder, **SETTINGS)
    p.answers[A] = status
    p.run_until(120.0)
    assert {outcome for _, _, outcome, _ in recorder.probes} == {counts_as}
    assert p.monitor.is_up(A) is (counts_as is ProbeOutcome.OK)


def test_provisional_response_does_not_settle_a_probe() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    due = p.monitor.next_deadline()
    assert due is not None
    assert p.monitor.due_probes(due) == [A]
    p.monitor.probe_sent(A, "c|x", due)
    p.monitor.on_response("c|x", 100, due + 0.1)
    assert p.monitor.owns("c|x")
    assert p.monitor.next_deadline() == pytest.approx(due + 2.0)  # its timeout
    p.monitor.due_probes(due + 2.0)
    assert p.monitor.statuses()[0].last_outcome is ProbeOutcome.TIMEOUT
    assert p.monitor.owns("c|x"), "still retransmitted by the layer: an answer still counts"
    p.monitor.on_response("c|x", 200, due + 2.5)
    status = p.monitor.statuses()[0]
    assert status.consecutive_successes == 1 and status.last_latency_s is None
    assert not p.monitor.owns("c|x")


def test_a_lingering_transaction_stands_for_the_next_slots_until_it_ends() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    first = p.monitor.next_deadline()
    assert first is not None
    assert p.monitor.due_probes(first) == [A]
    p.monitor.probe_sent(A, "c|1", first)
    assert p.monitor.due_probes(first + 2.0) == []  # window closed: miss 1, c|1 lingers
    assert p.monitor.due_probes(first + 5.0) == [], "no second transaction while c|1 lives"
    assert p.monitor.next_deadline() == pytest.approx(first + 7.0)
    p.monitor.due_probes(first + 7.0)  # the reused window closes: miss 2
    assert not p.monitor.is_up(A)
    p.monitor.on_failure("c|1", ProbeOutcome.TIMEOUT, first + 32.0)  # Timer F, between slots
    assert p.monitor.statuses()[0].consecutive_misses == 2, "its misses were counted already"
    assert p.monitor.due_probes(first + 35.0) == [A], "a fresh OPTIONS once it ended"
    p.monitor.probe_sent(A, "c|2", first + 35.0)
    p.monitor.on_failure("c|2", ProbeOutcome.TRANSPORT_ERROR, first + 35.1)  # inside a window
    assert p.monitor.statuses()[0].consecutive_misses == 3


def test_transport_failure_is_a_miss_at_once() -> None:
    p = make(centre("AMK-A", A), down_after=1, up_after=1, interval_s=5.0, timeout_s=2.0)
    due = p.monitor.next_deadline()
    assert due is not None
    p.monitor.due_probes(due)
    p.monitor.probe_sent(A, "c|t", due)
    p.monitor.on_failure("c|t", ProbeOutcome.TRANSPORT_ERROR, due + 0.001)
    assert p.monitor.availability(A) is Availability.DOWN


def test_live_call_failures_count_as_misses() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    p.monitor.mark_failed(A, "no provisional response in 2 s", 101.0)
    assert p.monitor.is_up(A)
    p.monitor.mark_failed(A, "transport error", 101.5)
    assert not p.monitor.is_up(A)
    p.monitor.mark_failed("sip:elsewhere@127.0.0.1", "ignored", 102.0)  # not in the table


def test_probing_disabled_sends_nothing_and_ignores_live_failures() -> None:
    p = make(centre("AMK-A", A), enabled=False)
    assert p.monitor.next_deadline() is None
    assert p.monitor.due_probes(1e9) == []
    for _ in range(5):
        p.monitor.mark_failed(A, "x", 101.0)
    assert p.monitor.is_up(A)
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.DRAIN)])
    assert not p.monitor.is_up(A), "overrides apply with probing off"


def test_overrides_win_over_probes_and_probing_goes_on() -> None:
    p = make(centre("AMK-A", A, A2), centre("AMK-B", B), **SETTINGS)
    p.answers.update({A: 200, A2: 200, B: 200})
    p.run_until(120.0)
    assert all(p.monitor.is_up(u) for u in (A, A2, B))
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.DRAIN, "maintenance")])
    assert p.monitor.availability(A) is Availability.DRAINED
    assert p.monitor.availability(A2) is Availability.DRAINED
    assert p.monitor.is_up(B)
    sent_before = len(p.sent)
    p.run_until(130.0)
    assert {u for _, u in p.sent[sent_before:]} == {A, A2, B}, "a drained centre is still probed"
    p.monitor.set_overrides([CentreOverride("AMK-B", OverrideState.DOWN)])
    assert p.monitor.is_up(A), "an override gone from the database is cleared"
    assert p.monitor.availability(B) is Availability.FORCED_DOWN
    p.monitor.set_overrides([CentreOverride("AMK-B", OverrideState.AUTO)])
    assert p.monitor.is_up(B)
    assert p.monitor.centre_override("AMK-B") is None


def test_forced_up_is_not_a_thing_auto_follows_probes() -> None:
    p = make(centre("AMK-A", A), **SETTINGS)
    p.run_until(120.0)
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.AUTO)])
    assert not p.monitor.is_up(A)


def test_a_uri_shared_by_two_centres_takes_the_strictest_override() -> None:
    p = make(centre("AMK-A", A), centre("AMK-SHARED", A, B), **SETTINGS)
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.DRAIN),
                             CentreOverride("AMK-SHARED", OverrideState.DOWN)])
    assert p.monitor.availability(A) is Availability.FORCED_DOWN
    assert p.monitor.availability(B) is Availability.FORCED_DOWN
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.DRAIN)])
    assert p.monitor.availability(A) is Availability.DRAINED
    assert p.monitor.is_up(B)


def test_state_survives_a_table_reload_for_uris_that_remain() -> None:
    recorder = Recorder()
    p = make(centre("AMK-A", A), centre("AMK-A2", A2), centre("AMK-B", B), observer=recorder,
             **SETTINGS)
    p.answers.update({A2: 200, B: 200})
    p.run_until(120.0)
    assert not p.monitor.is_up(A) and p.monitor.availability(A2) is Availability.UP
    last_a2 = max(t for t, u in p.sent if u == A2)
    # New table: AMK-A and AMK-A2 kept (same URIs), AMK-B gone, AMK-C new.
    p.monitor.set_destinations([centre("AMK-A", A), centre("AMK-A2", A2), centre("AMK-C", C)],
                               p.now)
    assert not p.monitor.is_up(A), "down before the reload, down after it"
    assert p.monitor.statuses()[0].consecutive_misses >= 2
    assert p.monitor.availability(A2) is Availability.UP
    assert p.monitor.availability(C) is Availability.UNKNOWN
    assert p.monitor.availability(B) is Availability.UNKNOWN  # forgotten: no longer known
    assert ("AMK-B", B) in recorder.removed
    assert [s.uri for s in p.monitor.statuses()] == [A, A2, C]
    sent_before = len(p.sent)
    p.run_until(p.now + 5.0)
    assert {u for _, u in p.sent[sent_before:]} == {A2, C}, "A's OPTIONS still lingers"
    assert [t for t, u in p.sent[sent_before:] if u == A2] == [last_a2 + 5.0], "same schedule"


def test_probes_of_many_destinations_are_spread_over_the_interval() -> None:
    uris = [f"sip:amk-{n}@127.0.0.1:{5100 + n}" for n in range(40)]
    p = make(*(centre(f"AMK-{n}", u) for n, u in enumerate(uris)), **SETTINGS)
    p.run_until(100.0 + 5.0)
    times = sorted(t for t, _ in p.sent)
    assert len(times) == 40 and {u for _, u in p.sent} == set(uris)
    # No burst: at most a quarter of them in any one second (uniform would be 8 per second).
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 14
    # Deterministic: the same URIs get the same phases in another monitor.
    q = make(*(centre(f"AMK-{n}", u) for n, u in enumerate(uris)), **SETTINGS)
    q.run_until(105.0)
    assert q.sent == p.sent
    assert probe_phase(uris[0], 5.0) != probe_phase(uris[1], 5.0)


def test_each_uri_keeps_its_phase_and_a_stall_does_not_cause_a_burst() -> None:
    p = make(centre("AMK-A", A), centre("AMK-B", B), **SETTINGS)
    p.answers.update({A: 200, B: 200})
    p.run_until(100.0 + 20.0)
    per_uri = {u: [t for t, v in p.sent if v == u] for u in (A, B)}
    for times in per_uri.values():
        assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [5.0] * (len(times) - 1)
    # The loop stalls for 60 s: one probe each when it wakes, not twelve.
    sent_before = len(p.sent)
    stalled = p.now + 60.0
    assert sorted(p.monitor.due_probes(stalled)) == sorted([A, B])
    nxt = p.monitor.next_deadline()
    assert nxt is not None and stalled < nxt <= stalled + 5.0
    assert len(p.sent) == sent_before


def test_observer_sees_transitions_once() -> None:
    recorder = Recorder()
    p = make(centre("AMK-A", A), observer=recorder, **SETTINGS)
    assert recorder.changes == [("AMK-A", A, Availability.UNKNOWN, True)]
    p.run_until(120.0)
    p.answers[A] = 200
    p.run_until(140.0)
    p.monitor.set_overrides([CentreOverride("AMK-A", OverrideState.DRAIN)])
    assert [c[2:] for c in recorder.changes] == [
        (Availability.UNKNOWN, True), (Availability.DOWN, False), (Availability.UP, True),
        (Availability.DRAINED, True),
    ]
    assert any(latency is not None for *_, latency in recorder.probes)


def test_timeout_longer_than_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        HealthSettings(interval_s=1.0, timeout_s=2.0)


def test_options_probe_is_a_proper_out_of_dialog_request() -> None:
    probe = build_options(A, via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport",
                          from_host="127.0.0.1", call_id="abc@127.0.0.1", from_tag="t1",
                          max_forwards=70, user_agent="nodrute/test")
    assert probe.method == "OPTIONS" and probe.uri == A
    assert probe.headers.get("Max-Forwards") == "70"
    assert probe.headers.get("CSeq") == "1 OPTIONS"
    assert probe.headers.get("To") == f"<{A}>"
    assert "tag=t1" in (probe.headers.get("From") or "")
    assert ProbeState.UNKNOWN.value == "unknown"


def test_a_live_call_answered_counts_as_a_success_and_is_labelled_as_such() -> None:
    recorder = Recorder()
    p = make(centre("AMK-A", A), observer=recorder, **SETTINGS)
    p.run_until(120.0)
    assert not p.monitor.is_up(A)
    p.monitor.mark_reachable(A, 120.5)
    assert not p.monitor.is_up(A)
    p.monitor.mark_reachable(A, 121.0)
    assert p.monitor.availability(A) is Availability.UP
    assert [o for *_, o, _ in recorder.probes][-2:] == [ProbeOutcome.CALL_RESPONSE] * 2
