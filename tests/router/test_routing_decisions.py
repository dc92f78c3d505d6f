"""Every municipality, both services: the centre leg goes where the table says."""

from __future__ import annotations

import csv

import pytest
from b2bua_harness import REPO, Harness, caller_invite, make_harness

from municipality_map import RoutingSnapshot
from router.config import NodruteSettings, RoutingSettings
from sip.message import Request

SERVICE_COLUMN = {"113": "amk_id", "116117": "lvs_id"}


def centre_reached(h: Harness, data: bytes) -> tuple[str, Request]:
    h.feed(data)
    sent = [s.message for s in h.take() if isinstance(s.message, Request)]
    assert len(sent) == 1, sent
    route = sent[0].headers.get("X-Nodrute-Route") or ""
    return route.split("centre=", 1)[1].split(";", 1)[0], sent[0]


@pytest.mark.parametrize("service", ["113", "116117"])
def test_every_municipality_routes_to_its_centre(
        harness: Harness, table_rows: dict[str, dict[str, str]], centre_uris: dict[str, str],
        service: str) -> None:
    column = SERVICE_COLUMN[service]
    for n, (code, row) in enumerate(sorted(table_rows.items())):
        centre_id, invite = centre_reached(
            harness, caller_invite(n, f"sip:{service}@127.0.0.1", kommune=code))
        assert centre_id == row[column], code
        assert invite.uri == centre_uris[row[column]]
        assert invite.headers.get("X-Kommunenummer") == code


def test_old_codes_route_through_the_crosswalk(
        harness: Harness, table_rows: dict[str, dict[str, str]]) -> None:
    path = REPO / "municipality_map" / "data" / "kommune_crosswalk_2017_2023_to_2024.csv"
    with path.open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["ambiguous_split"] == "false"
                and r["source_kommunenummer"] != r["kommunenummer_2024"]]
    assert len(rows) > 200
    for n, row in enumerate(rows):
        target = row["kommunenummer_2024"]
        centre_id, invite = centre_reached(
            harness, caller_invite(n, "sip:113@127.0.0.1", kommune=row["source_kommunenummer"]))
        assert centre_id == table_rows[target]["amk_id"], row
        assert invite.headers.get("X-Kommunenummer") == target


@pytest.mark.parametrize(("old", "new"), [("0104", "3103"), ("3024", "3201"), ("3005", "3301")])
def test_named_renumberings(harness: Harness, table_rows: dict[str, dict[str, str]],
                            old: str, new: str) -> None:
    centre_id, invite = centre_reached(
        harness, caller_invite(1, "sip:116117@127.0.0.1", kommune=old))
    assert centre_id == table_rows[new]["lvs_id"]
    assert invite.headers.get("X-Kommunenummer") == new
    assert f"requested={old}" in (invite.headers.get("X-Nodrute-Route") or "")


@pytest.mark.parametrize("code", [None, "9999", "0000", "12", "abcd", "03011"])
def test_missing_or_unknown_goes_to_the_default_centre_and_is_counted(
        snapshot: RoutingSnapshot, code: str | None) -> None:
    settings = NodruteSettings(routing=RoutingSettings(
        default_centre_113="AMK-BERGEN", default_centre_116117="LVS-4601"))
    h = make_harness(snapshot, settings)
    assert centre_reached(h, caller_invite(1, kommune=code))[0] == "AMK-BERGEN"
    assert centre_reached(h, caller_invite(2, "sip:116117@127.0.0.1", kommune=code))[0] == (
        "LVS-4601")
    kind = "missing_municipality" if code is None else "unknown_municipality"
    assert h.b2bua.counters[f"default_route:113:{kind}"] == 1
    assert h.b2bua.counters[f"default_route:116117:{kind}"] == 1


def test_prefix_and_uri_param_sources(harness: Harness,
                                      table_rows: dict[str, dict[str, str]]) -> None:
    by_prefix, _ = centre_reached(harness, caller_invite(1, "sip:1134601@127.0.0.1",
                                                          kommune=None))
    assert by_prefix == table_rows["4601"]["amk_id"]
    by_param, _ = centre_reached(harness, caller_invite(
        2, "sip:116117@127.0.0.1;kommune=1103", kommune=None))
    assert by_param == table_rows["1103"]["lvs_id"]
    # header wins over prefix by default; an unknown header code falls through to the prefix
    header_first, _ = centre_reached(harness, caller_invite(3, "sip:1134601@127.0.0.1",
                                                              kommune="1103"))
    assert header_first == table_rows["1103"]["amk_id"]
    stale_header, _ = centre_reached(harness, caller_invite(4, "sip:1134601@127.0.0.1",
                                                              kommune="9999"))
    assert stale_header == table_rows["4601"]["amk_id"]


@pytest.mark.parametrize("uri", ["tel:+47113", "urn:service:sos", "sip:0047113@127.0.0.1"])
def test_number_variants_reach_amk(harness: Harness, table_rows: dict[str, dict[str, str]],
                                   uri: str) -> None:
    centre_id, _ = centre_reached(harness, caller_invite(1, uri, kommune="5001"))
    assert centre_id == table_rows["5001"]["amk_id"]
