"""Read a routing table directory (two CSV files and ``version.toml``) into rows.

The files are written by operators, often through a spreadsheet, so the reader is lenient
about form (UTF-8 with or without BOM, ``,`` or ``;`` as delimiter, stray spaces) and strict
about content. Every problem found is collected with its file, line and column, and reported
at once in a :class:`TableError`, so a person can fix the whole file in one go.

Only the shape of each row is checked here; whether the rows make a usable table (coverage,
references between files) is :mod:`municipality_map.validate`'s job.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from municipality_map.model import (
    Centre,
    MunicipalityRow,
    OldCodeOverride,
    Service,
    TableVersion,
)

MUNICIPALITIES_FILE = "municipalities.csv"
CENTRES_FILE = "centres.csv"
VERSION_FILE = "version.toml"
OLD_CODES_FILE = "old_codes.csv"
REQUIRED_FILES = (VERSION_FILE, MUNICIPALITIES_FILE, CENTRES_FILE)
"""The files every table directory has."""
OPTIONAL_FILES = (OLD_CODES_FILE,)
"""Files a table directory may have; any other file in the directory is not part of the table."""

MUNICIPALITY_COLUMNS = ("kommunenummer", "kommunenavn", "amk_id", "lvs_id")
MUNICIPALITY_OPTIONAL_COLUMNS = ("note",)
CENTRE_COLUMNS = ("centre_id", "name", "service", "uris")
CENTRE_OPTIONAL_COLUMNS = ("backup_centre_id",)
OLD_CODE_COLUMNS = ("old_kommunenummer", "amk_id", "lvs_id")
OLD_CODE_OPTIONAL_COLUMNS = ("note",)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TableIssue:
    """One problem in a table file, located as precisely as the problem allows."""

    file: str
    """File name, relative to the table directory (or the bundled data directory)."""
    line: int | None
    """1-based line number, or None for a problem with the file as a whole."""
    column: str | None
    """Column (CSV) or key (TOML) concerned, or None."""
    message: str
    """What is wrong and, where possible, how to fix it."""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        column = "" if self.column is None else f" column {self.column}:"
        return f"{where}:{column} {self.message}"


class TableError(Exception):
    """A routing table cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[TableIssue], source: str = "") -> None:
        self.issues: tuple[TableIssue, ...] = tuple(issues)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{count} problem{'s' if count != 1 else ''}{where}:\n{lines}")


@dataclass(frozen=True, slots=True)
class Located(Generic[T]):
    """A parsed row together with the line it came from, for later error messages."""

    item: T
    line: int


@dataclass(frozen=True, slots=True)
class CsvRecord:
    """One data row of a CSV file: trimmed values by column name, and its line number."""

    line: int
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LoadedTable:
    """The three files of a table directory, parsed but not yet cross-checked.

    Rows that could not be parsed are left out and described in ``issues``; ``version`` is
    None if ``version.toml`` is unusable. Reading goes on past problems so that validation can
    still run on the rest and every problem is reported at once.
    """

    directory: Path
    version: TableVersion | None
    municipalities: tuple[Located[MunicipalityRow], ...]
    centres: tuple[Located[Centre], ...]
    issues: tuple[TableIssue, ...]
    old_codes: tuple[Located[OldCodeOverride], ...] = ()
    """Rows of the optional ``old_codes.csv`` (empty if the table has none)."""
    overflow_lines: tuple[tuple[Service, int], ...] = ()
    """Line of each ``[overflow]`` entry of ``version.toml``, for messages about it."""


# --- CSV --------------------------------------------------------------------------------------


