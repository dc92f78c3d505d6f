#!/usr/bin/env python3
"""Build the SAMPLE routing table ``configs/tables/sample-2024/`` from the reference data.

Usage (from the repository root)::

    .venv/bin/python configs/tables/make_sample_tables.py [DATA_DIR]

``DATA_DIR`` defaults to ``../shared/data`` relative to the repository root. The script is
deterministic: the same input files give byte-identical output. It writes

* ``configs/tables/sample-2024/{municipalities.csv,centres.csv,version.toml}``, and
* ``municipality_map/data/`` (the reference files the product reads at run time, copied
  byte for byte, plus ``NOTICE.md`` with their attribution and checksums).

The routing table is SAMPLE demo data: the AMK and legevaktsentral coverage files it is made
from are not authoritative (see SOURCES.md). A real deployment loads the operator's own
affiliation files instead.

Only the standard library is used, so the script runs before the package is installed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
TABLE_DIR = REPO_ROOT / "configs" / "tables" / "sample-2024"
PACKAGE_DATA_DIR = REPO_ROOT / "municipality_map" / "data"

# Reference files the product needs at run time (validation, the old-code crosswalk, the
# municipality boundaries for point -> municipality, municipality_map/geo.py, and the postcodes
# for civic address -> municipality, municipality_map/postcodes.py).
PACKAGE_DATA_FILES = (
    "kommuner_2024.csv",
    "kommuner_2020.csv",
    "kommune_crosswalk_2017_2023_to_2024.csv",
    "kommune_special_codes.csv",
    "kommuner_2024_S.geojson",
    "postnummer_2024.csv",
)

# Codes used by Bring/Kartverket for places outside SSB's municipality list. 9999 ("unknown")
# is deliberately absent: it is not a place and must never be routed.
SPECIAL_CODES = ("2100", "2211")

# Places without polygons are served from the mainland: Svalbard's hospital in Longyearbyen is
# part of UNN in Tromsø (5501); Jan Mayen is administered from Nordland, whose county governor
# and AMK sit in Bodø (1804). Used to pick a backup for the Svalbard legevaktsentral, and a
# legevaktsentral for Jan Mayen, which has none in the sample coverage (no civilian population).
SERVED_FROM = {"2100": "5501", "2211": "1804"}

AMK_PORT_BASE = 5101
LVS_PORT_BASE = 5201

# The national overflow centre of each service ([overflow] in version.toml): offered a call
# after its centre and every backup on the chain failed. The sample picks the centres serving
# the capital, the largest of each service (also the router's default centres).
OVERFLOW = {"113": "AMK-OSLO", "116117": "LVS-0301"}


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a UTF-8 CSV file with a header row into dicts (BOM tolerated)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    """Write CSV with ``\\n`` line ends so the output is identical on every platform."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")


def demo_uri(centre_id: str, port: int) -> str:
    """Loopback URI for the demo: every centre is a SIPp UAS on its own port."""
    return f"sip:{centre_id.lower()}@127.0.0.1:{port}"


# --- geography: which areas are neighbours --------------------------------------------------


def _rings(geometry: dict[str, object]) -> Iterator[list[list[float]]]:
    coords = geometry["coordinates"]
    assert isinstance(coords, list)
    polygons = coords if geometry["type"] == "MultiPolygon" else [coords]
    for polygon in polygons:
        yield from polygon


def municipality_geometry(
    geojson_path: Path,
) -> tuple[dict[str, Counter[str]], dict[str, tuple[float, float]]]:
    """Border lengths (shared vertices) between municipalities, and rough centroids.

    The simplified boundaries are topologically consistent (neighbours share vertices), so the
    number of shared vertices is a usable proxy for the length of a common border.
    """
    features = json.loads(geojson_path.read_text(encoding="utf-8"))["features"]
    owners: defaultdict[tuple[float, float], set[str]] = defaultdict(set)
    centroids: dict[str, tuple[float, float]] = {}
    for feature in features:
        code = feature["properties"]["kommunenummer"]
        points = [(x, y) for ring in _rings(feature["geometry"]) for x, y in ring]
        centroids[code] = (
            sum(p[0] for p in points) / len(points),
            sum(p[1] for p in points) / len(points),
        )
        for x, y in points:
            owners[(round(x, 6), round(y, 6))].add(code)
    border: dict[str, Counter[str]] = defaultdict(Counter)
    for codes in owners.values():
        for a, b in itertools.permutations(sorted(codes), 2):
            border[a][b] += 1
    return border, centroids


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    # Equirectangular approximation: plenty for ranking neighbours.
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(b[0] - a[0]) * math.cos(mean_lat)
    dy = math.radians(b[1] - a[1])
    return 6371.0 * math.hypot(dx, dy)


