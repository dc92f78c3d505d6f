"""SIP over TLS on real loopback sockets (RFC 3261 §26): the router in-process, a local CA.

A carrier trunk calls in over TLS with a client certificate (mutual TLS, RFC 5922), the router
reaches its centre over TLS (a small Python UAS here: this SIPp has no TLS), and the failures
that matter: a peer without the trunk's certificate gets no service, a handshake that fails
is counted without hurting anyone else, a centre whose certificate is not trusted is a
transport error the hunt fails over from at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tls_pki import Issued, LocalCa

from municipality_map import default_table_dir
from router.app import RunningRouter, start_router
from router.config import NodruteSettings
from sip.errors import SipParseError
from sip.message import Request, Response, make_response
from sip.parser import StreamFramer, parse_message

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of the router
    uvloop = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
TRUNK_CN = "sbc1.carrier.example"


@dataclass(frozen=True)
class Pki:
    ca: LocalCa
    router: Issued
    trunk: Issued
    rogue: Issued
    """Signed by the same CA, but not the trunk's name."""
    stranger: Issued
    """Signed by a CA the router does not trust."""
    centre: Issued
    untrusted_centre: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = LocalCa(folder / "ca")
    other = LocalCa(folder / "other", name="some other CA")
    return Pki(
        ca=ca,
        router=ca.issue("router", "nodrute.test", dns=("localhost",), ips=(HOST,)),
        trunk=ca.issue("trunk", TRUNK_CN, organisation="Carrier AS", dns=(TRUNK_CN,)),
        rogue=ca.issue("rogue", "rogue.example", dns=("rogue.example",)),
        stranger=other.issue("stranger", TRUNK_CN, dns=(TRUNK_CN,)),
        centre=ca.issue("centre", "amk-oslo.test", ips=(HOST,)),
        untrusted_centre=other.issue("untrusted-centre", "amk-fake.test", ips=(HOST,)),
    )


# ------------------------------------------------------------------------ a centre over TLS


@dataclass
class TlsCentre:
    """A UAS on a TLS port: 200 to INVITE/OPTIONS/BYE/CANCEL, nothing to ACK."""

    requests: list[Request] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self, issued: Issued) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(issued.certificate, issued.private_key)
        self.server = await asyncio.start_server(self._serve, HOST, 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    assert not isinstance(item, SipParseError)
                    message = parse_message(item, stream=True)
                    if isinstance(message, Request):
                        self.requests.append(message)
                        if message.method != "ACK":
                            writer.write(self._answer(message))
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def _answer(self, request: Request) -> bytes:
        extra = []
        if request.method == "INVITE":
            extra = [("Contact", f"<sips:centre@{HOST}:{self.port}>")]
        return make_response(request, 200, "OK", to_tag="centre1", extra=extra).to_bytes()


# ------------------------------------------------------------------------ a trunk over TLS


def client_context(pki: Pki, certificate: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.ca_file))
    if certificate is not None:
        context.load_cert_chain(certificate.certificate, certificate.private_key)
    return context


