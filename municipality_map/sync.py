"""Table activations between nodes over MQTT (aiomqtt 2.x).

Topics (``prefix`` is ``[mqtt] topic_prefix``):

- ``{prefix}/tables/activation`` (retained): the last activation or schedule anyone made,
  JSON ``{"version_id": 3, "sha256": "…", "effective_at": "2020-01-07T07:00:00+00:00"}``.
  It is only a nudge: the database stays the authority, so a node receiving it re-reads the
  activations, fetches the version, checks its hash and arms or switches.
- ``{prefix}/nodes/{node_id}/active`` (retained): what a node has in force, JSON with
  ``state`` ``online``; the broker replaces it with ``{"state": "offline"}`` (last will) when
  the node vanishes.

A broker outage only delays the nudge: every node also polls the database. Knows nothing of SIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiomqtt

log = logging.getLogger("nodrute.sync")

OFFLINE = json.dumps({"state": "offline"})


class _ActivationLike(Protocol):
    @property
    def version_id(self) -> int: ...
    @property
    def effective_at(self) -> datetime: ...


class _VersionLike(Protocol):
    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class ActivationNotice:
    """What a ``tables/activation`` message says."""

    version_id: int
    sha256: str
    effective_at: datetime


def broker_address(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``host:port``) -> (host, port); port defaults to 1883."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        # not the URL itself: it may carry a password
        raise ValueError(f"not an MQTT broker URL (mqtt://host:port): scheme {parts.scheme!r}, "
                         f"host {parts.hostname!r}")
    return parts.hostname, parts.port or 1883


def activation_topic(prefix: str) -> str:
    return f"{prefix}/tables/activation"


def node_topic(prefix: str, node_id: str) -> str:
    return f"{prefix}/nodes/{node_id}/active"


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def encode_activation(activation: _ActivationLike, version: _VersionLike) -> str:
    return json.dumps({
        "version_id": activation.version_id,
        "sha256": version.sha256,
        "effective_at": activation.effective_at.isoformat(),
    })


def decode_activation(payload: bytes | str) -> ActivationNotice:
    """Raises ValueError on anything but the expected JSON object."""
    try:
        data = json.loads(payload)
        effective_at = datetime.fromisoformat(str(data["effective_at"]))
        notice = ActivationNotice(int(data["version_id"]), str(data["sha256"]), effective_at)
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"not an activation notice: {payload!r}") from err
    if effective_at.tzinfo is None:
        raise ValueError(f"effective_at without a time zone: {payload!r}")
    return notice


async def publish_activation(
    url: str, topic_prefix: str, activation: _ActivationLike, version: _VersionLike,
    *, timeout_s: float = 5.0,
) -> None:
    """Announce an activation or schedule (retained); used by ``nodrute table …``.

    Raises aiomqtt.MqttError (or TimeoutError) if the broker cannot be reached.
    """
    host, port = broker_address(url)
    async with asyncio.timeout(timeout_s), aiomqtt.Client(
        host, port, identifier=f"nodrute-cli-{default_node_id()}", timeout=timeout_s,
    ) as client:
        await client.publish(activation_topic(topic_prefix),
                             encode_activation(activation, version), qos=1, retain=True)


class TableSync:
    """One node's MQTT session: hears activation notices, publishes what it has in force."""

    def __init__(
        self,
        url: str,
        topic_prefix: str,
        node_id: str,
        on_notice: Callable[[ActivationNotice], None],
        *,
        on_failure: Callable[[], None] = lambda: None,
        reconnect_s: float = 2.0,
    ) -> None:
        self.host, self.port = broker_address(url)
        self.prefix = topic_prefix
        self.node_id = node_id or default_node_id()
        self._on_notice = on_notice
        self._on_failure = on_failure
        self.reconnect_s = reconnect_s
        self._status: str | None = None
        self._status_changed = asyncio.Event()
        self.connected = False

    def publish_active(self, status: Mapping[str, Any]) -> None:
        """Publish this node's table (retained) now, or as soon as the broker is reachable."""
        self._status = json.dumps({"state": "online", "node_id": self.node_id, **status})
        self._status_changed.set()

    async def run(self) -> None:
        """Stay connected until cancelled; reconnect after ``reconnect_s`` on any loss."""
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as err:
                self.connected = False
                self._on_failure()
                log.warning("MQTT broker %s:%d: %s; retrying in %.0f s (the database poll "
                            "keeps the tables current)", self.host, self.port, err,
                            self.reconnect_s)
            await asyncio.sleep(self.reconnect_s)

    async def _session(self) -> None:
        own = node_topic(self.prefix, self.node_id)
        will = aiomqtt.Will(own, OFFLINE, qos=1, retain=True)
        async with aiomqtt.Client(self.host, self.port, identifier=f"nodrute-{self.node_id}",
                                  will=will, keepalive=10) as client:
            self.connected = True
            log.info("MQTT connected to %s:%d as %s", self.host, self.port, self.node_id)
            await client.subscribe(activation_topic(self.prefix), qos=1)
            publisher = asyncio.create_task(self._publish_status(client, own))
            try:
                async for message in client.messages:
                    self._received(message.payload)
            except asyncio.CancelledError:
                # A clean stop sends DISCONNECT, which suppresses the will: say it ourselves.
                publisher.cancel()
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await client.publish(own, OFFLINE, qos=1, retain=True)
                raise
            finally:
                publisher.cancel()
                self.connected = False

    async def _publish_status(self, client: aiomqtt.Client, topic: str) -> None:
        self._status_changed.set()  # (re)publish on every (re)connect
        while True:
            await self._status_changed.wait()
            self._status_changed.clear()
            if self._status is not None:
                try:
                    await client.publish(topic, self._status, qos=1, retain=True)
                except aiomqtt.MqttError as err:
                    log.warning("could not publish this node's table: %s", err)
                    return

    def _received(self, payload: object) -> None:
        if not isinstance(payload, bytes | str):
            log.warning("ignoring a non-text activation notice")
            return
        try:
            notice = decode_activation(payload)
        except ValueError as err:
            self._on_failure()
            log.warning("%s", err)
            return
        log.info("activation notice: version %d (sha256 %s…) effective %s",
                 notice.version_id, notice.sha256[:12], notice.effective_at.isoformat())
        self._on_notice(notice)