def choose_backups(
    members: dict[str, list[str]],
    groups: dict[str, str],
    border: dict[str, Counter[str]],
    centroids: dict[str, tuple[float, float]],
) -> dict[str, str]:
    """Pick one backup per area: another area of the same group, the best neighbour.

    ``members`` maps area id -> municipality codes, ``groups`` maps area id -> group (RHF for
    AMK centres, AMK for legevaktsentraler). Preference: the longest common border; if the area
    touches no other area of its group (islands), the nearest by centroid; if the area has no
    geometry at all (Svalbard), the area covering the place it is served from (``SERVED_FROM``),
    else the group's area with the most municipalities. Ties break on
    id, so the result is deterministic. An area alone in its group gets no backup; a candidate
    that would make the backups go round in a circle is skipped for the next best one.
    """
    area_of = {code: area for area, codes in members.items() for code in codes}

    def centre_of(area: str) -> tuple[float, float] | None:
        points = [centroids[c] for c in members[area] if c in centroids]
        if not points:
            return None
        return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))

    def closes_cycle(area: str, backup: str) -> bool:
        # Backups are followed in a chain when a centre fails, so they must never go round
        # in a circle (nodrute's validator rejects a table whose backups do).
        seen: str | None = backup
        while seen is not None:
            if seen == area:
                return True
            seen = backups.get(seen)
        return False

    backups: dict[str, str] = {}
    for area in sorted(members):
        candidates = sorted(a for a in members if a != area and groups[a] == groups[area])
        if not candidates:
            continue
        shared: Counter[str] = Counter()
        for code in members[area]:
            for other_code, n in border.get(code, Counter()).items():
                other = area_of.get(other_code)
                if other in candidates:
                    shared[other] += n
        here = centre_of(area)
        ranked: list[str]
        if shared:
            ranked = sorted(candidates, key=lambda a: (-shared[a], a))
        elif here is not None:
            located = [(a, c) for a in candidates if (c := centre_of(a)) is not None]
            by_distance = sorted(located, key=lambda ac: (_distance_km(here, ac[1]), ac[0]))
            ranked = [a for a, _ in by_distance]
        else:
            served_from = {area_of.get(SERVED_FROM.get(code, "")) for code in members[area]}
            anchored = [a for a in candidates if a in served_from]
            ranked = sorted(anchored or candidates, key=lambda a: (-len(members[a]), a))
        usable = [a for a in ranked if not closes_cycle(area, a)]
        if usable:
            backups[area] = usable[0]
    return backups


# --- the table ------------------------------------------------------------------------------