class SipStream:
    """One TLS connection to the router, speaking SIP."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[Request | Response] = []

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> SipStream:
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=context, server_hostname=HOST)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next_message(self, timeout: float = 10.0) -> Request | Response:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("router closed the connection")
            for item in self.framer.feed(data):
                assert not isinstance(item, SipParseError)
                self.pending.append(parse_message(item, stream=True))
        return self.pending.pop(0)

    async def final_response(self, timeout: float = 10.0) -> Response:
        while True:
            message = await self.next_message(timeout)
            if isinstance(message, Response) and message.status >= 200:
                return message

    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def request_bytes(method: str, router_port: int, branch: str, *, via_port: int,
                  transport: str = "TLS", to_tag: str = "", cseq: int = 1,
                  call_id: str = "") -> bytes:
    uri = f"sip:113@{HOST}:{router_port}" if method != "OPTIONS" else f"sip:{HOST}:{router_port}"
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{via_port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:4790000000@carrier.example>;tag=caller1\r\n"
        f"To: <sip:113@{HOST}>{';tag=' + to_tag if to_tag else ''}\r\n"
        f"Call-ID: {call_id or branch}@carrier.example\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:caller@{HOST}:{via_port};transport={transport.lower()}>\r\n"
        "X-Kommunenummer: 0301\r\nContent-Length: 0\r\n\r\n"
    ).encode()


# ------------------------------------------------------------------------ the router


def table_with_oslo_uris(folder: Path, uris: str) -> Path:
    """The sample table with AMK-OSLO (0301's AMK) reached at ``uris`` (space separated)."""
    table = folder / "table"
    shutil.copytree(default_table_dir(), table)
    centres = table / "centres.csv"
    lines = centres.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[0] == "AMK-OSLO":
            cells[3] = uris
            lines[i] = ",".join(cells)
    centres.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


RouterFactory = Callable[..., Awaitable[RunningRouter]]


def router_settings(tmp_path: Path, pki: Pki, *,
                    oslo_uris: str = "sip:amk-oslo@127.0.0.1:5110",
                    tls_subjects: list[str] | None = None,
                    require_client_certificate: bool = False,
                    first_response_s: float = 2.0) -> NodruteSettings:
    settings: dict[str, Any] = {
        "sip": {"host": HOST, "port": 0, "transports": ["udp", "tcp", "tls"]},
        "tls": {
            "certificate": pki.router.certificate, "private_key": pki.router.private_key,
            "ca_file": pki.ca.ca_file, "tls_port": 0,
            "require_client_certificate": require_client_certificate,
        },
        "trunks": [{"name": "carrier", "sources": ["127.0.0.0/8"],
                    "tls_subjects": tls_subjects or []}],
        "routing": {"table_dir": table_with_oslo_uris(tmp_path, oslo_uris)},
        "failover": {"first_response_s": first_response_s},
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'nodrute.db'}"},
        "metrics": {"enabled": False},
        "media": {"enabled": False},
        "health": {"enabled": False},
    }
    return NodruteSettings(**settings)


@pytest.fixture
async def make_router(tmp_path: Path, pki: Pki) -> AsyncIterator[RouterFactory]:
    started: list[RunningRouter] = []

    async def make(**options: Any) -> RunningRouter:
        router = await start_router(router_settings(tmp_path, pki, **options))
        started.append(router)
        return router

    yield make
    for router in started:
        await router.close()


@pytest.fixture
async def centres() -> AsyncIterator[Callable[[Issued], Awaitable[TlsCentre]]]:
    running: list[TlsCentre] = []

    async def start(issued: Issued) -> TlsCentre:
        centre = TlsCentre()
        await centre.start(issued)
        running.append(centre)
        return centre

    yield start
    for centre in running:
        await centre.close()


def tls_port(router: RunningRouter) -> int:
    assert router.endpoint.tls_address is not None
    return router.endpoint.tls_address[1]


# ------------------------------------------------------------------------ tests


async def test_options_over_tls_answered_on_the_same_connection(
        make_router: RouterFactory, pki: Pki) -> None:
    router = await make_router()
    port = tls_port(router)
    assert port != router.port  # its own listener, beside UDP/TCP
    stream = await SipStream.open(port, client_context(pki, pki.trunk))
    try:
        for n in (1, 2):  # the second request reuses the connection the first opened
            await stream.send(request_bytes("OPTIONS", port, f"opt{n}",
                                            via_port=stream.local_port(), cseq=n))
            reply = await stream.final_response()
            assert reply.status == 200
            assert reply.headers.get("Via", "").startswith("SIP/2.0/TLS ")
            assert reply.headers.get("CSeq") == f"{n} OPTIONS"
    finally:
        await stream.close()
    assert router.endpoint.tls_handshake_failures == 0


