"""Caller location end to end (issue 7): SIPp callers carrying a PIDF-LO position, a circle or a
civic address (no X-Kommunenummer) reach the centre of the municipality they are in.

Two routers run on a copy of the sample table whose centres answer on free ports (one SIPp UAS
per centre the calls may reach, the default centres included, so a call that falls back to the
default is seen there): one with the trunk's default precedence (carrier header first, then the
position, then a civic postcode), one with ``municipality_sources = ["geo", "header"]``.
The position of each call is a town centre in a known municipality; the centre it should reach
comes from the table by municipality number (no geometry). Calls are matched at the centres by
caller number; the disagreement metric is read from the first router's /metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from router_process import DEFAULT_CENTRE_113, DEFAULT_CENTRE_116117, running_router
from sipp_harness import (
    SIPP_MISSING,
    SippFleet,
    SippProcess,
    UacResult,
    free_port,
    header_params,
    sipp_binary,
    write_injection_file,
)
from table_versions_e2e import make_table, scrape

from municipality_map import Service, load_snapshot

pytestmark = pytest.mark.e2e

# Town centres (WGS 84 lat, lon) and the municipality each lies in.
BERGEN = ("60.3913", "5.3221", "4601")
TRONDHEIM = ("63.4305", "10.3951", "5001")
TROMSO = ("69.6496", "18.9560", "5501")
SERVICES = {"113": Service.AMK, "116117": Service.LEGEVAKT}


@dataclass(frozen=True)
class Call:
    scenario: str
    row: tuple[str, ...]
    """The injection line: dialled; X-Kommunenummer (empty: none); caller; ..."""
    kommune: str
    """The municipality the call must be routed by."""
    source: str
    """Which source must decide (X-Nodrute-Route ``source=``)."""

    @property
    def service(self) -> str:
        return self.row[0]

    @property
    def caller(self) -> str:
        return self.row[2]


def point_call(n: int, service: str, where: tuple[str, str, str], header: str = "") -> Call:
    lat, lon, kommune = where
    return Call("uac_pidf_lo.xml", (service, header, f"+479300{n:04d}", lat, lon),
                header or kommune, "header" if header else "geo")


DEFAULT_ORDER = [  # router with the default precedence
    point_call(1, "113", BERGEN),
    point_call(2, "113", TRONDHEIM),
    point_call(3, "116117", TROMSO),
    point_call(4, "116117", BERGEN),
    # The carrier says Trondheim, the handset is in Bergen: the header wins, the metric counts.
    point_call(5, "113", BERGEN, header=TRONDHEIM[2]),
    Call("uac_pidf_circle.xml", ("113", "", "+4793000011", TROMSO[0], TROMSO[1], "50"),
         TROMSO[2], "geo"),
    Call("uac_pidf_civic.xml", ("116117", "", "+4793000021", "5003", "Bergen"), "4601",
         "postcode"),
    Call("uac_pidf_civic.xml", ("113", "", "+4793000022", "7011", "Trondheim"), "5001",
         "postcode"),
]
GEO_FIRST = [  # router whose trunk puts the position before the header
    Call("uac_pidf_lo.xml", ("113", TRONDHEIM[2], "+4793000031", BERGEN[0], BERGEN[1]),
         BERGEN[2], "geo"),
]


@dataclass
class LocationRun:
    expected: dict[str, tuple[Call, str]]
    """caller -> (call, centre_id it must reach)."""
    uacs: list[UacResult]
    centres: dict[str, SippProcess]
    metrics_text: str
    fleet: SippFleet

    def failure_report(self) -> str:
        return "\n".join([*(uac.summary() for uac in self.uacs), self.fleet.failure_report()])


def run_calls(fleet: SippFleet, root: Path, port: int, calls: list[Call]) -> list[UacResult]:
    results = []
    for scenario in sorted({call.scenario for call in calls}):
        rows = [call.row for call in calls if call.scenario == scenario]
        inf = write_injection_file(root / f"{port}-{scenario}.csv", rows)
        results.append(fleet.run_uac(scenario, port, injection_file=inf, calls=len(rows),
                                     rate_per_s=20, timeout_s=20))
    return results


@pytest.fixture(scope="module")
def location_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocationRun]:
    binary = sipp_binary()
    if binary is None:
        pytest.skip(SIPP_MISSING)
    root = tmp_path_factory.mktemp("location")
    plain = load_snapshot(make_table(root / "plain", "plain"))
    expected: dict[str, tuple[Call, str]] = {}
    for call in DEFAULT_ORDER + GEO_FIRST:
        found = plain.lookup(call.kommune, SERVICES[call.service])
        assert found is not None, call
        expected[call.caller] = (call, found.centre.centre_id)
    centre_ids = {cid for _, cid in expected.values()} | {DEFAULT_CENTRE_113,
                                                           DEFAULT_CENTRE_116117}
    ports = {cid: free_port() for cid in sorted(centre_ids)}
    table = make_table(root / "table", "e2e-location", ports=ports)
    fleet = SippFleet(root / "sipp", binary)
    metrics_port = free_port()
    sources = '["header", "uri_param", "prefix", "geo", "postcode"]'
    try:
        centres = fleet.start_centres("uas_centre.xml", ports.items())
        with ExitStack() as stack:
            default_order = stack.enter_context(running_router(
                root / "default-order", table, municipality_sources=sources,
                extra_config=f'[metrics]\nhost = "127.0.0.1"\nport = {metrics_port}\n'))
            geo_first = stack.enter_context(running_router(
                root / "geo-first", table, municipality_sources='["geo", "header"]'))
            uacs = run_calls(fleet, root, default_order.port, DEFAULT_ORDER)
            uacs += run_calls(fleet, root, geo_first.port, GEO_FIRST)
            metrics_text = scrape(metrics_port)
        for uas in centres.values():
            uas.stop()
        yield LocationRun(expected, uacs, centres, metrics_text, fleet)
    finally:
        fleet.stop_all()


def test_every_location_call_completed(location_run: LocationRun) -> None:
    for uac in location_run.uacs:
        assert uac.returncode == 0 and uac.failed_calls == 0, uac.summary()
    assert sum(uac.successful_calls for uac in location_run.uacs) == len(location_run.expected)


def test_each_call_reached_the_centre_of_its_location(location_run: LocationRun) -> None:
    landed: dict[str, list[tuple[str, dict[str, str], list[str]]]] = {}
    for centre_id, uas in location_run.centres.items():
        for invite in uas.received_invites():
            route = header_params(invite.header("x-nodrute-route") or "")
            landed.setdefault(invite.from_user or "?", []).append(
                (centre_id, route, invite.header_values("x-kommunenummer")))
    wrong = {}
    for caller, (call, centre_id) in location_run.expected.items():
        want = [(centre_id, call.source, [call.kommune])]
        got = [(cid, route.get("source"), kommune) for cid, route, kommune in
               landed.get(caller, [])]
        if got != want:
            wrong[caller] = f"{call.row}: expected {want}, got {got}"
    assert not wrong, wrong
    assert set(landed) == set(location_run.expected)


def sample(metrics_text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def test_carrier_position_disagreement_is_counted(location_run: LocationRun) -> None:
    text = location_run.metrics_text
    # Only the call whose header names Trondheim while its position is in Bergen disagrees.
    assert sample(text, "nodrute_location_disagreements_total", {"service": "113"}) == 1
    assert sample(text, "nodrute_location_disagreements_total", {"service": "116117"}) == 0
    routed_by = {
        (service, source): sample(text, "nodrute_location_source_total",
                                  {"service": service, "source": source})
        for service in SERVICES for source in ("geo", "header", "postcode", "default")
    }
    assert routed_by == {
        (service, source): float(sum(1 for call in DEFAULT_ORDER
                                     if call.service == service and call.source == source))
        for service, source in routed_by
    }
