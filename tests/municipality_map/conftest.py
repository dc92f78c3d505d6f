"""Shared fixtures: the committed sample table, and writable copies of it to break."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "municipality_map" / "data"


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def read_rows() -> Callable[[Path], list[dict[str, str]]]:
    """Rows of a CSV file, read with the csv module alone (independent of the loader)."""
    return _read_rows


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The bundled reference data, ``municipality_map/data``."""
    return DATA_DIR


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return default_table_dir()


@pytest.fixture(scope="session")
def snapshot(sample_dir: Path) -> RoutingSnapshot:
    return load_snapshot(sample_dir)


@pytest.fixture
def table_copy(tmp_path: Path, sample_dir: Path) -> Path:
    """A writable copy of the sample table."""
    target = tmp_path / "table"
    shutil.copytree(sample_dir, target)
    return target


class EditableCsv:
    """Line-level edits of a copied table file, remembering which line changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = path.read_text(encoding="utf-8").splitlines()

    def line_of(self, first_field: str) -> int:
        """1-based line number of the row whose first field is ``first_field``."""
        for number, line in enumerate(self.lines, start=1):
            if line.split(",", 1)[0] == first_field:
                return number
        raise LookupError(first_field)

    def set_field(self, first_field: str, column: str, value: str) -> int:
        """Set one field of one row; return the row's line number."""
        header = self.lines[0].split(",")
        number = self.line_of(first_field)
        row = next(csv.reader([self.lines[number - 1]]))
        row[header.index(column)] = value
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(row)
        self.lines[number - 1] = buf.getvalue()
        return number

    def field(self, first_field: str, column: str) -> str:
        """The value of one field of one row."""
        header = self.lines[0].split(",")
        row = next(csv.reader([self.lines[self.line_of(first_field) - 1]]))
        return row[header.index(column)]

    def save(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


@pytest.fixture
def edit(table_copy: Path) -> Callable[[str], EditableCsv]:
    """``edit("municipalities.csv")`` -> an editor for that file of ``table_copy``."""
    return lambda name: EditableCsv(table_copy / name)
