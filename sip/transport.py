"""The asyncio side of the SIP core: sockets, clocks, nothing else (RFC 3261 §18).

Like aioquic's asyncio protocol, this is the thin shell around the sans-IO core: bytes arrive →
parse → :class:`~sip.transaction.TransactionLayer` → events to the transaction user → whatever the
layer queued is sent → one re-armed ``loop.call_at`` timer for the earliest deadline of the layer
and the user. UDP and TCP share that path; TCP adds framing (§18.3) and a connection table keyed
by the peer's address, so responses and in-dialog requests go back over the connection they
belong to (§18.2.2).

Malformed requests are answered statelessly with the status the parser chose (400/505/416…);
malformed responses are dropped (§18.1.2). Nothing a peer sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from .errors import SipParseError
from .events import Outgoing
from .message import Message
from .parser import DEFAULT_LIMITS, ParserLimits, StreamFramer, parse_message
from .stateless import error_response_bytes
from .tls import PeerIdentity, TlsContexts, peer_identity
from .transaction import TransactionLayer

log = logging.getLogger("nodrute.sip.transport")

Address = tuple[str, int]

DEFAULT_UDP_BUFFER_BYTES = 4 * 1024 * 1024
"""SO_RCVBUF/SO_SNDBUF asked for on the UDP socket (the kernel caps it at net.core.rmem_max).

