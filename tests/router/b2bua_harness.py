"""A sans-IO B2BUA harness: the real transaction layer and dispatcher, a fake clock, no sockets.

Messages go in as bytes (as a carrier or centre would send them) and come out as parsed
messages with their destination, so tests read like SIP traces.
"""

from __future__ import annotations

import csv
import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from table_fixtures import strip_fallbacks

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from router.b2bua import B2bua
from router.call_record import CallRecord
from router.config import NodruteSettings
from sip.message import Request, Response
from sip.parser import parse_message
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer

ROUTER = ("127.0.0.1", 5060)
CARRIER = ("192.0.2.10", 5080)
SDP_OFFER = (
    b"v=0\r\no=carrier 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)
SDP_ANSWER = (
    b"v=0\r\no=centre 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


@pytest.fixture(scope="session")
def snapshot() -> RoutingSnapshot:
    return load_snapshot(default_table_dir())


def table_without_fallbacks(target: Path) -> Path:
    """A copy of the sample table with no backup centres and no overflow."""
    shutil.copytree(default_table_dir(), target)
    return strip_fallbacks(target)


@pytest.fixture(scope="session")
def lone_snapshot(tmp_path_factory: pytest.TempPathFactory) -> RoutingSnapshot:
    """A snapshot where each centre is its own whole destination plan."""
    return load_snapshot(table_without_fallbacks(tmp_path_factory.mktemp("lone") / "table"))


@pytest.fixture(scope="session")
def table_rows() -> dict[str, dict[str, str]]:
    """municipalities.csv read directly, independent of the loader under test."""
    with (default_table_dir() / "municipalities.csv").open(encoding="utf-8-sig") as f:
        return {row["kommunenummer"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def centre_uris() -> dict[str, str]:
    with (default_table_dir() / "centres.csv").open(encoding="utf-8-sig") as f:
        return {row["centre_id"]: row["uris"].split()[0] for row in csv.DictReader(f)}


@dataclass
class Sent:
    message: Request | Response
    dest: tuple[str, int]
    transport: str


@dataclass
class Harness:
    b2bua: B2bua
    layer: TransactionLayer
    now: float = 1000.0
    outbox: list[Sent] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def feed(self, data: bytes, source: tuple[str, int] = CARRIER, transport: str = "UDP") -> None:
        self.layer.receive(parse_message(data), source, transport, self.now)
        self._pump()

    def advance(self, seconds: float) -> None:
        """Move the fake clock, firing every timer due on the way in order."""
        end = self.now + seconds
        while True:
            due = [d for d in (self.layer.next_deadline(), self.b2bua.next_deadline()) if d]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            self.layer.handle_timers(self.now)
            self.b2bua.handle_timers(self.now)
            self._pump()
        self.now = end

    def _pump(self) -> None:
        while (event := self.layer.next_event()) is not None:
            self.b2bua.handle_event(event, self.now)
        for out in self.layer.datagrams_to_send():
            self.outbox.append(Sent(parse_message(out.data), out.dest, out.transport))

    def take(self) -> list[Sent]:
        out, self.outbox = self.outbox, []
        return out

    def take_one(self, kind: str | int, dest: tuple[str, int] | None = None) -> Sent:
        """The single queued message that is request ``kind`` or response status ``kind``."""
        matches = [s for s in self.outbox if _is(s.message, kind)
                   and (dest is None or s.dest == dest)]
        assert len(matches) == 1, f"expected one {kind}, outbox: {self.outbox}"
        self.outbox.remove(matches[0])
        return matches[0]

    def next_id(self) -> int:
        return next(self._ids)


def caller_cancel(n: int, reason: str | None = None) -> bytes:
    """The carrier's CANCEL for ``caller_invite(n)`` (§9.1: same branch, CSeq number, tags)."""
    head = caller_invite(n).decode().split("\r\n\r\n")[0].split("\r\n")
    keep = [line for line in head[1:]
            if line.split(":")[0] in ("Via", "Max-Forwards", "From", "To", "Call-ID")]
    lines = ["CANCEL sip:113@127.0.0.1 SIP/2.0", *keep, "CSeq: 1 CANCEL"]
    if reason:
        lines.append(f"Reason: {reason}")
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()


def dest_of(uri: str) -> tuple[str, int]:
    """Host and port of a ``sip:user@host:port`` URI (the sample table's centre URIs)."""
    hostport = uri.split("@", 1)[1].split(";", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def _is(message: Request | Response, kind: str | int) -> bool:
    if isinstance(kind, int):
        return isinstance(message, Response) and message.status == kind
    return isinstance(message, Request) and message.method == kind


def make_harness(snapshot: RoutingSnapshot, settings: NodruteSettings | None = None) -> Harness:
    layer = TransactionLayer(TimerConfig())
    records: list[CallRecord] = []
    b2bua = B2bua(layer, settings or NodruteSettings(), snapshot, port=ROUTER[1],
                  on_call_ended=records.append)
    return Harness(b2bua, layer, records=records)


@pytest.fixture
def harness(snapshot: RoutingSnapshot) -> Harness:
    return make_harness(snapshot)


def caller_invite(
    n: int,
    ruri: str = "sip:113@127.0.0.1",
    *,
    kommune: str | None = "0301",
    body: bytes = SDP_OFFER,
    extra: str = "",
    max_forwards: int = 70,
) -> bytes:
    """An INVITE as a carrier's SBC would send it."""
    lines = [
        f"INVITE {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKcarrier{n};rport",
        f"Max-Forwards: {max_forwards}",
        f'From: "Kari Nordmann" <sip:4790000{n:03d}@carrier.example>;tag=ctag{n}',
        f"To: <{ruri}>",
        f"Call-ID: call{n}@carrier.example",
        "CSeq: 1 INVITE",
        f"Contact: <sip:4790000{n:03d}@{CARRIER[0]}:{CARRIER[1]}>",
        "P-Asserted-Identity: <tel:+4790000001>",
        "Privacy: none",
        "X-Carrier-Secret: do-not-forward",
    ]
    if kommune is not None:
        lines.append(f"X-Kommunenummer: {kommune}")
    if extra:
        lines.extend(extra.strip().split("\n"))
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_to(request: Request, status: int, *, to_tag: str | None = "centretag",
                body: bytes = b"", contact: str | None = None) -> bytes:
    """What a UAS (a centre, or the carrier for an in-dialog request) answers.

    Its Contact defaults to the Request-URI it was reached at (a centre answering itself)."""
    contact = contact or f"<{request.uri}>"
    lines = [f"SIP/2.0 {status} X"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            if name == "To" and to_tag and "tag=" not in value and status > 100:
                value = f"{value};tag={to_tag}"
            lines.append(f"{name}: {value}")
    if contact and status < 300 and status > 100:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def in_dialog_request(method: str, response: Response, n: int, cseq: int, *,
                      body: bytes = b"", from_caller: bool = True) -> bytes:
    """A request inside the caller's dialog, built from the 2xx the caller received."""
    from_h = response.headers.get("From")
    to_h = response.headers.get("To")
    lines = [
        f"{method} sip:nodrute@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKcarrier{n}x{cseq}{method}",
        "Max-Forwards: 70",
        f"From: {from_h}",
        f"To: {to_h}",
        f"Call-ID: {response.headers.get('Call-ID')}",
        f"CSeq: {cseq} {method}",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def centre_request(method: str, invite: Request, ok: Response, cseq: int) -> bytes:
    """A request from the centre inside the dialog we opened with ``invite``."""
    lines = [
        f"{method} sip:nodrute@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5101;branch=z9hG4bKcentre{cseq}{method}",
        "Max-Forwards: 70",
        f"From: {ok.headers.get('To')}",
        f"To: {ok.headers.get('From')}",
        f"Call-ID: {ok.headers.get('Call-ID')}",
        f"CSeq: {cseq} {method}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


REPO = Path(__file__).resolve().parents[2]