def parse_csv(
    data: bytes,
    file: str,
    required: Sequence[str],
    optional: Sequence[str],
    issues: list[TableIssue],
) -> list[CsvRecord]:
    """Split CSV ``data`` into records, appending problems of form to ``issues``.

    Missing optional columns read as empty strings; unknown columns are ignored.
    """
    try:
        # utf-8-sig drops a BOM if present (spreadsheets like to add one).
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        issues.append(
            TableIssue(
                file,
                line,
                None,
                f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8 "
                "(in a spreadsheet: 'CSV UTF-8')",
            )
        )
        return []
    if not text.strip():
        issues.append(TableIssue(file, None, None, "file is empty; it needs a header row"))
        return []

    header_line = text.split("\n", 1)[0]
    # A spreadsheet in a Norwegian locale writes ';', because ',' is the decimal separator.
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip() for name in next(reader)]

    header_ok = True
    for name in sorted({n for n in header if header.count(n) > 1}):
        issues.append(TableIssue(file, 1, name, "column appears more than once in the header"))
        header_ok = False
    for name in required:
        if name not in header:
            issues.append(
                TableIssue(
                    file,
                    1,
                    name,
                    f"missing column (the header has: {', '.join(header)}; "
                    f"delimiter {delimiter!r})",
                )
            )
            header_ok = False
    if not header_ok:
        return []

    wanted = [*required, *(name for name in optional if name in header)]
    index = {name: header.index(name) for name in wanted}
    records: list[CsvRecord] = []
    previous_end = reader.line_num
    try:
        for row in reader:
            line = previous_end + 1  # a quoted value may span lines: report where it starts
            previous_end = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are harmless
            if len(row) != len(header):
                issues.append(
                    TableIssue(
                        file,
                        line,
                        None,
                        f"expected {len(header)} values, found {len(row)} "
                        f"(a value containing {delimiter!r} must be in double quotes)",
                    )
                )
                continue
            values = {name: row[i].strip() for name, i in index.items()}
            for name in optional:
                values.setdefault(name, "")
            records.append(CsvRecord(line, values))
    except csv.Error as exc:
        issues.append(TableIssue(file, reader.line_num, None, f"unreadable CSV: {exc}"))
    return records


def read_file(path: Path, file: str, issues: list[TableIssue]) -> bytes | None:
    """Read a whole file, turning a missing or unreadable file into an issue."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        issues.append(TableIssue(file, None, None, f"file not found (looked for {path})"))
    except OSError as exc:
        issues.append(TableIssue(file, None, None, f"cannot read {path}: {exc.strerror}"))
    return None


# --- field checks -------------------------------------------------------------------------------


def kommunenummer_problem(value: str) -> str | None:
    """Why ``value`` is not a well-formed municipality number, or None if it is one."""
    if re.fullmatch(r"[0-9]{4}", value):
        return None
    if not value:
        return "is empty; it must be a 4-digit municipality number"
    if re.fullmatch(r"[0-9]{1,3}", value):
        # Spreadsheets turn 0301 into 301: the most common mistake by far.
        padded = value.zfill(4)
        name = _current_name(padded)
        named = f" ({name})" if name else ""
        return (
            f"{value!r} is not a 4-digit municipality number; did you mean {padded!r}{named}? "
            "Keep the leading zero (format the column as text in a spreadsheet)"
        )
    if re.fullmatch(r"\s*[0-9]{4}\s*|[0-9]{4}\.0+", value):
        digits = value.strip().split(".")[0]
        return f"{value!r} is not a 4-digit municipality number; did you mean {digits!r}?"
    return f"{value!r} is not a 4-digit municipality number (4 digits, e.g. '0301')"


def _current_name(code: str) -> str | None:
    """Name of today's municipality ``code``, if there is one (for suggestions only)."""
    # Imported here: reference reads its files with this module's CSV reader.
    from municipality_map.reference import municipality_list

    try:
        return municipality_list("2024").get(code)
    except (KeyError, TableError):
        return None


def _service(value: str) -> Service | None:
    try:
        return Service(value)
    except ValueError:
        return None


def parse_municipalities(
    records: Sequence[CsvRecord], file: str, issues: list[TableIssue]
) -> list[Located[MunicipalityRow]]:
    """Turn ``municipalities.csv`` records into rows; rows with problems are left out."""
    rows: list[Located[MunicipalityRow]] = []
    for record in records:
        v = record.values
        problems = len(issues)
        code_problem = kommunenummer_problem(v["kommunenummer"])
        if code_problem:
            issues.append(TableIssue(file, record.line, "kommunenummer", code_problem))
        if not v["kommunenavn"]:
            issues.append(TableIssue(file, record.line, "kommunenavn", "is empty; write the name"))
        if len(issues) == problems:
            row = MunicipalityRow(
                kommunenummer=v["kommunenummer"],
                kommunenavn=v["kommunenavn"],
                amk_id=v["amk_id"] or None,
                lvs_id=v["lvs_id"] or None,
                note=v["note"],
            )
            rows.append(Located(row, record.line))
    return rows


def parse_centres(
    records: Sequence[CsvRecord], file: str, issues: list[TableIssue]
) -> list[Located[Centre]]:
    """Turn ``centres.csv`` records into centres; rows with problems are left out."""
    centres: list[Located[Centre]] = []
    for record in records:
        v = record.values
        problems = len(issues)
        for column in ("centre_id", "name"):
            if not v[column]:
                issues.append(TableIssue(file, record.line, column, "is empty"))
        service = _service(v["service"])
        if service is None:
            accepted = " or ".join(f"{s.value} ({s.name})" for s in Service)
            issues.append(
                TableIssue(file, record.line, "service", f"{v['service']!r} is not {accepted}")
            )
        if service is not None and len(issues) == problems:
            centre = Centre(
                centre_id=v["centre_id"],
                name=v["name"],
                service=service,
                uris=tuple(v["uris"].split()),
                backup_centre_id=v["backup_centre_id"] or None,
            )
            centres.append(Located(centre, record.line))
    return centres


