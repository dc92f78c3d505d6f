"""Helpers for the table-switch end-to-end tests: table copies, arrival times, /metrics."""

from __future__ import annotations

import csv
import io
import re
import shutil
import urllib.request
from datetime import datetime
from pathlib import Path

from router_process import TABLE_DIR
from sipp_harness import SippProcess, uri_user

_STAMP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d [\d:.]+)\s*$", re.MULTILINE)


def make_table(dst: Path, label: str, *, amk: dict[str, str] | None = None,
               ports: dict[str, int] | None = None) -> Path:
    """A copy of the sample table labelled ``label``, with municipality -> AMK centre moves
    (``amk``) and centres moved to other 127.0.0.1 ports (``ports``: centre_id -> port)."""
    shutil.copytree(TABLE_DIR, dst)
    version = (dst / "version.toml").read_text(encoding="utf-8")
    version = re.sub(r'^label = ".*"$', f'label = "{label}"', version, count=1, flags=re.M)
    (dst / "version.toml").write_text(version, encoding="utf-8")
    _rewrite(dst / "municipalities.csv", "kommunenummer", "amk_id", amk or {})
    uris = {cid: f"sip:{cid.lower()}@127.0.0.1:{port}" for cid, port in (ports or {}).items()}
    _rewrite(dst / "centres.csv", "centre_id", "uris", uris)
    return dst


def _rewrite(path: Path, key: str, column: str, values: dict[str, str]) -> None:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    for row in rows:
        if row[key] in values:
            row[column] = values[row[key]]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def arrivals(uas: SippProcess) -> dict[str, float]:
    """caller number -> when (Unix seconds, SIPp's log stamp) its INVITE reached this centre
    (first copy; retransmissions ignored)."""
    path = uas.message_file
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    found: dict[str, float] = {}
    stamps = list(_STAMP.finditer(text))
    for n, stamp in enumerate(stamps):
        end = stamps[n + 1].start() if n + 1 < len(stamps) else len(text)
        lines = [line for line in text[stamp.end():end].splitlines() if line.strip()]
        if len(lines) < 2 or "message received" not in lines[0]:
            continue
        if not lines[1].startswith("INVITE "):
            continue
        sender = next((line.split(":", 1)[1] for line in lines[2:]
                       if line.lower().startswith(("from:", "f:"))), "")
        caller = uri_user(sender)
        if caller and caller not in found:
            found[caller] = datetime.fromisoformat(stamp.group(1)).timestamp()
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text: str = response.read().decode()
    return text


def table_label(metrics_text: str) -> str | None:
    """The ``version`` label of ``nodrute_routing_table_info`` in a scrape, if any."""
    match = re.search(r'^nodrute_routing_table_info\{[^}]*version="([^"]*)"[^}]*\} 1\.0$',
                      metrics_text, re.M)
    return match.group(1) if match else None
