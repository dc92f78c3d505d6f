"""Lifecycle of a router node: load config and table, bind, run until told to stop.

Start order: settings → table store and the version in force (an empty database imports and
activates ``routing.table_dir``; an unreachable one falls back to it from disk; a bad table
stops the start with the validation errors) → transaction layer + dispatcher → listeners →
metrics endpoint → background tasks (table poll, MQTT sync, drop folder). Stop: SIGTERM/SIGINT
set an event; background tasks are cancelled, the listeners close, then the store and the
metrics endpoint. SIGTERM/SIGINT drain first (router/drain.py: new calls 503 + Retry-After,
calls in progress go on until they end or ``[sip] drain_timeout_s``; a second signal releases
them at once); SIGHUP reloads the config file (router/reload.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ivr.engine import MediaEngine
from ivr.prompts import PromptCatalogue
from municipality_map import RoutingSnapshot
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint

from . import gc_policy
from .admission import AdmissionPolicy
from .b2bua import B2bua
from .caller_location import Locators
from .config import NodruteSettings
from .health_overrides import OverridePoller
from .hep import HepSender
from .location import LocationLimits
from .media import MediaContext
from .metrics import NodeMetrics
from .records import CallRecordWriter, chain_hooks, writer_from_settings
from .records_process import RecordSink, sink_from_settings
from .resolve import LocationSource
from .secrets import warn_if_config_exposed
from .tables import ActiveTable, TableManager, utc_now
from .trunk_tls import node_tls_contexts

log = logging.getLogger("nodrute.app")


@dataclass
class RunningRouter:
    """Handles to a started node (tests use them to look inside)."""

    endpoint: SipEndpoint
    b2bua: B2bua
    tables: TableManager
    metrics: NodeMetrics | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    media_engine: MediaEngine | None = None
    """The RTP engine when ``[media] enabled``."""
    records: CallRecordWriter | RecordSink | None = None
    """Call records to the database (``[records] enabled``; a child process with ``process``);
    flushed at close."""
    hep: HepSender | None = None
    """Copies of the SIP messages to a HEPv3 collector (``[hep] enabled``)."""

    @property
    def snapshot(self) -> RoutingSnapshot:
        """The table in force now (what a new call gets)."""
        return self.b2bua.snapshot

    @property
    def port(self) -> int:
        assert self.endpoint.local_address is not None
        return self.endpoint.local_address[1]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.endpoint.close()
        if self.hep is not None:
            self.hep.close()
        if self.media_engine is not None:
            self.media_engine.close()
        if self.records is not None:
            await self.records.close()
        await self.tables.close()
        if self.metrics is not None:
            self.metrics.close()


def default_centre_problem(settings: NodruteSettings, snapshot: RoutingSnapshot) -> str | None:
    """Why ``snapshot`` cannot be used with these settings (a default centre missing), or None."""
    from municipality_map import Service

    for service in Service:
        centre_id = settings.routing.default_centre(service)
        centre = snapshot.centre(centre_id)
        if centre is None or centre.service is not service or not centre.uris:
            return (
                f"default centre for {service.value} is {centre_id!r}, which is not a "
                f"{service.value} centre with a URI in table {snapshot.version.label}"
            )
    return None


def check_default_centres(settings: NodruteSettings, snapshot: RoutingSnapshot) -> None:
    """Refuse to start when a default centre is missing: those calls would have nowhere to go."""
    problem = default_centre_problem(settings, snapshot)
    if problem is not None:
        raise SystemExit(problem)


def table_manager(settings: NodruteSettings, metrics: NodeMetrics | None,
                  current: Callable[[], NodruteSettings] | None = None) -> TableManager:
    """The node's TableManager on the configured database (opened lazily, retried)."""
    from municipality_map.store import StoredVersion, TableStore, snapshot_from_stored

    url = settings.database.url
    _make_sqlite_folder(url)

    async def open_store() -> TableStore:
        return await TableStore.open(url)

    def check(snapshot: RoutingSnapshot) -> None:
        problem = default_centre_problem(current() if current else settings, snapshot)
        if problem is not None:
            raise ValueError(problem)

    return TableManager(
        open_store, lambda version: snapshot_from_stored(cast(StoredVersion, version)),
        clock=utc_now, poll_interval_s=settings.tables.poll_interval_s,
        actor=f"node:{node_id(settings)}", metrics=metrics, check=check,
    )  # fmt: skip