def parse_old_codes(
    records: Sequence[CsvRecord], file: str, issues: list[TableIssue]
) -> list[Located[OldCodeOverride]]:
    """Turn ``old_codes.csv`` records into overrides; rows with problems are left out."""
    rows: list[Located[OldCodeOverride]] = []
    for record in records:
        v = record.values
        code_problem = kommunenummer_problem(v["old_kommunenummer"])
        if code_problem:
            issues.append(TableIssue(file, record.line, "old_kommunenummer", code_problem))
            continue
        if not v["amk_id"] and not v["lvs_id"]:
            message = "names no centre: fill in amk_id, lvs_id or both (or remove the row)"
            issues.append(TableIssue(file, record.line, "amk_id", message))
            continue
        row = OldCodeOverride(
            old_kommunenummer=v["old_kommunenummer"],
            amk_id=v["amk_id"] or None,
            lvs_id=v["lvs_id"] or None,
            note=v["note"],
        )
        rows.append(Located(row, record.line))
    return rows


# --- version.toml -------------------------------------------------------------------------------


def _effective_at(value: object) -> datetime | str:
    """The instant ``value`` names, or a message saying why it does not name one."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not an ISO 8601 date-time like '2024-01-01T00:00:00+01:00'"
    if not isinstance(value, datetime):
        return "must be a date-time like 2024-01-01T00:00:00+01:00"
    if value.tzinfo is None or value.utcoffset() is None:
        # A table switch must happen at one instant on every node, whatever their time zone.
        return f"'{value.isoformat()}' has no UTC offset; add one, e.g. '+01:00' for Norway"
    return value


def parse_version(data: bytes, file: str, issues: list[TableIssue]) -> TableVersion | None:
    """Parse ``version.toml``; None (with issues) if it is not usable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        issues.append(TableIssue(file, None, None, "is not UTF-8; save the file as UTF-8"))
        return None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        issues.append(TableIssue(file, line, None, f"not valid TOML: {exc}"))
        return None

    def line_of(key: str) -> int | None:
        # tomllib does not report positions of values; find the key's line ourselves.
        found = re.search(rf"^[ \t]*{key}[ \t]*=", text, re.MULTILINE)
        return text.count("\n", 0, found.start()) + 1 if found else None

    problems = len(issues)
    texts: dict[str, str] = {}
    for key, required in (
        ("label", True),
        ("author", True),
        ("comment", False),
        ("municipality_list", True),
    ):
        value = doc.get(key, None if required else "")
        if value is None:
            issues.append(TableIssue(file, None, key, "missing key"))
        elif not isinstance(value, str) or (required and not value.strip()):
            issues.append(TableIssue(file, line_of(key), key, "must be a non-empty string"))
        else:
            texts[key] = value.strip()
    effective_at: datetime | str = "missing key"
    if "effective_at" in doc:
        effective_at = _effective_at(doc["effective_at"])
    if isinstance(effective_at, str):
        issues.append(TableIssue(file, line_of("effective_at"), "effective_at", effective_at))
    overflow = _parse_overflow(doc.get("overflow"), text, file, issues)
    if len(issues) != problems or isinstance(effective_at, str):
        return None
    return TableVersion(
        label=texts["label"],
        effective_at=effective_at,
        author=texts["author"],
        comment=texts["comment"],
        municipality_list=texts["municipality_list"],
        overflow=overflow,
    )


def _overflow_key_line(text: str, key: str) -> int | None:
    """Line of ``key = …`` in the ``[overflow]`` table of ``text`` (tomllib has no positions)."""
    section = re.search(r"^[ \t]*\[[ \t]*overflow[ \t]*\][ \t]*(?:#.*)?$", text, re.MULTILINE)
    if section is None:
        return None
    pattern = rf"^[ \t]*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')[ \t]*="
    found = re.compile(pattern, re.MULTILINE).search(text, section.end())
    return text.count("\n", 0, found.start()) + 1 if found else None


def overflow_lines(data: bytes) -> tuple[tuple[Service, int], ...]:
    """Line of each service's ``[overflow]`` entry in ``version.toml`` bytes, where found."""
    text = data.decode("utf-8-sig", errors="replace")
    lines = ((service, _overflow_key_line(text, service.value)) for service in Service)
    return tuple((service, line) for service, line in lines if line is not None)


