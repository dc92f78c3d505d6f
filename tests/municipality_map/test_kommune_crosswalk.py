"""Old municipality numbers (2017-2023): the crosswalk, and how the snapshot routes them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from municipality_map import Centre, RoutingSnapshot, Service
from municipality_map.crosswalk import Crosswalk
from municipality_map.model import MunicipalityRow, TableVersion

CROSSWALK = "kommune_crosswalk_2017_2023_to_2024.csv"
Rows = Callable[[Path], list[dict[str, str]]]


@pytest.fixture(scope="module")
def crosswalk() -> Crosswalk:
    return Crosswalk.bundled()


@pytest.fixture(scope="module")
def targets_by_old(data_dir: Path, read_rows: Rows) -> dict[str, list[dict[str, str]]]:
    grouped: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_rows(data_dir / CROSSWALK):
        grouped[row["source_kommunenummer"]].append(row)
    return dict(grouped)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("0104", "3103"),  # Moss: Østfold 2017-2019 -> Viken -> Østfold again in 2024
        ("3024", "3201"),  # Bærum in Viken (2020-2023)
        ("0219", "3201"),  # Bærum in Akershus (to 2019)
        ("3005", "3301"),  # Drammen in Viken (2020-2023)
    ],
)
def test_renumbered(crosswalk: Crosswalk, snapshot: RoutingSnapshot, old: str, new: str):
    assert crosswalk.current_codes(old) == (new,)
    assert not crosswalk.is_ambiguous_split(old)
    assert crosswalk.preferred(old) == new
    for service in Service:
        found = snapshot.lookup(old, service)
        today = snapshot.lookup(new, service)
        assert found is not None and today is not None
        assert (found.centre, found.kommunenummer, found.requested) == (today.centre, new, old)
        assert found.via_crosswalk and not found.ambiguous


def test_alesund_2020_is_an_ambiguous_split(crosswalk: Crosswalk):
    assert crosswalk.is_ambiguous_split("1507")
    assert set(crosswalk.current_codes("1507")) == {"1508", "1580"}
    # The data leave the genuine split open; the part that kept the name is our stable guess.
    assert crosswalk.preferred("1507") == "1508"


def test_preferred_target_from_the_data_is_used(
    crosswalk: Crosswalk, targets_by_old: dict[str, list[dict[str, str]]]
):
    checked = 0
    for old, rows in targets_by_old.items():
        chosen = [r["kommunenummer_2024"] for r in rows if r["preferred_target"] == "true"]
        if len(rows) > 1 and len(chosen) == 1:
            assert crosswalk.preferred(old) == chosen[0]
            checked += 1
    assert checked > 0


def test_unchanged_and_current_codes_map_to_themselves(
    crosswalk: Crosswalk,
    snapshot: RoutingSnapshot,
    targets_by_old: dict[str, list[dict[str, str]]],
    data_dir: Path,
    read_rows: Rows,
):
    unchanged = [old for old, rows in targets_by_old.items() if rows[0]["code_unchanged"] == "true"]
    assert unchanged
    for code in unchanged:
        assert crosswalk.current_codes(code) == (code,)
    for row in read_rows(data_dir / "kommuner_2024.csv"):
        code = row["kommunenummer"]
        assert crosswalk.current_codes(code) == (code,)
        found = snapshot.lookup(code, Service.AMK)
        assert found is not None and not found.via_crosswalk and found.requested == code


def test_never_valid_number(crosswalk: Crosswalk):
    assert crosswalk.current_codes("9999") == ()
    assert crosswalk.preferred("9999") is None


@pytest.mark.parametrize("service", list(Service))
def test_every_old_number_routes_like_its_area_today(
    snapshot: RoutingSnapshot,
    targets_by_old: dict[str, list[dict[str, str]]],
    sample_dir: Path,
    read_rows: Rows,
    service: Service,
):
    column = "amk_id" if service is Service.AMK else "lvs_id"
    centre_of = {
        r["kommunenummer"]: r[column] for r in read_rows(sample_dir / "municipalities.csv")
    }
    for old, rows in targets_by_old.items():
        targets = [r["kommunenummer_2024"] for r in rows]
        found = snapshot.lookup(old, service)
        same_centre = len({centre_of[t] for t in targets}) == 1
        data_prefers = any(r["preferred_target"] == "true" for r in rows)
        if not same_centre and not data_prefers:
            # A genuine split between centres: the default centre, not a guess.
            assert found is None, old
            continue
        assert found is not None, old
        assert found.kommunenummer in targets
        assert found.centre.centre_id == centre_of[found.kommunenummer]
        # Flagged exactly when the old area's parts are now served by different centres.
        assert found.ambiguous == (not same_centre), old
        assert found.via_crosswalk == (targets != [old])


def test_every_2020_number_is_accepted(snapshot: RoutingSnapshot, data_dir: Path, read_rows: Rows):
    for row in read_rows(data_dir / "kommuner_2020.csv"):
        for service in Service:
            assert snapshot.lookup(row["kommunenummer"], service) is not None


def test_split_between_centres_goes_to_the_default_centre(crosswalk: Crosswalk):
    """1507 Ålesund went to 1508 Ålesund and 1580 Haram: give them different AMK centres."""
    centres = [
        Centre("AMK-A", "A", Service.AMK, ("sip:a@127.0.0.1",), None),
        Centre("AMK-B", "B", Service.AMK, ("sip:b@127.0.0.1",), None),
        Centre("LVS-A", "LA", Service.LEGEVAKT, ("sip:la@127.0.0.1",), None),
    ]
    rows = [
        MunicipalityRow("1508", "Ålesund", "AMK-A", "LVS-A", ""),
        MunicipalityRow("1580", "Haram", "AMK-B", "LVS-A", ""),
    ]
    version = TableVersion("t", datetime(2024, 1, 1, tzinfo=UTC), "test", "", "2024")
    snapshot = RoutingSnapshot(version, centres, rows, crosswalk)

    # A genuine split between two AMK centres: no answer, so the router's default centre.
    assert snapshot.lookup("1507", Service.AMK) is None
    # Both parts share the legevaktsentral: that is the answer, and not ambiguous.
    lvs = snapshot.lookup("1507", Service.LEGEVAKT)
    assert lvs is not None
    assert (lvs.centre.centre_id, lvs.ambiguous) == ("LVS-A", False)
    # Pre-2020 Haram (1534): the data prefer 1580.
    haram = snapshot.lookup("1534", Service.AMK)
    assert haram is not None
    assert (haram.centre.centre_id, haram.kommunenummer, haram.ambiguous) == ("AMK-B", "1580", True)
    # An old number none of whose parts the table routes is not routed either.
    assert snapshot.lookup("0104", Service.AMK) is None
