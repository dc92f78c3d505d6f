"""Routing-table variants shared by the sans-IO and end-to-end tests."""

from __future__ import annotations

import csv
from pathlib import Path


def strip_fallbacks(table_dir: Path) -> Path:
    """Edit a table directory in place: no backup centres, no ``[overflow]``.

    Every destination plan is then just the centre's own URIs, so a failure at the centre
    reaches the caller instead of moving the call on.
    """
    path = table_dir / "centres.csv"
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fieldnames = list(reader.fieldnames or [])
        rows = list(reader)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "backup_centre_id": ""} for row in rows)
    version = table_dir / "version.toml"
    version.write_text(version.read_text(encoding="utf-8").split("[overflow]")[0],
                       encoding="utf-8")
    return table_dir