def _parse_overflow(
    value: object, text: str, file: str, issues: list[TableIssue]
) -> tuple[tuple[Service, str], ...]:
    """The optional ``[overflow]`` table: service number -> centre id, in Service order."""
    if value is None:
        return ()  # tables made before overflow centres existed: no overflow
    if not isinstance(value, dict):
        message = (
            "must be a table of service = centre_id, like [overflow] then 113 = \"AMK-OSLO\" "
            "on the next line"
        )
        issues.append(TableIssue(file, None, "overflow", message))
        return ()
    found: dict[Service, str] = {}
    for key, centre_id in value.items():
        service = _service(key)
        line = _overflow_key_line(text, key)
        if service is None:
            accepted = " or ".join(f"{s.value} ({s.name})" for s in Service)
            message = f"{key!r} is not a service; the keys are the dialled numbers, {accepted}"
            issues.append(TableIssue(file, line, f"overflow.{key}", message))
        elif not isinstance(centre_id, str) or not centre_id.strip():
            message = "must be a centre_id from centres.csv, as a string"
            issues.append(TableIssue(file, line, f"overflow.{key}", message))
        else:
            found[service] = centre_id.strip()
    return tuple((service, found[service]) for service in Service if service in found)


# --- the table ----------------------------------------------------------------------------------


def read_table_files(table_dir: Path, issues: list[TableIssue]) -> dict[str, bytes]:
    """The bytes of the table's files by name: the required ones that could be read (the
    others become issues) and the optional ones that exist."""
    files: dict[str, bytes] = {}
    for name in REQUIRED_FILES:
        data = read_file(table_dir / name, name, issues)
        if data is not None:
            files[name] = data
    for name in OPTIONAL_FILES:
        if (table_dir / name).exists():
            data = read_file(table_dir / name, name, issues)
            if data is not None:
                files[name] = data
    return files


def parse_table(
    files: Mapping[str, bytes], directory: Path, issues: Sequence[TableIssue] = ()
) -> LoadedTable:
    """Parse a table given as file contents (from disk or from the database).

    A missing required file is an issue; ``issues`` are earlier problems (e.g. unreadable files).
    """
    found: list[TableIssue] = list(issues)
    noted = {issue.file for issue in found if issue.line is None}
    for name in REQUIRED_FILES:
        if name not in files and name not in noted:
            found.append(TableIssue(name, None, None, "file missing from the table"))

    version: TableVersion | None = None
    lines_of_overflow: tuple[tuple[Service, int], ...] = ()
    if VERSION_FILE in files:
        version = parse_version(files[VERSION_FILE], VERSION_FILE, found)
        lines_of_overflow = overflow_lines(files[VERSION_FILE])

    municipalities: list[Located[MunicipalityRow]] = []
    if MUNICIPALITIES_FILE in files:
        records = parse_csv(
            files[MUNICIPALITIES_FILE],
            MUNICIPALITIES_FILE,
            MUNICIPALITY_COLUMNS,
            MUNICIPALITY_OPTIONAL_COLUMNS,
            found,
        )
        municipalities = parse_municipalities(records, MUNICIPALITIES_FILE, found)

    centres: list[Located[Centre]] = []
    if CENTRES_FILE in files:
        records = parse_csv(
            files[CENTRES_FILE], CENTRES_FILE, CENTRE_COLUMNS, CENTRE_OPTIONAL_COLUMNS, found
        )
        centres = parse_centres(records, CENTRES_FILE, found)

    old_codes: list[Located[OldCodeOverride]] = []
    if OLD_CODES_FILE in files:
        records = parse_csv(
            files[OLD_CODES_FILE],
            OLD_CODES_FILE,
            OLD_CODE_COLUMNS,
            OLD_CODE_OPTIONAL_COLUMNS,
            found,
        )
        old_codes = parse_old_codes(records, OLD_CODES_FILE, found)

    return LoadedTable(
        directory,
        version,
        tuple(municipalities),
        tuple(centres),
        tuple(found),
        tuple(old_codes),
        lines_of_overflow,
    )


def read_table(table_dir: Path) -> LoadedTable:
    """Read the files of ``table_dir``, collecting problems instead of raising."""
    issues: list[TableIssue] = []
    files = read_table_files(table_dir, issues)
    return parse_table(files, table_dir, issues)


def load_table(table_dir: Path) -> LoadedTable:
    """Read ``table_dir``; raise :class:`TableError` listing every problem of form found.

    This checks each file on its own; :func:`municipality_map.load_snapshot` also checks the
    table as a whole.
    """
    table = read_table(table_dir)
    if table.issues:
        raise TableError(table.issues, str(table_dir))
    return table
