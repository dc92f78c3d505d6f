"""SIP tracing: copies of every SIP message to a Homer/HEPv3 collector over UDP (``[hep]``).

The endpoint's tap (:attr:`sip.transport.SipEndpoint.tap`) calls :meth:`HepSender.capture` for
every message received and sent, on both legs. Capturing only appends to a bounded queue — when
it is full the copy is dropped and counted, the call goes on — and schedules one flush with
``loop.call_soon``: after the message at hand has been handled, the batch is encoded
(:func:`sip.hep.encode_hep3`) and written to a non-blocking UDP socket connected to the
collector. A datagram the kernel will not take (buffer full, collector unreachable) is counted,
never retried: tracing never holds a call up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable

from sip.hep import HepTooLarge, encode_hep3

from .config import HepSettings

log = logging.getLogger("nodrute.hep")

Address = tuple[str, int]

FLUSH_BATCH = 512
"""Packets sent per loop callback at most; the rest wait for the next one (the loop breathes)."""

_WARN_EVERY_S = 10.0


class HepSender:
    """Queues captured SIP messages and sends them as HEPv3 datagrams to the collector."""

    def __init__(self, settings: HepSettings, sock: socket.socket,
                 loop: asyncio.AbstractEventLoop,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._sock = sock
        self._loop = loop
        self._clock = clock
        self._queue: deque[tuple[float, bytes, Address, Address, str]] = deque()
        self._scheduled = False
        self._warned_at: float | None = None
        self.sent = 0
        """HEP packets handed to the kernel."""
        self.dropped = 0
        """Copies lost: queue full, or the socket would have blocked."""
        self.send_errors = 0
        """Datagrams refused by the kernel (e.g. nobody listening at the collector)."""
        self.too_large = 0
        """Messages too large for one HEPv3 packet (over ~65 KB)."""

    @classmethod
    def open(cls, settings: HepSettings, loop: asyncio.AbstractEventLoop | None = None,
             clock: Callable[[], float] = time.time) -> HepSender:
        """A sender with its UDP socket connected to ``settings.host:port``."""
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return cls(settings, sock, loop or asyncio.get_running_loop(), clock)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def capture(self, data: bytes, source: Address, dest: Address, transport: str) -> None:
        """The endpoint's tap: keep a copy for the collector (never blocks, never raises)."""
        if len(self._queue) >= self.settings.queue_size:
            self.dropped += 1
            self._warn_dropping()
            return
        self._queue.append((self._clock(), bytes(data), source, dest, transport))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Encode and send what is queued (at most :data:`FLUSH_BATCH`, then reschedule)."""
        self._scheduled = False
        queue, settings = self._queue, self.settings
        for _ in range(min(len(queue), FLUSH_BATCH)):
            stamp, data, source, dest, transport = queue.popleft()
            try:
                packet = encode_hep3(data, source, dest, transport=transport, timestamp=stamp,
                                     node_id=settings.node_id, auth_key=settings.password)
            except HepTooLarge:
                self.too_large += 1
                continue
            except ValueError:  # an address that is not an IP literal: nothing to say
                self.send_errors += 1
                continue
            try:
                self._sock.send(packet)
            except BlockingIOError:
                self.dropped += 1
                self._warn_dropping()
            except OSError:  # ICMP unreachable from an earlier datagram, and the like
                self.send_errors += 1
            else:
                self.sent += 1
        if queue and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def _warn_dropping(self) -> None:
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("HEP export to %s:%d falling behind: %d SIP copies dropped so far",
                        self.settings.host, self.settings.port, self.dropped)

    def close(self) -> None:
        """Send what is queued, then close the socket."""
        while self._queue:
            self.flush()
        self._sock.close()