async def test_failed_handshakes_are_counted_and_the_listener_keeps_serving(
        make_router: RouterFactory, pki: Pki) -> None:
    router = await make_router()
    port = tls_port(router)
    reported: list[str] = []  # what the metric is told (nodrute_rejected_total{reason})
    router.endpoint.on_tls_handshake_failed = reported.append
    # Plain SIP at the TLS port: no handshake, the connection is dropped.
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request_bytes("OPTIONS", port, "plain", via_port=9, transport="TCP"))
    assert await asyncio.wait_for(reader.read(65536), 10) == b""
    writer.close()
    # A client certificate from a CA the router does not trust fails verification.
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        stranger = await SipStream.open(port, client_context(pki, pki.stranger))
        try:
            await stranger.send(request_bytes("OPTIONS", port, "strange", via_port=9))
            await stranger.final_response()
        finally:
            await stranger.close()
    assert router.endpoint.tls_handshake_failures == 2
    assert reported == ["tls_handshake", "tls_handshake"]
    good = await SipStream.open(port, client_context(pki, pki.trunk))
    try:
        await good.send(request_bytes("OPTIONS", port, "after", via_port=good.local_port()))
        assert (await good.final_response()).status == 200
    finally:
        await good.close()


async def test_trunk_call_with_its_certificate_reaches_a_tls_centre(
        make_router: RouterFactory, centres: Callable[[Issued], Awaitable[TlsCentre]],
        pki: Pki) -> None:
    centre = await centres(pki.centre)
    router = await make_router(oslo_uris=f"sips:amk-oslo@{HOST}:{centre.port}",
                               tls_subjects=[f"CN={TRUNK_CN}"])
    port = tls_port(router)
    caller = await SipStream.open(port, client_context(pki, pki.trunk))
    try:
        me = caller.local_port()
        await caller.send(request_bytes("INVITE", port, "call1", via_port=me))
        answer = await caller.final_response()
        assert answer.status == 200, answer
        # The centre leg is TLS end to end: our Via and Contact name the TLS listener.
        invite = centre.requests[0]
        assert invite.method == "INVITE"
        assert invite.headers.get("Via", "").startswith(f"SIP/2.0/TLS {HOST}:{port};")
        assert f"{HOST}:{port};transport=tls" in invite.headers.get("Contact", "")
        to_tag = answer.headers.get("To", "").partition(";tag=")[2]
        assert to_tag
        await caller.send(request_bytes("ACK", port, "call1ack", via_port=me, to_tag=to_tag,
                                        call_id="call1"))
        await caller.send(request_bytes("BYE", port, "call1bye", via_port=me, to_tag=to_tag,
                                        call_id="call1", cseq=2))
        assert (await caller.final_response()).status == 200
    finally:
        await caller.close()
    # ACK and BYE went to the centre's sips: Contact over TLS, on the connection already open.
    assert centre.methods() == ["INVITE", "ACK", "BYE"]
    assert router.b2bua.counters["rejected:tls_identity"] == 0


@pytest.mark.parametrize("who", ["no certificate", "another name", "over udp"])
async def test_mutual_tls_trunk_refuses_a_peer_without_its_certificate(
        make_router: RouterFactory, centres: Callable[[Issued], Awaitable[TlsCentre]],
        pki: Pki, who: str) -> None:
    centre = await centres(pki.centre)
    router = await make_router(oslo_uris=f"sips:amk-oslo@{HOST}:{centre.port}",
                               tls_subjects=[f"CN={TRUNK_CN}"])
    port = tls_port(router)
    reported: list[str] = []
    router.b2bua.on_rejected = reported.append
    if who == "over udp":
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                replies.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(HOST, 0))
        try:
            me = transport.get_extra_info("sockname")[1]
            transport.sendto(request_bytes("INVITE", router.port, "udp1", via_port=me,
                                           transport="UDP"), (HOST, router.port))
            while (reply := parse_message(await asyncio.wait_for(replies.get(), 10))):
                assert isinstance(reply, Response)
                if reply.status >= 200:
                    break
        finally:
            transport.close()
    else:
        certificate = None if who == "no certificate" else pki.rogue
        caller = await SipStream.open(port, client_context(pki, certificate))
        try:
            await caller.send(request_bytes("INVITE", port, "bad1", via_port=caller.local_port()))
            reply = await caller.final_response()
        finally:
            await caller.close()
    assert reply.status == 403
    assert router.b2bua.counters["rejected:tls_identity"] == 1
    assert reported == ["tls_identity"]
    assert centre.requests == []  # no service: the centre never hears of it


