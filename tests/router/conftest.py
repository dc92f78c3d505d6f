"""Fixtures for the router tests (the harness itself is in b2bua_harness.py)."""

from __future__ import annotations

from b2bua_harness import centre_uris, harness, lone_snapshot, snapshot, table_rows

__all__ = ["centre_uris", "harness", "lone_snapshot", "snapshot", "table_rows"]
