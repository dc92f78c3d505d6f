"""/metrics of a real router moves by exactly the calls SIPp made (issue 8: scrape before/after).

One ``nodrute serve`` on a copy of the sample table whose two centres for Oslo (AMK-OSLO,
LVS-0301) answer on free ports (SIPp UAS, ringing 300 ms before answering); 4 calls to 113 and
2 to 116117 from 0301, and 1 call to a number the router does not serve (404). The endpoint is
scraped before and after; every counter is compared as a difference.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from router_process import running_router
from sipp_harness import (
    REPO,
    SIPP_MISSING,
    SippFleet,
    UacResult,
    free_port,
    sipp_binary,
    stat_int,
    write_injection_file,
)
from table_versions_e2e import make_table, scrape

pytestmark = pytest.mark.e2e

CALLS_113, CALLS_116117 = 4, 2
RING_MS = 300

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@dataclass
class MetricsRun:
    before: Samples
    after: Samples
    uacs: list[UacResult]

    def moved(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)

    @property
    def caller_retransmissions(self) -> int:
        return sum(stat_int(uac.stats, "Retransmissions(C)") for uac in self.uacs)

    def report(self) -> str:
        return "\n".join(uac.summary() for uac in self.uacs)


@pytest.fixture(scope="module")
def metrics_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsRun]:
    binary = sipp_binary()
    if binary is None:
        pytest.skip(SIPP_MISSING)
    root = tmp_path_factory.mktemp("metrics")
    ports = {"AMK-OSLO": free_port(), "LVS-0301": free_port()}
    table = make_table(root / "table", "e2e-metrics", ports=ports)
    fleet = SippFleet(root / "sipp", binary)
    metrics_port = free_port()
    rows = [("113", "0301", f"+47940000{n:02d}", "metrics") for n in range(CALLS_113)]
    rows += [("116117", "0301", f"+47940001{n:02d}", "metrics") for n in range(CALLS_116117)]
    emergency = write_injection_file(root / "calls.csv", rows)
    try:
        centres = [fleet.start_uas("uas_centre.xml", cid, port, extra_args=["-d", str(RING_MS)])
                   for cid, port in ports.items()]
        time.sleep(0.5)
        for uas in centres:
            assert uas.process.poll() is None, uas.failure_report()
        with running_router(root / "router", table, extra_config=(
                f'[metrics]\nhost = "127.0.0.1"\nport = {metrics_port}\n')) as router:
            before = scrape(metrics_port)
            uacs = [
                fleet.run_uac("uac_emergency.xml", router.port, injection_file=emergency,
                              calls=len(rows), rate_per_s=20, timeout_s=15),
                fleet.run_uac("uac_expect_404.xml", router.port, calls=1, timeout_s=10,
                              injection_file=REPO / "loadtests/data/calls_not_emergency.csv"),
            ]
            after = _scrape_when_calls_ended(metrics_port, len(rows))
        yield MetricsRun(parse(before), parse(after), uacs)
    finally:
        fleet.stop_all()


def _scrape_when_calls_ended(port: int, calls: int, timeout_s: float = 5.0) -> str:
    """The caller's last 200 (to its BYE) may leave before the centre's: wait for the count."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = scrape(port)
        ended = sum(s.value for f in text_string_to_metric_families(text)
                    for s in f.samples if s.name == "nodrute_calls_total")
        if ended >= calls or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_the_calls_completed(metrics_run: MetricsRun) -> None:
    for uac in metrics_run.uacs:
        assert uac.returncode == 0 and uac.failed_calls == 0, metrics_run.report()
    assert [uac.successful_calls for uac in metrics_run.uacs] == [CALLS_113 + CALLS_116117, 1]


def test_call_counters_moved_by_exactly_the_calls_made(metrics_run: MetricsRun) -> None:
    m = metrics_run
    assert m.moved("nodrute_calls_total", service="113", outcome="answered") == CALLS_113
    assert m.moved("nodrute_calls_total", service="116117", outcome="answered") == CALLS_116117
    for outcome in ("abandoned", "failed"):
        for service in ("113", "116117"):
            assert m.moved("nodrute_calls_total", service=service, outcome=outcome) == 0
    assert m.moved("nodrute_location_source_total", service="113", source="header") == CALLS_113
    assert m.after[("nodrute_active_calls", frozenset())] == 0
    for service, calls, centre in (("113", CALLS_113, "AMK-OSLO"),
                                   ("116117", CALLS_116117, "LVS-0301")):
        assert m.moved("nodrute_routing_decision_seconds_count", service=service) == calls
        assert m.moved("nodrute_post_dial_delay_seconds_count", service=service) == calls
        assert m.moved("nodrute_answer_seconds_count", service=service, centre=centre) == calls
        # SIPp's centre rings RING_MS before it answers
        assert m.moved("nodrute_answer_seconds_sum", service=service,
                       centre=centre) >= calls * RING_MS / 1000
        assert m.moved("nodrute_answer_window_calls", service=service, centre=centre,
                       window="15m", result="answered_within_target") == calls
        assert m.after[("nodrute_answer_indicator_ratio", frozenset(
            {"service": service, "centre": centre, "window": "1h"}.items()))] == 1.0


def test_sip_message_counters_moved_by_the_messages_of_those_calls(
        metrics_run: MetricsRun) -> None:
    m = metrics_run
    answered = CALLS_113 + CALLS_116117
    retrans = m.caller_retransmissions  # 0 on an idle machine; each one is a message too

    def requests(direction: str, method: str) -> float:
        return m.moved("nodrute_sip_requests_total", direction=direction, method=method)

    def responses(direction: str, code: str) -> float:
        return m.moved("nodrute_sip_responses_total", direction=direction, code=code)

    assert answered + 1 <= requests("received", "INVITE") <= answered + 1 + retrans
    assert answered + 1 <= requests("received", "ACK") <= answered + 1 + retrans
    assert answered <= requests("received", "BYE") <= answered + retrans
    assert requests("sent", "INVITE") == answered  # the centres answer at once: no Timer A
    assert requests("sent", "BYE") == answered
    assert requests("received", "CANCEL") == requests("sent", "CANCEL") == 0
    assert responses("received", "180") == responses("sent", "180") == answered
    assert responses("sent", "404") == 1
    assert responses("received", "200") == 2 * answered  # to our INVITEs and BYEs
    assert answered * 2 <= responses("sent", "200") <= answered * 2 + retrans