def node_id(settings: NodruteSettings) -> str:
    from municipality_map.sync import default_node_id

    return settings.mqtt.node_id or default_node_id()


def _make_sqlite_folder(url: str) -> None:
    scheme, sep, path = url.partition(":///")
    if sep and scheme.startswith("sqlite") and path.startswith("/"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _background_tasks(settings: NodruteSettings, tables: TableManager,
                      metrics: NodeMetrics | None) -> list[asyncio.Task[None]]:
    """The table poll, the MQTT session and the drop folder, as tasks."""
    tasks = [asyncio.create_task(tables.run(), name="tables-poll")]
    announce: Callable[[Any, Any], Awaitable[None]] | None = None
    if settings.mqtt.url:
        from municipality_map.sync import ActivationNotice, TableSync, publish_activation

        def heard(notice: ActivationNotice) -> None:
            tables.announced(notice.version_id, notice.sha256)

        sync = TableSync(settings.mqtt.url, settings.mqtt.topic_prefix, node_id(settings), heard,
                         on_failure=metrics.reload_failed if metrics else lambda: None)

        def publish(active: ActiveTable) -> None:
            sync.publish_active({
                "version_id": active.version_id, "label": active.label,
                "sha256": active.sha256, "activated_at": active.activated_at.isoformat(),
            })

        if tables.active is not None:
            publish(tables.active)
        tables.on_switch.append(publish)
        tasks.append(asyncio.create_task(sync.run(), name="mqtt-sync"))

        async def publish_to_broker(activation: Any, version: Any) -> None:
            await publish_activation(settings.mqtt.url, settings.mqtt.topic_prefix,
                                     activation, version)

        announce = publish_to_broker
    if settings.tables.drop_dir is not None:
        from .dropfolder import DropFolderWatcher

        async def store() -> Any:
            return await tables._ensure_store()

        watcher = DropFolderWatcher(
            settings.tables.drop_dir, store, clock=utc_now, actor=f"drop:{node_id(settings)}",
            on_change=tables.notify, announce=announce,
            interval_s=settings.tables.drop_poll_interval_s,
        )  # fmt: skip
        tasks.append(asyncio.create_task(watcher.run(), name="drop-folder"))
    return tasks


def check_media(settings: NodruteSettings) -> PromptCatalogue:
    """With ``[media] enabled``: the loaded prompt catalogue, or SystemExit naming the problem.

    Refuses a port range the engine cannot use and flows naming prompts that do not exist, so
    a node never starts that would play dead air."""
    from ivr.engine import PortRange
    from ivr.session import missing_prompts

    media = settings.media
    try:
        PortRange(media.rtp_port_first, media.rtp_port_last)
    except ValueError as err:
        raise SystemExit(f"[media] bad RTP port range: {err}") from None
    catalogue = PromptCatalogue.load()
    missing = missing_prompts(settings.ivr, catalogue)
    if missing:
        raise SystemExit(f"[media] prompts missing: {', '.join(missing)} "
                         "(run `nodrute prompts build`)")
    return catalogue


def _start_media(settings: NodruteSettings, catalogue: PromptCatalogue, b2bua: B2bua,
                 endpoint: SipEndpoint) -> MediaEngine:
    """The in-process RTP engine, its events routed to calls by leg id; probes the range."""
    from ivr.engine import AsyncioMediaEngine, MediaEngineError, MediaEvent, PortRange

    media = settings.media

    def on_event(event: MediaEvent) -> None:
        now = endpoint.now()
        b2bua.handle_media_event(event, now)
        endpoint.pump(now)  # send what the call queued, re-arm the timer

    engine = AsyncioMediaEngine(media.address, PortRange(media.rtp_port_first,
                                                         media.rtp_port_last), on_event)
    try:
        engine.allocate("startup-probe")
    except (MediaEngineError, OSError) as err:
        engine.close()
        raise SystemExit(f"[media] cannot bind RTP ports on {media.address} in "
                         f"{media.rtp_port_first}-{media.rtp_port_last}: {err}") from None
    engine.release("startup-probe")
    b2bua.media = MediaContext(engine, catalogue, settings.ivr)
    return engine


async def _start_health(settings: NodruteSettings, tables: TableManager, b2bua: B2bua,
                        endpoint: SipEndpoint, metrics: NodeMetrics | None) -> OverridePoller:
    """Read the operator overrides, then start probing (router/health.py)."""

    async def store() -> Any:
        return await tables._ensure_store()

    overrides = OverridePoller(store, b2bua.health,
                               interval_s=settings.health.override_poll_interval_s)
    await overrides.refresh()  # a drained centre stays drained across a restart
    b2bua.health.observer = metrics
    b2bua.start_health(endpoint.now())
    endpoint.pump(endpoint.now())  # arm the timer for the first probes
    return overrides


async def load_locators(settings: NodruteSettings) -> Locators:
    """The position and postcode indexes the trunks' location sources need (off the loop).

    A broken index is logged and left out: the node still routes by the carrier's hints."""
    wanted = {source for trunk in settings.trunks for source in trunk.municipality_sources}
    location = settings.location
    limits = LocationLimits(max_xml_bytes=location.max_pidf_bytes)
    geo = postcodes = None
    if LocationSource.GEO in wanted:
        try:
            from municipality_map.geo import MunicipalityLocator

            geo = await asyncio.to_thread(
                MunicipalityLocator.bundled, max_nearest_m=location.max_nearest_m)
        except Exception:
            log.exception("municipality boundaries not loaded: PIDF-LO positions are IGNORED")
    if LocationSource.POSTCODE in wanted:
        try:
            from municipality_map.postcodes import PostcodeIndex

            postcodes = await asyncio.to_thread(PostcodeIndex.load)
        except Exception:
            log.exception("postcode register not loaded: civic postcodes are IGNORED")
    return Locators(geo, postcodes, location.max_uncertainty_m, limits)


async def start_router(settings: NodruteSettings) -> RunningRouter:
    """Load the table, bind the listeners and wire the layers; returns once serving."""
    catalogue = check_media(settings) if settings.media.enabled else None
    metrics = NodeMetrics(answer_time=settings.metrics.answer_time) \
        if settings.metrics.enabled else None
    serving: list[B2bua] = []  # a table switch checks the default centres in force (SIGHUP)
    tables = table_manager(settings, metrics,
                           lambda: serving[0].settings if serving else settings)
    try:
        snapshot = await tables.start(
            settings.routing.table_dir,
            import_on_empty=settings.tables.import_configured_table_on_empty,
        )
        check_default_centres(settings, snapshot)
    except BaseException:
        await tables.close()
        raise
    try:
        locators = await load_locators(settings)
        tls = node_tls_contexts(settings)
        hep = HepSender.open(settings.hep) if settings.hep.enabled else None
    except BaseException:
        await tables.close()
        raise
    sip = settings.sip
    layer = TransactionLayer(TimerConfig(t1=sip.t1_s, t2=sip.t2_s, t4=sip.t4_s))
    endpoint = SipEndpoint(layer, tls=tls)
    endpoint.tap = hep.capture if hep is not None else None  # SIP tracing (router/hep.py)
    await endpoint.start(sip.host, sip.port, sip.transports)
    assert endpoint.local_address is not None
    records: CallRecordWriter | RecordSink | None = (
        sink_from_settings(settings, metrics) if settings.records.process
        else writer_from_settings(settings, metrics))
    b2bua = B2bua(layer, settings, snapshot, port=endpoint.local_address[1],
                  on_call_ended=chain_hooks(metrics.call_ended if metrics else None,
                                            records.submit if records else None),
                  on_failover=metrics.failover if metrics else None,
                  on_hunt_exhausted=metrics.hunt_exhausted if metrics else None,
                  on_routed=metrics.routed if metrics else None,
                  locators=locators)
    if endpoint.tls_address is not None:
        b2bua.tls_port = endpoint.tls_address[1]
        log.info("SIP over TLS on %s:%d", *endpoint.tls_address)
        endpoint.on_tls_handshake_failed = metrics.note_rejected if metrics else None
    endpoint.user = b2bua
    admission = AdmissionPolicy(lambda: b2bua.settings, lambda: b2bua.snapshot,
                                on_reject=metrics.note_rejected if metrics else None)
    endpoint.admission = admission  # strangers dropped before parsing (router/admission.py)
    b2bua.on_rejected = metrics.note_rejected if metrics else None
    serving.append(b2bua)
    media_engine: MediaEngine | None = None
    if catalogue is not None:
        try:
            media_engine = _start_media(settings, catalogue, b2bua, endpoint)
        except BaseException:
            await endpoint.close()
            await tables.close()
            raise
    tables.attach(b2bua)
    overrides = await _start_health(settings, tables, b2bua, endpoint, metrics)
    if metrics is not None:
        metrics.track_active_calls(lambda: b2bua.active_calls)
        endpoint.traffic = metrics.traffic
        metrics.track_blocked_sources(lambda: admission.limiter.blocked_count(endpoint.now()))
        try:
            metrics.serve(settings.metrics.host, settings.metrics.port)
        except OSError:
            log.exception("metrics endpoint %s:%d not started; routing goes on without it",
                          settings.metrics.host, settings.metrics.port)
    # loop= is read by the bench (issue 3: record whether uvloop was on)
    loop_name = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"
    log.info(
        "nodrute listening on %s:%s (%s) loop=%s, table %s with %d municipalities",
        sip.host, endpoint.local_address[1], "+".join(sip.transports), loop_name,
        snapshot.version.label, snapshot.municipality_count,
    )
    tasks = _background_tasks(settings, tables, metrics)
    tasks.append(asyncio.create_task(overrides.run(), name="centre-overrides"))
    if records is not None:
        records.start()
    return RunningRouter(endpoint, b2bua, tables, metrics, tasks, media_engine, records, hep)


async def serve(settings: NodruteSettings, config_path: Path | None = None) -> None:
    """Run a node until SIGTERM or SIGINT, then drain; SIGHUP reloads ``config_path``."""
    from .drain import drain_node
    from .reload import reload_config

    warn_if_config_exposed(config_path)
    router = await start_router(settings)
    collections = gc_policy.tune_for_latency()  # no 100+ ms full-GC pauses under traffic
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop_signal() -> None:
        (hurry if stop.is_set() else stop).set()  # the second one: stop at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal)
    reloads: set[asyncio.Task[bool]] = set()
    if config_path is not None:
        def on_hangup() -> None:
            task = loop.create_task(reload_config(router, config_path), name="config-reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await stop.wait()
        sip = router.b2bua.settings.sip
        await drain_node(router.b2bua, router.endpoint, timeout_s=sip.drain_timeout_s,
                         retry_after_s=sip.drain_retry_after_s, hurry=hurry,
                         metrics=router.metrics)
    finally:
        log.info("stopping; %d calls in progress", router.b2bua.active_calls)
        collections.cancel()
        await router.close()


def run(settings: NodruteSettings, config_path: Path | None = None) -> None:
    """Blocking entry point: uvloop when installed (the decided default), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop not installed; running on the default asyncio loop")
        asyncio.run(serve(settings, config_path))
    else:
        uvloop.run(serve(settings, config_path))
