"""Lifecycle of a router node: load config and table, bind, run until told to stop.

Start order: settings → routing snapshot (a bad table stops the start with the validation
errors) → transaction layer + dispatcher → listeners. Stop: SIGTERM/SIGINT set an event; the
listeners close. (Graceful drain with 503 + Retry-After comes with the failover issue.)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from municipality_map import RoutingSnapshot, load_snapshot
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint

from .b2bua import B2bua
from .config import NodruteSettings

log = logging.getLogger("nodrute.app")


@dataclass
class RunningRouter:
    """Handles to a started node (tests use them to look inside)."""

    endpoint: SipEndpoint
    b2bua: B2bua
    snapshot: RoutingSnapshot

    @property
    def port(self) -> int:
        assert self.endpoint.local_address is not None
        return self.endpoint.local_address[1]

    async def close(self) -> None:
        await self.endpoint.close()


def check_default_centres(settings: NodruteSettings, snapshot: RoutingSnapshot) -> None:
    """Refuse to start when a default centre is missing: those calls would have nowhere to go."""
    from municipality_map import Service

    for service in Service:
        centre_id = settings.routing.default_centre(service)
        centre = snapshot.centre(centre_id)
        if centre is None or centre.service is not service or not centre.uris:
            raise SystemExit(
                f"default centre for {service.value} is {centre_id!r}, which is not a "
                f"{service.value} centre with a URI in table {snapshot.version.label}"
            )


async def start_router(settings: NodruteSettings) -> RunningRouter:
    """Load the table, bind the listeners and wire the layers; returns once serving."""
    snapshot = load_snapshot(settings.routing.table_dir)
    check_default_centres(settings, snapshot)
    sip = settings.sip
    layer = TransactionLayer(TimerConfig(t1=sip.t1_s, t2=sip.t2_s, t4=sip.t4_s))
    endpoint = SipEndpoint(layer)
    await endpoint.start(sip.host, sip.port, sip.transports)
    assert endpoint.local_address is not None
    b2bua = B2bua(layer, settings, snapshot, port=endpoint.local_address[1])
    endpoint.user = b2bua
    log.info(
        "nodrute listening on %s:%s (%s), table %s with %d municipalities",
        sip.host, endpoint.local_address[1], "+".join(sip.transports), snapshot.version.label,
        snapshot.municipality_count,
    )
    return RunningRouter(endpoint, b2bua, snapshot)


async def serve(settings: NodruteSettings) -> None:
    """Run a node until SIGTERM or SIGINT."""
    router = await start_router(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping; %d calls in progress", router.b2bua.active_calls)
        await router.close()


def run(settings: NodruteSettings) -> None:
    """Blocking entry point: uvloop when installed (the decided default), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop not installed; running on the default asyncio loop")
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