async def test_required_client_certificate_refuses_the_handshake(
        make_router: RouterFactory, pki: Pki) -> None:
    router = await make_router(require_client_certificate=True)
    port = tls_port(router)
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        # TLS 1.3: the client finishes first and hears of the refusal on its first read.
        caller = await SipStream.open(port, client_context(pki, None))
        try:
            await caller.send(request_bytes("OPTIONS", port, "nocert", via_port=9))
            await caller.final_response()
        finally:
            await caller.close()
    assert router.endpoint.tls_handshake_failures == 1
    caller = await SipStream.open(port, client_context(pki, pki.trunk))
    try:
        await caller.send(request_bytes("OPTIONS", port, "cert", via_port=caller.local_port()))
        assert (await caller.final_response()).status == 200
    finally:
        await caller.close()


async def test_untrusted_centre_certificate_is_a_transport_error_and_the_hunt_moves_on(
        make_router: RouterFactory, centres: Callable[[Issued], Awaitable[TlsCentre]],
        pki: Pki) -> None:
    impostor = await centres(pki.untrusted_centre)
    centre = await centres(pki.centre)
    # first_response_s far beyond the test's wait: only the transport error can move the hunt.
    router = await make_router(
        oslo_uris=f"sips:amk-oslo@{HOST}:{impostor.port} sips:amk-oslo@{HOST}:{centre.port}",
        first_response_s=60.0)
    port = tls_port(router)
    caller = await SipStream.open(port, client_context(pki, pki.trunk))
    try:
        await caller.send(request_bytes("INVITE", port, "fo1", via_port=caller.local_port()))
        answer = await caller.final_response(timeout=10)
    finally:
        await caller.close()
    assert answer.status == 200
    assert impostor.requests == []  # the handshake failed: not one byte of SIP went there
    assert centre.methods()[:1] == ["INVITE"]
    assert router.endpoint.tls_handshake_failures == 1


@pytest.mark.skipif(uvloop is None, reason="uvloop not installed")
def test_tls_call_and_mutual_tls_refusal_on_uvloop(tmp_path: Path, pki: Pki) -> None:
    """The router runs on uvloop: its start_tls and TLS client connections behave the same."""

    async def scenario() -> None:
        centre = TlsCentre()
        await centre.start(pki.centre)
        router = await start_router(router_settings(
            tmp_path, pki, oslo_uris=f"sips:amk-oslo@{HOST}:{centre.port}",
            tls_subjects=[f"CN={TRUNK_CN}"]))
        try:
            port = tls_port(router)
            for certificate, expected in ((pki.trunk, 200), (pki.rogue, 403)):
                caller = await SipStream.open(port, client_context(pki, certificate))
                try:
                    await caller.send(request_bytes(
                        "INVITE", port, f"uv{expected}", via_port=caller.local_port()))
                    assert (await caller.final_response()).status == expected
                finally:
                    await caller.close()
            assert centre.methods()[:1] == ["INVITE"]
            assert router.b2bua.counters["rejected:tls_identity"] == 1
        finally:
            await router.close()
            await centre.close()

    assert uvloop is not None
    uvloop.run(scenario())
