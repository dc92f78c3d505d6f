"""Where each test call should land, worked out from the committed CSV files alone.

Deliberately independent of ``municipality_map`` and ``router``: it reads
``configs/tables/sample-2024/{municipalities,centres}.csv`` and the crosswalk with the csv
module, so a bug in the product's loader or lookup cannot hide itself in the expectation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from router_process import DEFAULT_CENTRE_113, DEFAULT_CENTRE_116117, TABLE_DIR
from sipp_harness import REPO

CROSSWALK = REPO / "municipality_map" / "data" / "kommune_crosswalk_2017_2023_to_2024.csv"
CALLS_ALL = REPO / "loadtests" / "data" / "calls_all.csv"
SERVICES = ("116117", "113")  # longest first: "116117..." must not be read as "113"...
DEFAULT_CENTRE = {"113": DEFAULT_CENTRE_113, "116117": DEFAULT_CENTRE_116117}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = f.readline()
        f.seek(0)
        delimiter = ";" if header.count(";") > header.count(",") else ","
        return [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(f, delimiter=delimiter)
        ]


@dataclass(frozen=True)
class Centre:
    centre_id: str
    service: str
    uri: str
    port: int


def load_centres(table_dir: Path = TABLE_DIR) -> dict[str, Centre]:
    """centre_id -> Centre, from the first URI of each row of centres.csv."""
    centres: dict[str, Centre] = {}
    for row in read_rows(table_dir / "centres.csv"):
        uri = row["uris"].split()[0]
        hostport = uri.split("@", 1)[-1].split(";", 1)[0]
        host, _, port = hostport.rpartition(":")
        assert host == "127.0.0.1", f"centre {row['centre_id']} is not on 127.0.0.1: {uri}"
        centres[row["centre_id"]] = Centre(row["centre_id"], row["service"], uri, int(port))
    return centres


@dataclass(frozen=True)
class PlannedCall:
    """One line of an injection file and what the routing table says should happen to it."""

    dialled: str
    sent_code: str
    """Municipality code in X-Kommunenummer ("" = no header)."""
    caller: str
    service: str
    requested_code: str | None
    """The code the router should act on (header first, then dialled prefix), or None."""
    source: str
    """``header``, ``prefix`` or ``default`` (nothing was sent)."""
    today_code: str | None
    """2024 municipality number the call resolves to, or None (-> default centre)."""
    expected_centre: str


class RoutingTable:
    """municipalities.csv + crosswalk, read the plain way."""

    def __init__(self, table_dir: Path = TABLE_DIR, crosswalk: Path = CROSSWALK) -> None:
        rows = read_rows(table_dir / "municipalities.csv")
        self.centre_for = {
            (row["kommunenummer"], service): row[column]
            for row in rows
            for service, column in (("113", "amk_id"), ("116117", "lvs_id"))
        }
        self.municipalities = {row["kommunenummer"] for row in rows}
        targets: dict[str, set[str]] = {}
        for row in read_rows(crosswalk):
            targets.setdefault(row["source_kommunenummer"], set()).add(row["kommunenummer_2024"])
        # Only old codes with one 2024 municipality; split municipalities need an address.
        self.crosswalk = {old: next(iter(new)) for old, new in targets.items() if len(new) == 1}
        self.ambiguous_old_codes = {old for old, new in targets.items() if len(new) > 1}

    def today_code(self, code: str) -> str | None:
        if code in self.municipalities:
            return code
        new = self.crosswalk.get(code)
        return new if new in self.municipalities else None

    def expect(self, dialled: str, sent_code: str, caller: str) -> PlannedCall:
        service, prefix_digits = split_dialled(dialled)
        if sent_code:
            requested, source = sent_code, "header"
        elif prefix_digits:
            requested, source = prefix_digits, "prefix"
        else:
            requested, source = None, "default"
        assert requested not in self.ambiguous_old_codes, f"{requested}: needs an address"
        today = self.today_code(requested) if requested else None
        centre = self.centre_for[(today, service)] if today else DEFAULT_CENTRE[service]
        return PlannedCall(dialled, sent_code, caller, service, requested, source, today, centre)


def split_dialled(dialled: str) -> tuple[str, str]:
    """``+47113`` -> ("113", ""), ``1161170301`` -> ("116117", "0301")."""
    number = dialled
    for national_prefix in ("+47", "0047"):
        if number.startswith(national_prefix):
            number = number[len(national_prefix) :]
    for service in SERVICES:
        if number.startswith(service):
            return service, number[len(service) :]
    raise ValueError(f"not an emergency number: {dialled}")


def read_injection_file(path: Path) -> list[tuple[str, str, str]]:
    """(dialled, municipality code, caller) per call line of a SIPp ``-inf`` file."""
    calls: list[tuple[str, str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(";")
        calls.append((fields[0], fields[1], fields[2]))
    return calls
