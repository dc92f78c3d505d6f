"""The routing snapshot built from the committed SAMPLE table, and the table itself."""

from __future__ import annotations

import dataclasses
import filecmp
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from municipality_map import RoutingSnapshot, Service
from municipality_map.loader import read_table
from municipality_map.validate import validate_table

Rows = Callable[[Path], list[dict[str, str]]]
COLUMN = {Service.AMK: "amk_id", Service.LEGEVAKT: "lvs_id"}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("service", list(Service))
def test_every_municipality_routes_to_its_centre(
    snapshot: RoutingSnapshot, sample_dir: Path, data_dir: Path, read_rows: Rows, service: Service
):
    table = {r["kommunenummer"]: r for r in read_rows(sample_dir / "municipalities.csv")}
    official = [r["kommunenummer"] for r in read_rows(data_dir / "kommuner_2024.csv")]
    assert len(official) == 357
    for code in [*official, *(c for c in table if c not in official)]:
        found = snapshot.lookup(code, service)
        assert found is not None, code
        assert found.centre.centre_id == table[code][COLUMN[service]]
        assert found.centre.service is service
        assert (found.kommunenummer, found.requested) == (code, code)
        assert not found.via_crosswalk and not found.ambiguous


def test_centres_match_the_file(snapshot: RoutingSnapshot, sample_dir: Path, read_rows: Rows):
    rows = read_rows(sample_dir / "centres.csv")
    assert set(snapshot.centres) == {r["centre_id"] for r in rows}
    for row in rows:
        centre = snapshot.centre(row["centre_id"])
        assert centre is not None
        assert centre.service.value == row["service"]
        assert centre.uris == tuple(row["uris"].split())
        assert centre.backup_centre_id == (row["backup_centre_id"] or None)
    assert snapshot.centre("AMK-NOWHERE") is None


@pytest.mark.parametrize(
    "code", ["9999", "0000", "12", "abcd", "", "301", " 0301", "0301 ", "2101"]
)
@pytest.mark.parametrize("service", list(Service))
def test_unknown_numbers_are_not_routed(snapshot: RoutingSnapshot, code: str, service: Service):
    assert snapshot.lookup(code, service) is None


def test_results_are_prebuilt_and_immutable(snapshot: RoutingSnapshot):
    found = snapshot.lookup("0301", Service.AMK)
    assert found is not None
    assert snapshot.lookup("0301", Service.AMK) is found  # nothing built per call
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.centre = found.centre  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.centre.uris = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        snapshot._routes = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.centres["X"] = found.centre  # type: ignore[index]


def test_plain_string_service_works(snapshot: RoutingSnapshot):
    # StrEnum hashes like its value, so a router passing "113" from config is still routed.
    found = snapshot.lookup("0301", "113")  # type: ignore[arg-type]
    assert found is not None and found is snapshot.lookup("0301", Service.AMK)


def test_sample_table_passes_validation(sample_dir: Path, snapshot: RoutingSnapshot):
    table = read_table(sample_dir)
    report = validate_table(table)
    assert table.issues == ()
    assert report.errors == ()
    # The only warnings: rows whose note says the assignment is a low-confidence assumption.
    uncertain = [m.line for m in table.municipalities if "low-confidence" in m.item.note]
    assert uncertain
    assert [(w.line, w.column) for w in report.warnings] == [(line, "note") for line in uncertain]
    assert snapshot.version.label == sample_dir.name
    assert "SAMPLE" in snapshot.version.comment
    assert snapshot.municipality_count == len(table.municipalities)


def test_sample_backups_stay_within_service_and_area(
    snapshot: RoutingSnapshot, sample_dir: Path, read_rows: Rows
):
    # The AMK area of a legevaktsentral: the AMK of the municipalities it serves.
    amk_areas: dict[str, set[str]] = {}
    for row in read_rows(sample_dir / "municipalities.csv"):
        amk_areas.setdefault(row["lvs_id"], set()).add(row["amk_id"])
    for centre in snapshot.centres.values():
        if centre.backup_centre_id is None:
            continue
        backup = snapshot.centre(centre.backup_centre_id)
        assert backup is not None and backup is not centre
        assert backup.service is centre.service
        if centre.service is Service.LEGEVAKT:
            assert amk_areas[backup.centre_id] == amk_areas[centre.centre_id]


def test_sample_uris_are_deterministic_loopback(snapshot: RoutingSnapshot):
    for service, first_port in ((Service.AMK, 5101), (Service.LEGEVAKT, 5201)):
        ids = sorted(c.centre_id for c in snapshot.centres.values() if c.service is service)
        for i, centre_id in enumerate(ids):
            centre = snapshot.centres[centre_id]
            assert centre.uris == (f"sip:{centre_id.lower()}@127.0.0.1:{first_port + i}",)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the reference data in ../shared/data")
def test_generator_reproduces_the_committed_files(tmp_path: Path, sample_dir: Path, data_dir: Path):
    script = REPO_ROOT / "configs" / "tables" / "make_sample_tables.py"
    table_out, data_out = tmp_path / "table", tmp_path / "data"
    subprocess.run(
        [
            sys.executable,
            script,
            SHARED_DATA,
            "--table-dir",
            table_out,
            "--package-data-dir",
            data_out,
        ],
        check=True,
        capture_output=True,
    )
    for out, committed in ((table_out, sample_dir), (data_out, data_dir)):
        names = sorted(p.name for p in out.iterdir())
        _, mismatch, errors = filecmp.cmpfiles(out, committed, names, shallow=False)
        assert (mismatch, errors) == ([], []), "rerun configs/tables/make_sample_tables.py"
