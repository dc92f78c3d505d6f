"""Write the SIPp injection file with one call per municipality and service, and edge cases.

    .venv/bin/python loadtests/make_call_csv.py            # -> loadtests/data/calls_all.csv

Reads the routing table's ``municipalities.csv`` (only its ``kommunenummer`` column: which
municipalities exist) and the crosswalk of old municipality numbers. It writes no expected
routing: which centre should answer is for the reader (a test) to work out from the table.

Lines (fields for uac_emergency.xml, separated by ';'):
    dialled number ; municipality code or empty ; caller number ; what the line is for

Caller numbers are unique per line (``+479`` + seven digits), so a call can be found again
in a centre's message trace by its From user part.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TABLE_DIR = REPO / "configs" / "tables" / "sample-2024"
DEFAULT_CROSSWALK = REPO / "municipality_map" / "data" / "kommune_crosswalk_2017_2023_to_2024.csv"
DEFAULT_OUT = REPO / "loadtests" / "data" / "calls_all.csv"

SERVICES = ("113", "116117")

# Old municipality numbers carriers may still send: two of each era, all with one 2024 target.
# (Codes of split municipalities, e.g. 1507 Ålesund, need an address and are left out.)
OLD_CODES = (
    "0104",  # Moss 2017-2019 -> 3103
    "0219",  # Bærum 2017-2019 -> 3201
    "1201",  # Bergen 2017-2019 -> 4601
    "1902",  # Tromsø 2017-2019 -> 5501
    "3005",  # Drammen 2020-2023 -> 3301
    "3024",  # Bærum 2020-2023 -> 3201
    "3803",  # Tønsberg 2020-2023 -> 3905
    "5401",  # Tromsø 2020-2023 -> 5501
)
# Codes no table knows: SSB's "unspecified" and a number that was never used.
UNKNOWN_CODES = ("9999", "0000")


class CallLine(NamedTuple):
    dialled: str
    kommunenummer: str  # "" = no X-Kommunenummer header
    caller: str
    purpose: str


def read_rows(path: Path) -> list[dict[str, str]]:
    """CSV rows as dicts; the delimiter (',' or ';') is taken from the header line."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = f.readline()
        f.seek(0)
        delimiter = ";" if header.count(";") > header.count(",") else ","
        return [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(f, delimiter=delimiter)
        ]


def single_target_old_codes(crosswalk: Path) -> dict[str, str]:
    """Old code -> "valid 2017-2019 -> 3103", for old codes with exactly one 2024 target."""
    targets: dict[str, set[str]] = {}
    years: dict[str, str] = {}
    for row in read_rows(crosswalk):
        old = row["source_kommunenummer"]
        targets.setdefault(old, set()).add(row["kommunenummer_2024"])
        years[old] = f"{row['source_first_year_seen']}-{row['source_last_year_valid']}"
    return {
        old: f"valid {years[old]} -> {next(iter(new))}"
        for old, new in targets.items()
        if len(new) == 1
    }


def call_cases(
    municipalities: list[dict[str, str]], old_codes: dict[str, str]
) -> Iterator[tuple[str, str, str]]:
    """(dialled, kommunenummer, purpose) for every call, before caller numbers are given."""
    names = {row["kommunenummer"]: row["kommunenavn"] for row in municipalities}
    for code in sorted(names):
        for service in SERVICES:
            yield service, code, f"municipality {names[code]}"
    for old in OLD_CODES:
        if old not in old_codes:
            raise SystemExit(f"old code {old} has no single target in the crosswalk")
        if old in names:
            raise SystemExit(f"old code {old} is also a current municipality number")
        for service in SERVICES:
            yield service, old, f"old code {old} {old_codes[old]}"
    for service in SERVICES:
        yield service, "", "no municipality: default centre"
        for unknown in UNKNOWN_CODES:
            yield service, unknown, "unknown municipality: default centre"
    # Other spellings of the dialled number (the municipality still in the header) ...
    yield "+47113", "0301", "E.164 +47 dialled number"
    yield "0047116117", "4601", "0047 dialled number"
    # ... and the municipality as a routing prefix on the dialled digits, without a header.
    yield "1135001", "", "routing prefix 113+5001"
    yield "1161171103", "", "routing prefix 116117+1103"
    yield "1133005", "", "routing prefix with an old code 3005"
    # The header wins over the prefix (trunk precedence: header, uri_param, prefix).
    yield "1130301", "4601", "header 4601 wins over prefix 0301"


def build_calls(table_dir: Path, crosswalk: Path) -> list[CallLine]:
    municipalities = read_rows(table_dir / "municipalities.csv")
    cases = call_cases(municipalities, single_target_old_codes(crosswalk))
    return [
        CallLine(dialled, code, f"+479{index:07d}", purpose)
        for index, (dialled, code, purpose) in enumerate(cases, start=1)
    ]


def write_injection_file(calls: list[CallLine], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as f:
        f.write("SEQUENTIAL\n")
        f.write("# dialled;kommunenummer (empty = no header);caller;purpose\n")
        f.write("# generated by loadtests/make_call_csv.py - do not edit by hand\n")
        for call in calls:
            fields = (call.dialled, call.kommunenummer, call.caller, call.purpose)
            if any(";" in field for field in fields):
                raise ValueError(f"';' cannot be escaped in a SIPp injection file: {fields}")
            f.write(";".join(fields) + ";\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table-dir", type=Path, default=DEFAULT_TABLE_DIR)
    parser.add_argument("--crosswalk", type=Path, default=DEFAULT_CROSSWALK)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    calls = build_calls(args.table_dir, args.crosswalk)
    write_injection_file(calls, args.out)
    print(f"{args.out}: {len(calls)} calls")


if __name__ == "__main__":
    main()
