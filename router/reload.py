"""SIGHUP: re-read the config file and apply what can change while calls are up.

The file is read (off the event loop) and validated exactly as at start. A file that cannot be
read or does not validate — or names a default centre the table in force lacks, or IVR prompts
that do not exist — changes nothing: the node keeps its running config, logs why and counts
``nodrute_config_reload_failures_total``.

What applies at once (:data:`RESTART_ONLY` lists the rest):

* ``[log]`` level, format and call_events;
* ``[[trunks]]`` (source CIDRs, municipality sources, header name);
* ``[routing]`` default centres and ring timeouts, ``[failover]`` timers and final codes;
* ``[health]`` interval, timeout and hysteresis (the destinations keep their state);
* ``[ivr]`` flows, when media is anchored (their prompts must exist);
* ``[sip]`` user_agent, max_forwards, drain_retry_after_s, drain_timeout_s (read at SIGTERM).

What needs a restart keeps its running value, with a warning naming each field that differs:
where the node listens and how it times transactions (``[sip]`` host, port, transports,
advertised_host, t1_s/t2_s/t4_s), ``[database]``, ``[tables]``, ``[mqtt]``, ``[metrics]``,
``[media]``, ``[routing] table_dir`` (only read when importing into an empty database), ``[health]
enabled`` (turning probes off with a destination down would keep it down for good) and
``override_poll_interval_s``. ``[location]`` and any other section a later issue adds count as
restart-only until this module is taught otherwise.

Calls in progress keep what they already took: each call holds its trunk and its centre from the
INVITE, and a hunt its timers from when it began; a call read after the reload (a hunt starting
after the IVR, an IVR transfer) sees the new values. The routing table itself is not part of the
config: it follows the table versions in the database.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .config import NodruteSettings, load_settings
from .secrets import mask_secrets

if TYPE_CHECKING:
    from .app import RunningRouter

log = logging.getLogger("nodrute.reload")

RUNTIME_SECTIONS: dict[str, frozenset[str] | None] = {
    "sip": frozenset({"user_agent", "max_forwards", "drain_retry_after_s", "drain_timeout_s"}),
    "routing": frozenset({"default_centre_113", "default_centre_116117",
                          "ring_timeout_113_s", "ring_timeout_116117_s"}),
    "failover": None,
    "trunks": None,
    "log": None,
    "ivr": None,
    "health": frozenset({"interval_s", "timeout_s", "down_after", "up_after"}),
}
"""Sections (None: the whole section) and fields a reload applies; everything else of
:class:`NodruteSettings` is restart-only."""


def merge_reloaded(running: NodruteSettings,
                   loaded: NodruteSettings) -> tuple[NodruteSettings, list[str]]:
    """``loaded`` with every restart-only value taken back from ``running``; also the dotted
    names of the restart-only values that differ (each one warned about by the caller)."""
    keep: dict[str, Any] = {}
    ignored: list[str] = []
    for name in type(running).model_fields:
        old, new = getattr(running, name), getattr(loaded, name)
        if old == new:
            continue
        runtime = RUNTIME_SECTIONS.get(name, frozenset())
        if runtime is None:
            continue
        if not isinstance(old, BaseModel) or not isinstance(new, BaseModel):
            keep[name] = old
            ignored.append(name)
            continue
        fixed = {f: getattr(old, f) for f in type(old).model_fields
                 if f not in runtime and getattr(old, f) != getattr(new, f)}
        if fixed:
            keep[name] = new.model_copy(update=fixed)
            ignored.extend(f"{name}.{f}" for f in fixed)
    return (loaded.model_copy(update=keep) if keep else loaded), ignored


def check_reloaded(router: RunningRouter, settings: NodruteSettings) -> str | None:
    """Why ``settings`` cannot be used by this running node, or None."""
    from .app import default_centre_problem

    problem = default_centre_problem(settings, router.b2bua.snapshot)
    if problem is not None:
        return problem
    media = router.b2bua.media
    if media is not None:
        from ivr.session import missing_prompts

        missing = missing_prompts(settings.ivr, media.catalogue)
        if missing:
            return f"[ivr] prompts missing: {', '.join(missing)}"
    return None


async def reload_config(router: RunningRouter, path: Path) -> bool:
    """Re-read ``path`` and apply it (see the module docstring); False if it was refused."""
    try:
        loaded = await asyncio.to_thread(load_settings, path)
    except (OSError, tomllib.TOMLDecodeError, ValidationError, ValueError) as err:
        return _refused(router, path, f"{type(err).__name__}: {err}")
    running = router.b2bua.settings
    settings, ignored = merge_reloaded(running, loaded)
    problem = check_reloaded(router, settings)
    if problem is not None:
        return _refused(router, path, problem)
    for name in ignored:
        log.warning("config reload: %s changed in %s but needs a restart; keeping the running "
                    "value", name, path)
    if settings.log != running.log:
        from .logs import apply_log_settings

        apply_log_settings(settings.log)  # level, call_events, format
    router.b2bua.reconfigure(settings, router.endpoint.now())
    router.endpoint.pump(router.endpoint.now())  # re-arm the timer for changed probe timers
    log.warning("config reloaded from %s (%d restart-only changes ignored)", path, len(ignored))
    return True


def _refused(router: RunningRouter, path: Path, why: str) -> bool:
    log.error("config reload from %s refused, the running config stays: %s", path,
              mask_secrets(why))
    if router.metrics is not None:
        router.metrics.config_reload_failures.inc()
    return False
