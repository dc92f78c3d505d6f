"""Who gets parsed at all: trunks and centres always, strangers rate-limited, blocked, refused.

Fake clock throughout: ``now`` is passed in, nothing sleeps."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from router.admission import AdmissionPolicy, SourceLimiter, Verdict, centre_addresses
from router.config import NodruteSettings, SecuritySettings, TrunkSettings
from sip.transport import Admission

TRUNK = ("192.0.2.10", 5060)
STRANGER = ("203.0.113.7", 5070)
CENTRE = ("127.0.0.1", 5101)  # the sample table's centres are on 127.0.0.1

OPTIONS = (b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5070;"
           b"branch=z9hG4bK-1\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\n"
           b"To: <sip:100@1.1.1.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n"
           b"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
RESPONSE = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\r\n"


def limiter(**kwargs: float) -> SourceLimiter:
    args: dict[str, float] = dict(rate_pps=10.0, burst=20, block_after_s=5.0, block_s=60.0,
                                  max_sources=100)
    args.update(kwargs)
    return SourceLimiter(args["rate_pps"], int(args["burst"]), args["block_after_s"],
                         args["block_s"], int(args["max_sources"]))


def send(lim: SourceLimiter, source: str, pps: float, seconds: float,
         start: float) -> list[tuple[float, Verdict]]:
    """``source`` sending at ``pps`` from ``start`` for ``seconds``: (time, verdict) each."""
    count = round(pps * seconds)
    return [(start + i / pps, lim.check(source, start + i / pps)) for i in range(count)]


# ----------------------------------------------------------------- the token bucket


def test_a_burst_passes_then_the_rate_holds() -> None:
    lim = limiter()
    verdicts = [lim.check("a", 0.0) for _ in range(25)]
    assert verdicts[:20] == [Verdict.PASS] * 20
    assert verdicts[20:] == [Verdict.LIMITED] * 5
    assert lim.check("a", 0.1) is Verdict.PASS  # 0.1 s at 10/s refills one token
    assert lim.check("a", 0.1) is Verdict.LIMITED


def test_a_source_within_its_rate_is_never_limited() -> None:
    lim = limiter(block_after_s=1.0)
    verdicts = send(lim, "a", pps=9.5, seconds=120, start=0.0)
    assert {v for _, v in verdicts} == {Verdict.PASS}
    assert lim.blocks == 0


def test_over_the_rate_for_block_after_s_blocks_for_block_s_then_unblocks() -> None:
    lim = limiter(block_after_s=5.0, block_s=60.0)
    verdicts = send(lim, "a", pps=100, seconds=10, start=0.0)
    first_limited = next(t for t, v in verdicts if v is Verdict.LIMITED)
    first_blocked = next(t for t, v in verdicts if v is Verdict.BLOCKED)
    assert first_limited == pytest.approx(0.2, abs=0.02)  # 20 burst at 100/s, 10/s refill
    assert first_blocked == pytest.approx(first_limited + 5.0, abs=0.02)
    assert all(v is Verdict.BLOCKED for t, v in verdicts if t >= first_blocked)
    assert lim.blocks == 1
    assert lim.is_blocked("a", first_blocked + 59.9)
    # Still blocked just before the block runs out, even though it went quiet
    assert lim.check("a", first_blocked + 59.9) is Verdict.BLOCKED
    assert lim.check("a", first_blocked + 60.0) is Verdict.PASS
    assert not lim.is_blocked("a", first_blocked + 60.0)
    assert lim.check("b", first_blocked) is Verdict.PASS  # others were never affected


def test_a_source_that_refills_its_bucket_starts_a_new_streak() -> None:
    lim = limiter(block_after_s=5.0)
    # Over the rate for 3 s, quiet for 3 s (bucket full again), over for 3 s: never 5 s in a row
    a = send(lim, "a", pps=50, seconds=3, start=0.0)
    b = send(lim, "a", pps=50, seconds=3, start=6.0)
    assert Verdict.LIMITED in {v for _, v in a} | {v for _, v in b}
    assert Verdict.BLOCKED not in {v for _, v in a} | {v for _, v in b}
    c = send(lim, "a", pps=50, seconds=6, start=12.0)
    assert Verdict.BLOCKED in {v for _, v in c}


def test_the_source_table_is_bounded_least_recently_heard_forgotten_first() -> None:
    lim = limiter(max_sources=16, block_after_s=0.0)
    for _ in range(25):  # "blocked" goes over its rate at once and is blocked
        lim.check("blocked", 0.0)
    assert lim.is_blocked("blocked", 1.0)
    for i in range(15):
        lim.check(f"10.0.0.{i}", 1.0)
    assert len(lim) == 16
    lim.check("blocked", 2.0)  # heard from again: most recent now
    for i in range(15, 30):
        lim.check(f"10.0.0.{i}", 3.0)
    assert len(lim) == 16
    assert lim.is_blocked("blocked", 4.0)
    assert lim.evicted == 15
    for i in range(100_000):
        lim.check(f"spoofed-{i}", 5.0)
    assert len(lim) == 16  # a flood of fresh addresses never grows the table


# ----------------------------------------------------------------- the policy


def fixed(value: NodruteSettings) -> Callable[[], NodruteSettings]:
    return lambda: value


def settings(**security: object) -> NodruteSettings:
    return NodruteSettings(
        trunks=[TrunkSettings(name="carrier", sources=["192.0.2.0/28"])],
        security=SecuritySettings(**security),
    )


def test_trunk_and_centre_sources_are_admitted_however_much_they_send(
        snapshot: RoutingSnapshot) -> None:
    policy = AdmissionPolicy(fixed(settings()), lambda: snapshot)
    assert all(policy.admit(OPTIONS, TRUNK, "UDP", 0.0) is Admission.ADMIT
               for _ in range(10_000))
    assert all(policy.admit(OPTIONS, CENTRE, "UDP", 0.0) is Admission.ADMIT
               for _ in range(1_000))
    assert len(policy.limiter) == 0
    assert not policy.rejected


def test_a_strangers_requests_are_dropped_and_counted_by_reason(
        snapshot: RoutingSnapshot) -> None:
    policy = AdmissionPolicy(fixed(settings(rate_pps=10.0, burst=20, block_after_s=1.0)),
                             lambda: snapshot)
    verdicts = [policy.admit(OPTIONS, STRANGER, "UDP", i / 1000) for i in range(3000)]
    assert set(verdicts) == {Admission.DROP}
    assert policy.rejected["unknown_source"] == 20 + 10  # burst, then 10/s for ~1 s
    assert policy.rejected["rate_limited"] > 0
    assert policy.rejected["blocked"] > 0
    assert sum(policy.rejected.values()) == 3000
    assert policy.limiter.is_blocked(STRANGER[0], 3.0)


def test_unknown_source_403_rejects_requests_but_admits_responses_in_rate(
        snapshot: RoutingSnapshot) -> None:
    seen: list[str] = []
    policy = AdmissionPolicy(fixed(settings(unknown_source="403")), lambda: snapshot,
                             on_reject=seen.append)
    assert policy.admit(OPTIONS, STRANGER, "UDP", 0.0) is Admission.REJECT
    assert policy.admit(b"\x00\xff random bytes", STRANGER, "UDP", 0.0) is Admission.REJECT
    assert policy.admit(RESPONSE, STRANGER, "UDP", 0.0) is Admission.ADMIT
    assert seen == ["unknown_source", "unknown_source"]


def test_trusted_sources_are_served_like_trunks(snapshot: RoutingSnapshot) -> None:
    policy = AdmissionPolicy(fixed(settings(trusted_sources=["203.0.113.0/24"])),
                             lambda: snapshot)
    assert policy.admit(OPTIONS, STRANGER, "UDP", 0.0) is Admission.ADMIT
    assert policy.admit(OPTIONS, ("198.51.100.1", 5060), "UDP", 0.0) is Admission.DROP


def test_a_reload_applies_at_the_next_packet(snapshot: RoutingSnapshot) -> None:
    current = [settings()]
    policy = AdmissionPolicy(lambda: current[0], lambda: snapshot)
    assert policy.admit(OPTIONS, STRANGER, "UDP", 0.0) is Admission.DROP
    current[0] = NodruteSettings(trunks=[
        TrunkSettings(name="carrier", sources=["192.0.2.0/28"]),
        TrunkSettings(name="new-carrier", sources=["203.0.113.0/29"]),
    ])
    assert policy.admit(OPTIONS, STRANGER, "UDP", 1.0) is Admission.ADMIT
    assert policy.admit(OPTIONS, TRUNK, "UDP", 1.0) is Admission.ADMIT


def test_a_table_switch_trusts_the_new_tables_centres(snapshot: RoutingSnapshot,
                                                      tmp_path: Path) -> None:
    table = tmp_path / "moved"
    shutil.copytree(default_table_dir(), table)
    centres = table / "centres.csv"
    centres.write_text(centres.read_text(encoding="utf-8-sig").replace("127.0.0.1",
                                                                      "198.51.100.20"))
    current = [snapshot]
    policy = AdmissionPolicy(fixed(settings()), lambda: current[0])
    assert policy.admit(OPTIONS, CENTRE, "UDP", 0.0) is Admission.ADMIT
    current[0] = load_snapshot(table)
    assert policy.admit(OPTIONS, CENTRE, "UDP", 1.0) is Admission.DROP
    assert policy.admit(OPTIONS, ("198.51.100.20", 5101), "UDP", 1.0) is Admission.ADMIT


def test_centre_addresses_come_from_the_uris_of_the_table(snapshot: RoutingSnapshot) -> None:
    hosts = {uri.split("@", 1)[1].split(":", 1)[0]
             for centre in snapshot.centres.values() for uri in centre.uris}
    assert centre_addresses(snapshot) == frozenset(hosts)


def test_an_unknown_source_is_logged_by_address_at_most_once_per_interval(
        snapshot: RoutingSnapshot, caplog: pytest.LogCaptureFixture) -> None:
    policy = AdmissionPolicy(fixed(settings(log_interval_s=60.0, rate_pps=1000.0,
                                                    burst=1000)), lambda: snapshot)
    with caplog.at_level(logging.WARNING, logger="nodrute.admission"):
        for i in range(500):
            policy.admit(OPTIONS, STRANGER, "UDP", i / 100)  # 5 s
        policy.admit(OPTIONS, ("198.51.100.9", 5060), "UDP", 5.0)
        policy.admit(OPTIONS, STRANGER, "UDP", 61.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "203.0.113.7" in lines[0] and "OPTIONS sip:100@198.51.100.1" in lines[0]
    assert "198.51.100.9" in lines[1]
    assert "203.0.113.7" in lines[2]


def test_blocking_is_logged_naming_the_source(
        snapshot: RoutingSnapshot, caplog: pytest.LogCaptureFixture) -> None:
    policy = AdmissionPolicy(fixed(settings(block_after_s=0.5, block_s=30.0)),
                             lambda: snapshot)
    with caplog.at_level(logging.WARNING, logger="nodrute.admission"):
        for i in range(2000):
            policy.admit(b"garbage", STRANGER, "UDP", i / 1000)
    blocked = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(blocked) == 1
    assert "203.0.113.7" in blocked[0] and "30 s" in blocked[0]


def test_centres_named_by_host_are_warned_about(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    table = tmp_path / "named"
    shutil.copytree(default_table_dir(), table)
    centres = table / "centres.csv"
    text = centres.read_text(encoding="utf-8-sig")
    centres.write_text(text.replace("amk-oslo@127.0.0.1", "amk-oslo@amk-oslo.example", 1))
    with caplog.at_level(logging.WARNING, logger="nodrute.admission"):
        addresses = centre_addresses(load_snapshot(table))
    assert "127.0.0.1" in addresses and "amk-oslo.example" not in addresses
    assert "AMK-OSLO (amk-oslo.example)" in caplog.text
    assert "trusted_sources" in caplog.text


def test_refusals_reach_the_rejected_metric_by_reason(snapshot: RoutingSnapshot) -> None:
    from router.metrics import NodeMetrics

    metrics = NodeMetrics()
    policy = AdmissionPolicy(fixed(settings(burst=2, rate_pps=1.0)), lambda: snapshot,
                             on_reject=metrics.note_rejected)
    for _ in range(5):
        policy.admit(OPTIONS, STRANGER, "UDP", 0.0)
    value = metrics.registry.get_sample_value
    assert value("nodrute_rejected_total", {"reason": "unknown_source"}) == 2
    assert value("nodrute_rejected_total", {"reason": "rate_limited"}) == 3
    metrics.track_blocked_sources(lambda: policy.limiter.blocked_count(0.0))
    assert value("nodrute_blocked_sources") == 0


def test_a_changed_security_section_starts_a_fresh_limiter(snapshot: RoutingSnapshot) -> None:
    current = [settings(block_after_s=0.0)]
    policy = AdmissionPolicy(lambda: current[0], lambda: snapshot)
    for _ in range(30):
        policy.admit(OPTIONS, STRANGER, "UDP", 0.0)
    assert policy.limiter.is_blocked(STRANGER[0], 1.0)
    current[0] = settings(block_after_s=0.0, rate_pps=1000.0, burst=1000)
    assert policy.admit(RESPONSE, STRANGER, "UDP", 1.0) is Admission.ADMIT
    assert policy.limiter.rate_pps == 1000.0
