"""The drop folder: operators copy a table folder in; the node validates, imports, activates.

Every ``[tables] drop_poll_interval_s`` the folder ``[tables] drop_dir`` is listed. Each
sub-folder holding a ``version.toml`` is taken once it has stopped changing (same names, sizes
and modification times on two polls in a row, so a copy in progress is not read half-way).
It is validated and imported; if its ``version.toml`` says ``effective_at`` in the future the
version is scheduled for that instant, otherwise activated now. The outcome (the version and
activation, or every validation error as file:line:column: message) is written next to it as
``<name>.result.txt``, and a folder with a result file is never taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from municipality_map import TableError

from .tables import ActivationLike, TableStoreLike, VersionLike

log = logging.getLogger("nodrute.dropfolder")


Announce = Callable[[ActivationLike, VersionLike], Awaitable[None]]


def result_path(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.result.txt")


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                        for p in folder.iterdir() if p.is_file()))


class DropFolderWatcher:
    """Polls one folder; imports each new table sub-folder once."""

    def __init__(
        self,
        drop_dir: Path,
        store: Callable[[], Awaitable[TableStoreLike]],
        *,
        clock: Callable[[], datetime],
        actor: str,
        on_change: Callable[[], None],
        announce: Announce | None = None,
        interval_s: float = 2.0,
    ) -> None:
        self.drop_dir = drop_dir
        self._store = store
        self.clock = clock
        self.actor = actor
        self._on_change = on_change
        self._announce = announce
        self.interval_s = interval_s
        self._seen: dict[str, tuple[tuple[str, int, int], ...]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("drop folder %s", self.drop_dir)
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> list[Path]:
        """One look at the folder; returns the sub-folders handled (result file written)."""
        if not self.drop_dir.is_dir():
            return []
        handled: list[Path] = []
        for folder in sorted(p for p in self.drop_dir.iterdir() if p.is_dir()):
            if result_path(folder).exists() or not (folder / "version.toml").is_file():
                continue
            fingerprint = _fingerprint(folder)
            if self._seen.get(folder.name) != fingerprint:
                self._seen[folder.name] = fingerprint  # wait one more poll: still copying?
                continue
            text = await self._take(folder)
            result_path(folder).write_text(text, encoding="utf-8")
            self._seen.pop(folder.name, None)
            handled.append(folder)
        return handled

    async def _take(self, folder: Path) -> str:
        try:
            store = await self._store()
            version, report = await store.import_version(folder, actor=self.actor)
        except TableError as err:
            log.error("drop folder: %s rejected:\n%s", folder.name, err)
            return f"REJECTED {folder.name}: nothing imported, the active table stays\n{err}\n"
        except Exception as err:
            log.exception("drop folder: %s not imported", folder.name)
            return f"FAILED {folder.name}: {err} (remove this file to try again)\n"
        lines = [f"IMPORTED {folder.name} as version {version.version_id} "
                 f"({version.label}, sha256 {version.sha256})"]
        lines += [f"warning: {w}" for w in _warnings(report)]
        now = self.clock()
        effective_at: datetime | None = getattr(version, "effective_at", None)
        try:
            if effective_at is not None and effective_at > now:
                activation = await store.schedule(version.version_id, effective_at,
                                                  actor=self.actor)
                lines.append(f"SCHEDULED for {effective_at.isoformat()}")
            else:
                activation = await store.activate(version.version_id, actor=self.actor, now=now)
                lines.append(f"ACTIVATED at {now.isoformat()}")
        except Exception as err:
            log.exception("drop folder: %s imported but not activated", folder.name)
            lines.append(f"FAILED to activate: {err}")
            return "\n".join(lines) + "\n"
        log.info("drop folder: %s", "; ".join(lines))
        self._on_change()
        if self._announce is not None:
            with contextlib.suppress(Exception):
                await self._announce(activation, version)
        return "\n".join(lines) + "\n"


def _warnings(report: Any) -> list[str]:
    return [str(w) for w in getattr(report, "warnings", ())]