At 1,000 calls/s a B2BUA receives ~7,000 datagrams a second; Linux's default 208 KiB receive
buffer holds ~200 of them, i.e. ~30 ms of traffic. Any longer pause of the loop (a GC pass, the
CPU taken by a neighbour on a shared machine) then drops datagrams, which come back as
retransmissions 500 ms later and, under load, as failed calls. A few MiB ride such pauses out."""


class TransactionUser(Protocol):
    """What sits on top of the transaction layer (the B2BUA dispatcher)."""

    def handle_event(self, event: object, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def handle_timers(self, now: float) -> None: ...


class TrafficCounter(Protocol):
    """Told of every message on the wire (the node's SIP message metrics); must be cheap."""

    def received(self, message: Message) -> None: ...
    def sent(self, data: bytes) -> None: ...
    def malformed(self) -> None: ...


class Admission(enum.Enum):
    """What the admission check says about one message, before it is parsed."""

    ADMIT = "admit"
    DROP = "drop"
    """Dropped unanswered, unparsed."""
    REJECT = "reject"
    """A request answered 403 statelessly (no transaction); a response or ACK is dropped."""


class AdmissionCheck(Protocol):
    """Decides by source who gets parsed at all (router/admission.py); must be cheap. An
    inbound TCP/TLS connection is asked about once as ``data=b""`` before any byte is read."""

    def admit(self, data: bytes, source: Address, transport: str, now: float) -> Admission: ...


MessageTap = Callable[[bytes, Address, Address, str], None]
"""Told of every SIP message on the wire: (data, source, destination, transport); must not block
(SIP tracing: router/hep.py queues a copy and sends it later)."""


class _NullUser:
    def handle_event(self, event: object, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def handle_timers(self, now: float) -> None:
        pass


class SipEndpoint:
    """Listens on UDP and/or TCP, feeds the transaction layer, sends what it queues."""

    def __init__(self, layer: TransactionLayer, *, limits: ParserLimits = DEFAULT_LIMITS,
                 udp_buffer_bytes: int | None = DEFAULT_UDP_BUFFER_BYTES,
                 tls: TlsContexts | None = None) -> None:
        self.layer = layer
        self.tls = tls
        """TLS contexts and listen port (RFC 3261 §26); None: no TLS either way."""
        self.tls_address: Address | None = None
        """Where the TLS listener is bound (``start`` with ``TLS`` among the transports)."""
        self.tls_handshake_failures = 0
        """TLS handshakes that failed, ours and our peers' (logged, never raised)."""
        self.on_tls_handshake_failed: Callable[[str], None] | None = None
        """Told ``"tls_handshake"`` when a peer's handshake with our listener fails (metric)."""
        self._tls_listener: socket.socket | None = None
        self._tls_accepting: asyncio.Task[None] | None = None
        self._tls_connections: dict[Address, _TcpConnection] = {}
        self._tls_connecting: dict[Address, list[bytes]] = {}
        self._tls_handshakes: set[asyncio.Task[None]] = set()
        self.udp_buffer_bytes = udp_buffer_bytes
        """Socket buffer size asked for on UDP (``None``: the system default)."""
        self.user: TransactionUser = _NullUser()
        self.limits = limits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UdpProtocol | None = None
        self._udp_reader: socket.socket | None = None
        """A duplicate of the UDP socket's descriptor, read directly before timers run."""
        self._tcp_servers: list[asyncio.Server] = []
        self._connections: dict[Address, _TcpConnection] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.local_address: Address | None = None
        self.dropped_malformed = 0
        """Malformed messages seen (answered 4xx/5xx when they were requests)."""
        self.traffic: TrafficCounter | None = None
        """Counts what is received and sent, retransmissions included; None: not counted."""
        self.admission: AdmissionCheck | None = None
        """Asked about every message before parsing (flood and stranger control); None: all."""
        self.tap: MessageTap | None = None
        """Given every admitted message received and every message sent; None: no tracing."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int, transports: Iterable[str]) -> None:
        """Bind the listeners. With ``port=0`` UDP picks a port and TCP binds the same one."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        wanted = {t.upper() for t in transports}
        if "UDP" in wanted:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port),
            )
            self._udp = transport
            self._udp_protocol = protocol
            port = transport.get_extra_info("sockname")[1]
            sock = transport.get_extra_info("socket")
            if self.udp_buffer_bytes:
                _grow_buffers(sock, self.udp_buffer_bytes)
            if sock is not None:
                self._udp_reader = socket.fromfd(sock.fileno(), sock.family, socket.SOCK_DGRAM)
                self._udp_reader.setblocking(False)
        if "TCP" in wanted:
            server = await loop.create_server(
                lambda: _TcpConnection(self, None), host=host, port=port, reuse_address=True,
            )
            self._tcp_servers.append(server)
            port = server.sockets[0].getsockname()[1]
        if "TLS" in wanted:
            await self._start_tls_listener(host)
        self.local_address = (host, port)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for server in self._tcp_servers:
            server.close()
        for conn in list(self._connections.values()):
            conn.close()
        for server in self._tcp_servers:
            await server.wait_closed()
        await self._close_tls()
        if self._udp is not None:
            self._udp.close()
        if self._udp_reader is not None:
            self._udp_reader.close()
            self._udp_reader = None

    @property
    def udp_receive_buffer_bytes(self) -> int | None:
        """The UDP socket's receive buffer as the kernel reports it (``None`` without UDP)."""
        sock = self._udp.get_extra_info("socket") if self._udp is not None else None
        if sock is None:
            return None
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ----------------------------------------------------------------- receive path

    def receive(self, data: bytes, source: Address, transport: str,
                peer: PeerIdentity | None = None) -> None:
        """One complete message (a datagram, or one framed out of a stream); ``peer``: the
        certificate identity of a TLS connection's peer."""
        if self.admission is not None:
            verdict = self.admission.admit(data, source, transport, self.now())
            if verdict is not Admission.ADMIT:
                if verdict is Admission.REJECT:
                    self._refuse(data, source, transport)
                return
        if self.tap is not None:
            self.tap(data, source, self._local(transport), transport)
        try:
            message = parse_message(data, stream=transport != "UDP", limits=self.limits)
        except SipParseError as err:
            self._malformed(data, source, transport, err)
            return
        if self.traffic is not None:
            self.traffic.received(message)
        now = self.now()
        try:
            self.layer.receive(message, source, transport, now, peer)
        except SipParseError as err:
            # The layer validates the few headers it reads (Via, CSeq) and rejects like the parser
            self._malformed(data, source, transport, err)
            return
        self.pump(now)

    def _refuses_connection(self, peer: Address, transport: str) -> bool:
        """An inbound connection is asked about as an empty message: DROP closes it at once."""
        admission = self.admission
        return admission is not None and \
            admission.admit(b"", peer, transport, self.now()) is Admission.DROP

    def _refuse(self, data: bytes, source: Address, transport: str) -> None:
        # Stateless 403 (RFC 3261 §8.2.1), read leniently: no parse, no transaction
        response = error_response_bytes(data, SipParseError("Forbidden", 403))
        if response is not None:
            self.send(Outgoing(response, source, transport))

    def _malformed(self, data: bytes, source: Address, transport: str,
                   err: SipParseError) -> None:
        self.dropped_malformed += 1
        if self.traffic is not None:
            self.traffic.malformed()
        log.debug("malformed message from %s:%s: %s", source[0], source[1], err)
        response = error_response_bytes(data, err)
        if response is not None:
            self.send(Outgoing(response, source, transport))

    def pump(self, now: float) -> None:
        """Hand every pending event to the user, send what was queued, re-arm the timer."""
        layer = self.layer
        user = self.user
        while (event := layer.next_event()) is not None:
            user.handle_event(event, now)
        for out in layer.datagrams_to_send():
            self.send(out)
        self._arm_timer()

    def _arm_timer(self) -> None:
        # Runs after every message: plain comparisons, no list building.
        due = self.layer.next_deadline()
        user_due = self.user.next_deadline()
        if user_due and (not due or user_due < due):
            due = user_due
        if not due:
            return
        if self._timer_at is not None and self._timer_at <= due:
            return  # an earlier wake-up is armed; it re-arms for the rest when it fires
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        # Receive before expire: after the loop was held up (CPU starvation, a GC pause) a
        # response that arrived in time may still sit in the socket buffer behind a backlog:
        # libuv reads 32 datagrams per poll and runs due timers at the start of the next
        # iteration. Reading the backlog first keeps a centre that answered in time from being
        # given up on (the 100 Trying that stops first_response_s).
        self._read_pending_udp()
        now = self.now()
        try:
            self.layer.handle_timers(now)
            self.user.handle_timers(now)
        except Exception:  # a bug in one timer must not stop every later timer
            log.exception("fault while handling timers")
        self.pump(now)

    def _read_pending_udp(self, most: int = 1024) -> None:
        reader, protocol = self._udp_reader, self._udp_protocol
        if reader is None or protocol is None:
            return
        for _ in range(most):
            try:
                data, addr = reader.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # e.g. a queued ICMP error: the loop's own read reports it
                log.debug("UDP read before timers: %s", err)
                return
            protocol.datagram_received(data, addr)

    # ----------------------------------------------------------------- send path

    def _local(self, transport: str) -> Address:
        """Our address on ``transport`` (the listener's; what a trace shows as our side)."""
        local = self.tls_address if transport == "TLS" else self.local_address
        return local or ("0.0.0.0", 0)

    def send(self, out: Outgoing) -> None:
        if self.tap is not None:
            self.tap(out.data, self._local(out.transport), out.dest, out.transport)
        if self.traffic is not None:
            self.traffic.sent(out.data)
        if out.transport == "UDP":
            if self._udp is not None:
                self._udp.sendto(out.data, out.dest)
            return
        if out.transport == "TLS":
            self._send_tls(out)
            return
        conn = self._connections.get(out.dest)
        if conn is not None:
            conn.write(out.data)
            return
        pending = self._connecting.get(out.dest)
        if pending is not None:
            pending.append(out.data)
            return
        self._connecting[out.dest] = [out.data]
        assert self._loop is not None
        self._loop.create_task(self._connect(out.dest))

    async def _connect(self, dest: Address) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_connection(lambda: _TcpConnection(self, dest), dest[0], dest[1])
        except OSError as err:
            log.warning("TCP connect to %s:%s failed: %s", dest[0], dest[1], err)
            self._connecting.pop(dest, None)
            now = self.now()
            self.layer.transport_error(dest, "TCP", now)
            self.pump(now)

    def _connection_made(self, conn: _TcpConnection, peer: Address) -> None:
        tls = conn.transport_name == "TLS"
        (self._tls_connections if tls else self._connections)[peer] = conn
        for data in (self._tls_connecting if tls else self._connecting).pop(peer, []):
            conn.write(data)

    def _connection_lost(self, conn: _TcpConnection, peer: Address | None) -> None:
        table = self._tls_connections if conn.transport_name == "TLS" else self._connections
        if peer is not None and table.get(peer) is conn:
            del table[peer]

    # ----------------------------------------------------------------- TLS (RFC 3261 §26)

    async def _start_tls_listener(self, host: str) -> None:
        # Accepted sockets are handed to connect_accepted_socket(ssl=...) one by one rather than
        # served by create_server(ssl=...): that await raises when the handshake fails, so a
        # failure is ours to log and count, with the peer's address.
        if self.tls is None or self.tls.server is None:
            raise ValueError("TLS transport asked for without a server certificate")
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, self.tls.port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._tls_listener = listener
        self.tls_address = (host, int(listener.getsockname()[1]))
        self._tls_accepting = self._loop.create_task(self._accept_tls(listener))

    async def _close_tls(self) -> None:
        if self._tls_accepting is not None:
            self._tls_accepting.cancel()
            await asyncio.gather(self._tls_accepting, return_exceptions=True)
        for task in list(self._tls_handshakes):
            task.cancel()
        await asyncio.gather(*self._tls_handshakes, return_exceptions=True)
        if self._tls_listener is not None:
            self._tls_listener.close()
            self._tls_listener = None
        for conn in list(self._tls_connections.values()):
            conn.close()

    async def _accept_tls(self, listener: socket.socket) -> None:
        assert self._loop is not None
        while True:
            try:
                sock, address = await self._loop.sock_accept(listener)
            except OSError as err:  # EMFILE and the like: wait, do not spin
                log.warning("TLS accept failed: %s", err)
                await asyncio.sleep(0.1)
                continue
            task = self._loop.create_task(
                self._server_handshake(sock, (str(address[0]), int(address[1]))))
            self._tls_handshakes.add(task)
            task.add_done_callback(self._tls_handshakes.discard)

    async def _server_handshake(self, sock: socket.socket, peer: Address) -> None:
        assert self._loop is not None and self.tls is not None and self.tls.server is not None
        try:
            await self._loop.connect_accepted_socket(
                lambda: _TlsConnection(self, peer), sock, ssl=self.tls.server,
                ssl_handshake_timeout=self.tls.handshake_timeout_s,
            )
        except (TimeoutError, OSError, ssl.SSLError) as err:
            self.tls_handshake_failures += 1
            if self.on_tls_handshake_failed is not None:
                self.on_tls_handshake_failed("tls_handshake")
            # The socket is the transport's now: it closes it (closing it here as well could
            # close a descriptor number already given to the next connection).
            log.warning("TLS handshake from %s:%s failed: %s", peer[0], peer[1], err)

    def _send_tls(self, out: Outgoing) -> None:
        conn = self._tls_connections.get(out.dest)
        if conn is not None:
            conn.write(out.data)
            return
        pending = self._tls_connecting.get(out.dest)
        if pending is not None:
            pending.append(out.data)
            return
        self._tls_connecting[out.dest] = [out.data]
        assert self._loop is not None
        self._loop.create_task(self._connect_tls(out.dest))

    async def _connect_tls(self, dest: Address) -> None:
        # RFC 5922 §7.3: the centre's certificate must name the host of its URI (SNI = host).
        assert self._loop is not None
        client = self.tls.client if self.tls is not None else None
        try:
            if client is None:
                raise ssl.SSLError("no TLS client context configured")
            await self._loop.create_connection(
                lambda: _TlsConnection(self, dest), dest[0], dest[1],
                ssl=client, server_hostname=dest[0],
                ssl_handshake_timeout=self.tls.handshake_timeout_s if self.tls else None,
            )
        except (TimeoutError, OSError, ssl.SSLError, ValueError) as err:
            if isinstance(err, ssl.SSLError):
                self.tls_handshake_failures += 1
            log.warning("TLS connect to %s:%s failed: %s", dest[0], dest[1], err)
            self._tls_connecting.pop(dest, None)
            now = self.now()
            self.layer.transport_error(dest, "TLS", now)
            self.pump(now)