def build(data_dir: Path, table_dir: Path, package_data_dir: Path) -> None:
    """Read ``data_dir`` and write the sample table and the package data."""
    kommuner = read_csv(data_dir / "kommuner_2024.csv")
    specials = {r["code"]: r for r in read_csv(data_dir / "kommune_special_codes.csv")}
    amk_centres = read_csv(data_dir / "amk_centres_SAMPLE.csv")
    amk_coverage = {r["kommunenummer"]: r for r in read_csv(data_dir / "amk_coverage_SAMPLE.csv")}
    lvs_centres = read_csv(data_dir / "legevaktsentraler_SAMPLE.csv")
    lvs_coverage = {
        r["kommunenummer"]: r for r in read_csv(data_dir / "legevakt_coverage_SAMPLE.csv")
    }
    border, centroids = municipality_geometry(data_dir / "kommuner_2024_S.geojson")

    # Municipality rows: the 357 of the 2024 list, then the special codes the sample covers.
    names = {r["kommunenummer"]: r["kommunenavn"] for r in kommuner}
    for code in SPECIAL_CODES:
        if code in amk_coverage or code in lvs_coverage:
            names[code] = specials[code]["name"]

    rows: list[list[str]] = []
    amk_members: defaultdict[str, list[str]] = defaultdict(list)
    for code in sorted(names):
        notes: list[str] = []
        amk_row = amk_coverage.get(code)
        if amk_row is None:
            sys.exit(f"{code} {names[code]}: no AMK in amk_coverage_SAMPLE.csv")
        amk_id = amk_row["amk_id"]
        if amk_row["confidence"] == "low":
            notes.append(f"AMK assignment is a low-confidence assumption ({amk_row['rule']})")
        lvs_row = lvs_coverage.get(code)
        if lvs_row is not None:
            lvs_id = lvs_row["lvs_id"]
        elif code in SERVED_FROM:
            via = SERVED_FROM[code]
            lvs_id = lvs_coverage[via]["lvs_id"]
            notes.append(
                f"no legevaktsentral in the sample coverage; 116117 uses {lvs_id}, "
                f"the one covering {via} {names[via]} (seat of {amk_id})"
            )
        else:
            sys.exit(f"{code} {names[code]}: no legevaktsentral and no fallback rule")
        amk_members[amk_id].append(code)
        rows.append([code, names[code], amk_id, lvs_id, "; ".join(notes)])

    # Centres: AMK centres back each other up within an RHF, legevaktsentraler within an AMK
    # area (an AMK is never an LVS backup: 113 and 116117 are different services).
    amk_ids = sorted(r["amk_id"] for r in amk_centres)
    amk_rhf = {r["amk_id"]: r["rhf"] for r in amk_centres}
    amk_backup = choose_backups(dict(amk_members), amk_rhf, border, centroids)
    lvs_ids = sorted(r["lvs_id"] for r in lvs_centres)
    lvs_members = {r["lvs_id"]: r["member_kommunenummer"].split() for r in lvs_centres}
    lvs_amk = {r["lvs_id"]: r["amk_id"] for r in lvs_centres}
    lvs_backup = choose_backups(lvs_members, lvs_amk, border, centroids)

    amk_name = {r["amk_id"]: r["amk_name"] for r in amk_centres}
    lvs_name = {r["lvs_id"]: r["lvs_name"] for r in lvs_centres}
    centre_rows: list[list[str]] = []
    for i, centre_id in enumerate(amk_ids):
        uri = demo_uri(centre_id, AMK_PORT_BASE + i)
        centre_rows.append(
            [centre_id, amk_name[centre_id], "113", uri, amk_backup.get(centre_id, "")]
        )
    for i, centre_id in enumerate(lvs_ids):
        uri = demo_uri(centre_id, LVS_PORT_BASE + i)
        centre_rows.append(
            [centre_id, lvs_name[centre_id], "116117", uri, lvs_backup.get(centre_id, "")]
        )

    for service, centre_id in OVERFLOW.items():
        if centre_id not in (amk_ids if service == "113" else lvs_ids):
            sys.exit(f"overflow centre {centre_id} for {service} is not in the sample centres")

    table_dir.mkdir(parents=True, exist_ok=True)
    write_csv(
        table_dir / "municipalities.csv",
        ["kommunenummer", "kommunenavn", "amk_id", "lvs_id", "note"],
        rows,
    )
    write_csv(
        table_dir / "centres.csv",
        ["centre_id", "name", "service", "uris", "backup_centre_id"],
        centre_rows,
    )
    (table_dir / "version.toml").write_text(VERSION_TOML, encoding="utf-8", newline="")

    package_data_dir.mkdir(parents=True, exist_ok=True)
    checksums = []
    for name in PACKAGE_DATA_FILES:
        shutil.copyfile(data_dir / name, package_data_dir / name)
        digest = hashlib.sha256((package_data_dir / name).read_bytes()).hexdigest()
        checksums.append(f"| `{name}` | `{digest}` |")
    notice = NOTICE_MD.replace("{checksums}", "\n".join(checksums))
    (package_data_dir / "NOTICE.md").write_text(notice, encoding="utf-8", newline="")

    print(
        f"wrote {len(rows)} municipalities, {len(amk_ids)} AMK centres and "
        f"{len(lvs_ids)} legevaktsentraler to {table_dir}; "
        f"{len(PACKAGE_DATA_FILES)} reference files to {package_data_dir}"
    )


