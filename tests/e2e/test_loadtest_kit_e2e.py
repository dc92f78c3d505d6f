"""The load-test kit keeps working: ``loadtests/bench.py`` end to end on a short low-rate run,
and each centre scenario produces the SIP outcome its header promises, seen by a SIPp caller
through the router (or SIPp to SIPp where the router has no part in it).

Not a speed test: the bench runs 2 s at 50 calls/s, far below what the machine carries, and
only its output format and zero failures are checked (speed is `make bench`'s business).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from router_process import TABLE_DIR, write_router_config
from sipp_harness import REPO, SippFleet, TracedMessage, free_port, write_injection_file
from table_fixtures import strip_fallbacks

sys.path.insert(0, str(REPO / "loadtests"))
from bench import write_bench_table
from bench_kamailio import kamailio_binary
from bench_processes import PortPool, Router, running_router

pytestmark = pytest.mark.e2e

BENCH = REPO / "loadtests" / "bench.py"
OSLO_CALL = [("113", "0301", "+4793000001")]  # 0301 -> AMK-OSLO in the sample table
RTDS = ("trying", "ringing", "answer")

RouterFactory = Callable[..., Router]


@pytest.fixture
def kit_router(tmp_path: Path) -> Iterator[RouterFactory]:
    """Start ``nodrute serve`` on a free port with a table copy in which AMK-OSLO listens on
    ``oslo_port`` (``lone``: with no backup or overflow centre); extra environment (e.g. a
    short T1) as keyword arguments."""
    stack: list[object] = []

    def start(oslo_port: int, *, lone: bool = False, **env: str) -> Router:
        from bench import BenchCentre

        workdir = tmp_path / f"router-{len(stack)}"
        workdir.mkdir()
        table = write_bench_table(
            TABLE_DIR, workdir / "table", [BenchCentre("AMK-OSLO", "113", oslo_port)]
        )
        if lone:  # AMK-OSLO is its own whole plan: its failures reach the caller
            strip_fallbacks(table)
        port = PortPool().take()
        config = write_router_config(workdir / "nodrute.toml", port, table)
        context = running_router(config, workdir, port, table, env)
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


def received_finals(messages: list[TracedMessage]) -> list[int]:
    return [
        m.status
        for m in messages
        if m.direction == "received" and m.status is not None and m.status >= 200
        and (m.header("cseq") or "").endswith("INVITE")
    ]  # fmt: skip


# --- the bench -------------------------------------------------------------------------------


def test_bench_short_run_writes_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rates", "50", "--step-s", "2", "--router-port", "0",
         "--held-rate", "50", "--held-hold-s", "1", "--out", str(out), "--only", "calls"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (json_path,) = out.glob("bench-*.json")
    (md_path,) = out.glob("bench-*.md")
    report = json.loads(json_path.read_text())

    env = report["environment"]
    assert env["cpu_count"] >= 1 and env["python"] and env["git_commit"]
    assert env["sipp_version"].startswith("SIPp")
    assert isinstance(env["router_uvloop"], bool)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:  # the router runs on uvloop where installed, and the bench sees it
        assert env["router_uvloop"] is True
    assert len(report["call_mix"]["rows"]) == 20 and len(report["call_mix"]["centres"]) == 4

    for target in ("router", "ceiling"):
        (step,) = report["steps"][target]
        assert step["rate"] == 50 and step["zero_failures"] is True, step
        assert (step["calls_offered"], step["successful_calls"], step["failed_calls"]) == (
            100, 100, 0,
        )  # fmt: skip
        assert 0 < step["achieved_cps"] <= 60
        for rtd in RTDS:
            resp = step["response_ms"][rtd]
            assert None not in (resp["p50"], resp["p95"], resp["p99"]), (rtd, resp)
            assert resp["p50"] <= resp["p95"] <= resp["p99"] <= resp["max"]
        (raw,) = report["raw"][target]
        assert raw["response_ms"]["answer"]["n"] == 100
        assert {"retransmissions_uac", "retransmissions_uas", "peak_concurrent_calls"} <= set(raw)
    router_figures = report["steps"]["router"][0]["router"]
    assert router_figures["router_rss_mib_peak"] > 10
    assert router_figures["router_cpu_percent_mean"] > 0
    assert report["steps"]["ceiling"][0]["router"] == {}
    assert report["highest_zero_failure_rate"] == {"router": 50, "ceiling": 50, "kamailio": None}

    held = report["held"]
    # 50 calls/s held 1 s: about 50 at once (SIPp samples once a second; half is plenty)
    assert held["failed_calls"] == 0 and held["peak_concurrent_calls"] >= 25
    assert held["rss_kib_per_held_call"] is not None

    markdown = md_path.read_text()
    assert "ok/s router/ceiling" in markdown and "| 50 |" in markdown
    assert "Held calls" in markdown
    assert markdown in result.stdout


@pytest.mark.skipif(
    kamailio_binary() is None, reason="Debian kamailio is not installed (optional peer baseline)"
)
def test_bench_kamailio_baseline_routes_by_municipality(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rates", "50", "--step-s", "1", "--router-port", "0",
         "--no-ceiling", "--no-held", "--with-kamailio", "--out", str(out), "--only", "calls"],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (json_path,) = out.glob("bench-*.json")
    report = json.loads(json_path.read_text())
    (step,) = report["steps"]["kamailio"]
    # Half the mix is 116117 calls to centres that are not the default one: they only
    # succeed if the htable lookup by service and X-Kommunenummer works.
    assert step["zero_failures"] is True and step["successful_calls"] == 50, step
    assert report["environment"]["kamailio_version"].startswith("version: kamailio")
    assert "Peer baseline, Kamailio" in (next(out.glob("bench-*.md"))).read_text()


# --- centre scenarios through the router -----------------------------------------------------


@pytest.mark.parametrize(
    ("centre_scenario", "caller_scenario", "status"),
    [("uas_busy.xml", "uac_expect_486.xml", 486),
     ("uas_unavailable.xml", "uac_expect_503.xml", 503)],
)  # fmt: skip
def test_rejection_by_the_only_destination_reaches_the_caller(
    sipp: SippFleet, kit_router: RouterFactory, tmp_path: Path,
    centre_scenario: str, caller_scenario: str, status: int,
) -> None:  # fmt: skip
    oslo = free_port()
    router = kit_router(oslo, lone=True, NODRUTE__FAILOVER__RETRY_PLAN_113="false")
    centre = sipp.start_uas(centre_scenario, "AMK-OSLO", oslo, calls=1)
    result = sipp.run_uac(
        caller_scenario, router.port, injection_file=write_injection_file(
            tmp_path / "calls.csv", OSLO_CALL), calls=1,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1), result.summary()
    assert received_finals(result.messages()) == [status]
    assert centre.wait(10) == 0, centre.failure_report()  # the router ACKed the centre
    assert len(centre.received_invites()) == 1


def test_silent_only_destination_gives_the_caller_408_after_timer_b(
    sipp: SippFleet, kit_router: RouterFactory, tmp_path: Path
) -> None:
    oslo = free_port()
    router = kit_router(oslo, lone=True, NODRUTE__SIP__T1_S="0.05",  # Timer B = 3.2 s
                        NODRUTE__FAILOVER__FIRST_RESPONSE_S="60",
                        NODRUTE__FAILOVER__RETRY_PLAN_113="false")
    centre = sipp.start_uas("uas_no_response.xml", "AMK-OSLO", oslo)
    result = sipp.run_uac(
        "uac_expect_408.xml", router.port, injection_file=write_injection_file(
            tmp_path / "calls.csv", OSLO_CALL), calls=1,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1), result.summary()
    assert received_finals(result.messages()) == [408]
    assert min(result.response_times_ms["rejected"]) >= 3000  # not before Timer B
    centre.stop()
    messages = centre.messages()
    assert [m for m in messages if m.direction == "sent"] == []
    invites = [m for m in messages if m.method == "INVITE"]
    assert len(invites) > 1  # the router retransmitted (Timer A) before giving up


def test_centre_rings_then_answers(
    sipp: SippFleet, kit_router: RouterFactory, tmp_path: Path
) -> None:
    oslo = free_port()
    router = kit_router(oslo)
    centre = sipp.start_uas("uas_centre.xml", "AMK-OSLO", oslo, calls=1, extra_args=["-d", "1500"])
    result = sipp.run_uac(
        "uac_emergency.xml", router.port, injection_file=write_injection_file(
            tmp_path / "calls.csv", OSLO_CALL), calls=1,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1), result.summary()
    assert max(result.response_times_ms["ringing"]) < 1000
    assert min(result.response_times_ms["answer"]) >= 1400
    assert centre.wait(10) == 0


def test_pidf_lo_body_and_geolocation_reach_the_centre(
    sipp: SippFleet, kit_router: RouterFactory, tmp_path: Path
) -> None:
    oslo = free_port()
    router = kit_router(oslo)
    centre = sipp.start_uas("uas_centre.xml", "AMK-OSLO", oslo, calls=1)
    calls = write_injection_file(
        tmp_path / "calls.csv", [("113", "", "+4793000002", "59.9133", "10.7389")]
    )  # no X-Kommunenummer: the default 113 centre, AMK-OSLO
    result = sipp.run_uac("uac_pidf_lo.xml", router.port, injection_file=calls, calls=1)
    assert (result.returncode, result.successful_calls) == (0, 1), result.summary()
    assert centre.wait(10) == 0
    (invite,) = centre.received_invites()
    (sent,) = [m for m in result.messages() if m.method == "INVITE" and m.direction == "sent"]
    assert invite.header("geolocation") == sent.header("geolocation")
    assert (invite.header("geolocation") or "").startswith("<cid:loc-")
    assert (invite.header("content-type") or "").startswith("multipart/mixed")
    assert "<gml:pos>59.9133 10.7389</gml:pos>" in invite.body
    assert "application/sdp" in invite.body


def test_caller_hangs_up_right_after_answer(
    sipp: SippFleet, kit_router: RouterFactory, tmp_path: Path
) -> None:
    oslo = free_port()
    router = kit_router(oslo)
    centre = sipp.start_uas("uas_centre.xml", "AMK-OSLO", oslo, calls=2)
    result = sipp.run_uac(
        "uac_hangup_early.xml", router.port, injection_file=write_injection_file(
            tmp_path / "calls.csv", [*OSLO_CALL, ("113", "0301", "+4793000003")]), calls=2,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 2), result.summary()
    assert centre.wait(10) == 0  # both BYEs reached the centre


# --- SIPp to SIPp (no router involved) -------------------------------------------------------


def test_no_response_centre_makes_the_caller_give_up(sipp: SippFleet, tmp_path: Path) -> None:
    port = free_port()
    centre = sipp.start_uas("uas_no_response.xml", "AMK-TEST", port)
    result = sipp.run_uac(
        "uac_emergency.xml", port, injection_file=write_injection_file(
            tmp_path / "calls.csv", OSLO_CALL), calls=1,
        extra_args=["-max_invite_retrans", "2"],
    )  # fmt: skip
    assert (result.successful_calls, result.failed_calls) == (0, 1)
    assert result.stats.get("FailedMaxUDPRetrans(C)") == "1"
    centre.stop()
    messages = centre.messages()
    assert [m for m in messages if m.direction == "sent"] == []
    assert len([m for m in messages if m.method == "INVITE"]) == 3  # 1 + 2 retransmissions


def test_rtp_pcap_caller_plays_to_the_centre(sipp: SippFleet, tmp_path: Path) -> None:
    if not Path("/usr/share/sip-tester/g711a.pcap").exists():
        pytest.skip("Debian sip-tester's pcap files are not installed")
    port = free_port()
    centre = sipp.start_uas(
        "uas_centre.xml", "AMK-TEST", port, calls=1, extra_args=["-rtp_echo"]
    )
    result = sipp.run_uac(
        "uac_rtp_pcap.xml", port, injection_file=write_injection_file(
            tmp_path / "calls.csv", OSLO_CALL), calls=1,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1), result.summary()
    assert centre.wait(10) == 0
    call_ms = result.stats.get("CallLength(C)", "")  # hh:mm:ss:us, the pcap lasts 7.05 s
    hours, minutes, seconds, _ = (int(x) for x in call_ms.split(":"))
    assert hours * 3600 + minutes * 60 + seconds >= 7