def _grow_buffers(sock: socket.socket | None, size: int) -> None:
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError as err:
            log.warning("could not set UDP socket buffer to %d bytes: %s", size, err)


_CRLF_START = (b"\r", b"\n", b"")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # Only a datagram starting with CR/LF can be a keep-alive: test that first, so a
        # message is not copied by strip() on its way in.
        if data[:1] in _CRLF_START and not data.strip(b"\r\n"):
            return  # RFC 5626 §4.4.1 keep-alive; no answer over UDP without STUN
        try:
            self.endpoint.receive(data, (str(addr[0]), int(addr[1])), "UDP")
        except Exception:  # the loop must survive anything a packet can trigger
            log.exception("fault handling a UDP datagram")

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    transport_name = "TCP"
    peer_identity: PeerIdentity | None = None
    """TLS: the peer's verified certificate identity, handed up with each message."""

    def __init__(self, endpoint: SipEndpoint, dest: Address | None) -> None:
        self.endpoint = endpoint
        self.peer: Address | None = dest
        self.framer = StreamFramer(endpoint.limits)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, only alike: cast, not assert
        self.transport = cast(asyncio.Transport, transport)
        if self.peer is None:
            peername = transport.get_extra_info("peername")
            self.peer = (str(peername[0]), int(peername[1]))
            if self.endpoint._refuses_connection(self.peer, self.transport_name):
                transport.close()  # a stranger that would be dropped anyway: no framing, no state
                return
        self.endpoint._connection_made(self, self.peer)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            for item in self.framer.feed(data):
                if isinstance(item, SipParseError):
                    # Framing is lost (§18.3): answer if we can, then close the connection.
                    self.endpoint._malformed(b"TCP", self.peer, self.transport_name, item)
                    self.close()
                    return
                self.endpoint.receive(item, self.peer, self.transport_name, self.peer_identity)
            if self.framer.pong_needed and self.transport is not None:
                self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 CRLF keep-alive pong
                self.framer.pong_needed = False
        except Exception:
            log.exception("fault handling %s data from %s", self.transport_name, self.peer)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._connection_lost(self, self.peer)


class _TlsConnection(_TcpConnection):
    """SIP over TLS: TCP's framing over the TLS layer's transport (RFC 3261 §26.2.1)."""

    transport_name = "TLS"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called once the handshake is done: the certificate is known before the first byte.
        self.peer_identity = peer_identity(transport.get_extra_info("peercert"))
        super().connection_made(transport)