VERSION_TOML = """\
# SAMPLE demo data: not an authoritative routing table. Generated by
# configs/tables/make_sample_tables.py; do not edit by hand.
label = "sample-2024"
effective_at = "2024-01-01T00:00:00+01:00"
author = "nodrute developers (configs/tables/make_sample_tables.py)"
comment = \"\"\"SAMPLE demo data, not an authoritative routing table. Built from the _SAMPLE \
AMK and legevaktsentral coverage fixtures (legevaktsentral groupings are invented) with demo \
SIP URIs on 127.0.0.1. A real deployment loads the operator's own affiliation files.\"\"\"
municipality_list = "2024"

# National overflow centre per service (SAMPLE choice): offered a call after its centre and
# every backup on the chain failed. Keys are the dialled numbers.
[overflow]
""" + "".join(f'{service} = "{centre_id}"\n' for service, centre_id in OVERFLOW.items())

NOTICE_MD = """\
# Bundled reference data

These files are copied unchanged by `configs/tables/make_sample_tables.py` from the project's
reference data set. nodrute reads them at run time to validate routing tables (the 2024
municipality list, the special codes) and to accept municipality numbers that carriers may still
send after a reform (the 2017-2023 crosswalk).

- `kommuner_2024.csv`: the 357 municipalities valid from 2024-01-01
  (SSB Klass 131 "Standard for kommuneinndeling").
- `kommuner_2020.csv`: the 356 municipalities valid 2020-01-01 .. 2023-12-31 (SSB Klass 131).
- `kommune_crosswalk_2017_2023_to_2024.csv`: any code valid 2017-2023 -> its 2024 code(s),
  derived from SSB Klass 131 change records. `ambiguous_split` marks codes whose area was
  divided; `preferred_target` picks one target where the data allow it (the pre-2020 parts of
  Ålesund, resolved through Bring's 2024 postcodes) and is empty for genuine splits.
- `kommune_special_codes.csv`: 9999 unknown (SSB), 2100 Svalbard and 2211 Jan Mayen (Bring).
- `kommuner_2024_S.geojson`: simplified boundaries of the 357 municipalities of 2024 (WGS 84
  lon/lat, clipped to the coastline, no Svalbard or Jan Mayen), for point -> municipality
  (`municipality_map/geo.py`).
- `postnummer_2024.csv`: the 5137 Norwegian postcodes with their municipality (2024 numbers)
  and category (G street addresses, B both, P PO boxes, S service codes), for civic address
  postcode -> municipality (`municipality_map/postcodes.py`).

## Attribution and licence

Municipality lists and changes: © Statistisk sentralbyrå (SSB) and © Kartverket, licensed under
Creative Commons Attribution 4.0 International (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/). The crosswalk is derived from SSB's change
records; the special codes 2100 and 2211 are those used in Bring's postnummerregister.
Municipality boundaries (`kommuner_2024_S.geojson`): © Kartverket, CC BY 4.0, simplified.
Postcodes (`postnummer_2024.csv`): Bring (Posten Norge AS) postnummerregister, 2024 edition.

## Checksums (SHA-256)

| file | sha256 |
|---|---|
{checksums}
"""


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="reference data directory (default: ../shared/data from the repository root)",
    )
    parser.add_argument("--table-dir", type=Path, default=TABLE_DIR)
    parser.add_argument("--package-data-dir", type=Path, default=PACKAGE_DATA_DIR)
    args = parser.parse_args(argv)
    build(args.data_dir, args.table_dir, args.package_data_dir)


if __name__ == "__main__":
    main()
