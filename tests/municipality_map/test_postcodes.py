"""Postcode -> municipality from the bundled Bring register (2024 municipality numbers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from municipality_map.loader import CsvRecord, TableError
from municipality_map.postcodes import (
    PostcodeCategory,
    PostcodeIndex,
    normalise_postcode,
)
from municipality_map.reference import municipality_list, routable_special_codes

Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def index() -> PostcodeIndex:
    return PostcodeIndex.load()


@pytest.fixture(scope="module")
def register(data_dir: Path, read_rows: Callable[[Path], Rows]) -> Rows:
    """The bundled file read with the csv module alone."""
    return read_rows(data_dir / "postnummer_2024.csv")


def test_every_row_of_the_register_is_indexed(index: PostcodeIndex, register: Rows) -> None:
    assert len(index) == len(register) == 5137
    for row in register:
        entry = index.entry(row["postnummer"])
        assert entry is not None, row
        assert (entry.kommunenummer, entry.category.value, entry.place) == (
            row["kommunenummer"], row["kategori"], row["poststed"])


def test_address_postcodes_answer_and_po_box_or_service_codes_do_not(
        index: PostcodeIndex, register: Rows) -> None:
    for row in register:
        is_address = row["kategori"] in ("G", "B")
        expected = row["kommunenummer"] if is_address else None
        assert index.municipality_for(row["postnummer"]) == expected, row
        assert index.municipality_for(row["postnummer"], addresses_only=False) \
            == row["kommunenummer"]
    categories = {row["kategori"] for row in register}
    assert categories == {"G", "B", "P", "S"}  # every branch above was taken


def test_known_places_use_2024_numbers(index: PostcodeIndex) -> None:
    assert index.municipality_for("0150") == "0301"  # Oslo
    assert index.municipality_for("1337") == "3201"  # Sandvika: Bærum, 3024 until 2023
    assert index.municipality_for("7011") == "5001"  # Trondheim
    assert index.municipality_for("9170") == "2100"  # Longyearbyen, Svalbard
    po_box = index.entry("0001")
    assert po_box is not None and po_box.category is PostcodeCategory.PO_BOX
    assert index.municipality_for("0001") is None


def test_municipalities_are_2024_codes_and_all_have_an_address_postcode(
        index: PostcodeIndex, register: Rows) -> None:
    known = set(municipality_list("2024")) | set(routable_special_codes())
    assert index.municipalities() <= known
    with_address = {row["kommunenummer"] for row in register
                    if index.municipality_for(row["postnummer"]) is not None}
    assert set(municipality_list("2024")) <= with_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0150", "0150"), (" 0150\t", "0150"), ("01 50", "0150"), ("150", None),
     ("01500", None), ("", None), ("abcd", None), ("\u0660\u0661\u0665\u0660", None),
     ("NO-0150", None)],
)
def test_postcode_normalisation(text: str, expected: str | None) -> None:
    assert normalise_postcode(text) == expected


def test_lookup_tolerates_spaces_and_rejects_unknown(index: PostcodeIndex) -> None:
    assert index.municipality_for(" 0150 ") == "0301"
    assert index.municipality_for("0000") is None
    assert index.municipality_for("oslo") is None


def test_load_reads_the_file_once(index: PostcodeIndex) -> None:
    assert PostcodeIndex.load() is index


def record(line: int, postnummer: str, kommune: str, kategori: str) -> CsvRecord:
    return CsvRecord(line, {"postnummer": postnummer, "poststed": "STED",
                            "kommunenummer": kommune, "kategori": kategori})


def test_damaged_register_reports_every_bad_row() -> None:
    records = [
        record(2, "0150", "0301", "G"),
        record(3, "150", "0301", "G"),
        record(4, "0150", "0301", "G"),
        record(5, "0160", "301", "G"),
        record(6, "0170", "0301", "X"),
    ]
    with pytest.raises(TableError) as caught:
        PostcodeIndex.from_records(records)
    assert [(i.line, i.column) for i in caught.value.issues] == [
        (3, "postnummer"), (4, "postnummer"), (5, "kommunenummer"), (6, "kategori")]


def test_index_from_good_records() -> None:
    built = PostcodeIndex.from_records([record(2, "0150", "0301", "G"),
                                        record(3, "0151", "0301", "S")])
    assert len(built) == 2
    assert built.municipality_for("0150") == "0301"
    assert built.municipality_for("0151") is None
