"""RFC 4475 (SIP torture tests) through the node's whole receive path.

tests/sip/test_parser_torture.py checks the parser alone. Here each message is one UDP datagram
fed to what ``SipEndpoint.receive`` runs — :func:`sip.parser.parse_message`, the stateless
answer to a request that did not parse (:mod:`sip.stateless`), the transaction layer, and the
B2BUA dispatcher with the sample routing table (the TU) — using the fuzz harness
:class:`ReceivePath` of fuzz/fuzz_parser.py, and we check what goes back on the wire.

The verdicts (:data:`VERDICTS`) are the RFC's, as listed in tests/data/rfc4475/manifest.csv, for
the node we are: a B2BUA that is the UAS for every request it receives, routes INVITEs to 113 /
116117, answers OPTIONS itself, registers nobody and answers 404 to any other Request-URI.
Where the RFC leaves latitude and we use it, :data:`LATITUDE` says why. Valid INVITEs are also
re-sent with the Request-URI changed to ``sip:113@127.0.0.1`` to show the odd bytes do not stop
an emergency call: 100 Trying back, the INVITE on to an AMK centre.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from sip.events import Outgoing
from sip.headers import Via
from sip.message import Response
from sip.parser import parse_message

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def _fuzz_module() -> ModuleType:
    name = "fuzz_parser"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "fuzz" / "fuzz_parser.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fuzz_parser = _fuzz_module()


@pytest.fixture(scope="module")
def snapshot() -> RoutingSnapshot:
    return load_snapshot(default_table_dir())


@dataclass(frozen=True)
class Verdict:
    status: int | None
    """Status of the one final response sent back, or None: nothing may be sent at all."""
    routed_variant: bool = False
    """A valid INVITE: with the Request-URI made 113 it must be routed to a centre."""


# RFC 4475 §3.1.1: valid, must parse and be processed normally.
# §3.1.2: invalid; a request gets its 400 (505 for the version), a response is dropped.
# §3.2, §3.3, §3.4: valid but odd; the handling the RFC asks of a UAS.
VERDICTS: dict[str, Verdict] = {
    "wsinv.dat": Verdict(404, routed_variant=True),  # not one of our numbers: 404 (processed)
    "intmeth.dat": Verdict(501),  # unknown method (§8.2.1)
    "esc01.dat": Verdict(404, routed_variant=True),
    "escnull.dat": Verdict(405),  # REGISTER: we are no registrar
    "esc02.dat": Verdict(501),  # RE%47IST%45R is not REGISTER
    "lwsdisp.dat": Verdict(200),  # OPTIONS
    "longreq.dat": Verdict(404, routed_variant=True),
    "dblreq.dat": Verdict(405),  # the REGISTER; the INVITE after Content-Length is ignored
    "semiuri.dat": Verdict(200),
    "transports.dat": Verdict(200),
    "mpart01.dat": Verdict(405),  # MESSAGE
    "unreason.dat": Verdict(None),  # responses to nothing we sent: parsed, then dropped
    "noreason.dat": Verdict(None),
    "badinv01.dat": Verdict(400),
    "clerr.dat": Verdict(400),
    "ncl.dat": Verdict(400),
    "scalar02.dat": Verdict(400),
    "scalarlg.dat": Verdict(None),  # a malformed response is dropped (RFC 3261 §18.1.2)
    "quotbal.dat": Verdict(400),
    "ltgtruri.dat": Verdict(400),
    "lwsruri.dat": Verdict(400),
    "lwsstart.dat": Verdict(400),
    "trws.dat": Verdict(400),
    "escruri.dat": Verdict(400),
    "baddate.dat": Verdict(404, routed_variant=True),  # see LATITUDE
    "regbadct.dat": Verdict(400),
    "badaspec.dat": Verdict(400),
    "baddn.dat": Verdict(400),
    "badvers.dat": Verdict(505),
    "mismatch01.dat": Verdict(400),
    "mismatch02.dat": Verdict(400),  # 400, not 501
    "bigcode.dat": Verdict(None),
    "badbranch.dat": Verdict(200),  # RFC 2543 transaction matching (see the test below)
    "insuf.dat": Verdict(400),  # answered from Via and CSeq alone
    "unkscm.dat": Verdict(416),
    "novelsc.dat": Verdict(416),
    "unksm2.dat": Verdict(405),  # REGISTER with odd schemes in To/From/Contact: parsed
    "bext01.dat": Verdict(420),
    "invut.dat": Verdict(404, routed_variant=True),  # see LATITUDE
    "regaut01.dat": Verdict(405),  # see LATITUDE
    "multi01.dat": Verdict(400),
    "mcl01.dat": Verdict(400),
    "bcast.dat": Verdict(None),
    "zeromf.dat": Verdict(200),  # see LATITUDE
    "cparam01.dat": Verdict(405),
    "cparam02.dat": Verdict(405),
    "regescrt.dat": Verdict(405),
    "sdp01.dat": Verdict(404, routed_variant=True),  # see LATITUDE
    "inv2543.dat": Verdict(404, routed_variant=True),
}

LATITUDE = {
    "baddate.dat": "§3.1.2.12 allows ignoring the non-essential Date header; an emergency call "
                   "is not refused over a bad time zone in Date",
    "invut.dat": "§3.3.6: a UAS answers 415, a proxy forwards. For 113 we forward like a proxy: "
                 "the centre is the UAS that knows which bodies it takes",
    "sdp01.dat": "§3.3.15: 406 is the answering UAS's call; we forward to the centre",
    "regaut01.dat": "§3.3.7 describes a registrar (401 challenge); we are none, so 405",
    "zeromf.dat": "§3.3.11: an OPTIONS with Max-Forwards 0 may be answered by its target "
                  "(RFC 3261 §16.3 step 3); the node answers OPTIONS itself. An INVITE with "
                  "Max-Forwards 0 gets 483 (test below)",
}


def manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


ROWS = manifest(DATA / "rfc4475" / "manifest.csv")


@dataclass(frozen=True)
class Sent:
    """A message the node sent: ``status`` for a response, ``method`` and ``uri`` for a request.

    Read from the start line only: a stateless 400 echoes the offending headers as received
    (e.g. both CSeq values of multi01.dat), so it need not parse."""

    status: int | None
    method: str | None
    uri: str | None
    data: bytes
    dest: tuple[str, int]


def _sent(out: Outgoing) -> Sent:
    start = out.data.split(b"\r\n", 1)[0].decode()
    if start.startswith("SIP/2.0 "):
        return Sent(int(start.split(" ")[1]), None, None, out.data, out.dest)
    method, uri, _ = start.split(" ")
    return Sent(None, method, uri, out.data, out.dest)


def receive(snapshot: RoutingSnapshot, data: bytes) -> list[Sent]:
    """Feed one datagram, let the 100 Trying timer run, return what was sent."""
    path = fuzz_parser.ReceivePath(snapshot, record=True)
    path.receive(data, "UDP")
    path.advance(0.3)
    for out in path.sent:  # nothing ever goes to a broadcast address (RFC 4475 §3.3.10)
        assert out.dest[0] != "255.255.255.255"
    assert path.b2bua.counters["internal_errors"] == 0
    return [_sent(out) for out in path.sent]


def check_verdict(snapshot: RoutingSnapshot, data: bytes, verdict: Verdict) -> None:
    sent = receive(snapshot, data)
    if verdict.status is None:
        assert sent == []
        return
    assert [m.status for m in sent if m.status is None or m.status >= 200] == [verdict.status]


def to_emergency(data: bytes) -> bytes:
    """``data`` with its Request-URI made ``sip:113@127.0.0.1`` (start line only)."""
    start, rest = data.split(b"\r\n", 1)
    method, _, version = start.split(b" ")
    return b" ".join([method, b"sip:113@127.0.0.1", version]) + b"\r\n" + rest


def check_routed(snapshot: RoutingSnapshot, data: bytes) -> None:
    sent = receive(snapshot, to_emergency(data))
    assert [m.status for m in sent if m.status is not None] == [100], sent
    invites = [m for m in sent if m.method is not None]
    assert [m.method for m in invites] == ["INVITE"]
    assert (invites[0].uri or "").startswith("sip:amk-")


def test_every_manifest_row_has_a_verdict() -> None:
    assert sorted(VERDICTS) == sorted(row["file"] for row in ROWS)
    assert set(LATITUDE) <= set(VERDICTS)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_torture_message(snapshot: RoutingSnapshot, row: dict[str, str]) -> None:
    data = (DATA / "rfc4475" / row["file"]).read_bytes()
    verdict = VERDICTS[row["file"]]
    if row["expected_verdict"] == "invalid-must-reject-or-400" and \
            row["file"] not in LATITUDE:
        # a request is refused, a response dropped: never processed
        assert verdict.status is None or verdict.status >= 400
    check_verdict(snapshot, data, verdict)
    if verdict.routed_variant:
        check_routed(snapshot, data)


def test_unsupported_require_lists_the_tags(snapshot: RoutingSnapshot) -> None:
    # §3.3.5: the UAS lists Require's tags in Unsupported; Proxy-Require is for proxies
    (sent,) = receive(snapshot, (DATA / "rfc4475" / "bext01.dat").read_bytes())
    response = parse_message(sent.data)
    assert isinstance(response, Response) and response.status == 420
    assert response.headers.get_all("Unsupported") == ["nothingSupportsThis",
                                                       "nothingSupportsThisEither"]


def test_unknown_method_gets_501_with_allow(snapshot: RoutingSnapshot) -> None:
    (sent,) = receive(snapshot, (DATA / "rfc4475" / "intmeth.dat").read_bytes())
    response = parse_message(sent.data)
    assert isinstance(response, Response) and response.status == 501
    assert "INVITE" in (response.headers.get("Allow") or "")


def test_zero_max_forwards_invite_gets_483(snapshot: RoutingSnapshot) -> None:
    data = (DATA / "rfc4475" / "zeromf.dat").read_bytes()
    data = to_emergency(data.replace(b"OPTIONS ", b"INVITE ", 1).replace(b"OPTIONS", b"INVITE"))
    sent = receive(snapshot, data)
    assert [m.status for m in sent] == [483]


def test_bare_magic_cookie_branch_matches_retransmissions(snapshot: RoutingSnapshot) -> None:
    # §3.2.1: branch=z9hG4bK alone is no transaction id; RFC 2543 matching still absorbs the
    # retransmission (one transaction, the same 200 re-sent, no second TU request)
    data = (DATA / "rfc4475" / "badbranch.dat").read_bytes()
    path = fuzz_parser.ReceivePath(snapshot, record=True)
    path.receive(data, "UDP")
    path.receive(data, "UDP")
    assert len(path.layer) == 1
    assert [_sent(out).status for out in path.sent] == [200, 200]
    assert path.sent[0].data == path.sent[1].data


def test_broadcast_via_is_never_a_destination(snapshot: RoutingSnapshot) -> None:
    response = parse_message((DATA / "rfc4475" / "bcast.dat").read_bytes())
    vias = [Via.parse(v) for v in response.headers.get_all("Via")]
    assert vias[1].host == "255.255.255.255"
    assert receive(snapshot, response.to_bytes()) == []  # no transaction: dropped, not relayed


def test_content_length_torture_over_a_stream() -> None:
    # The manifest's stream variants: clerr waits for the rest of the body; a negative or
    # doubled Content-Length loses the framing, is answered 400 and the connection is closed
    from sip.errors import SipParseError
    from sip.parser import StreamFramer, make_error_response

    framer = StreamFramer()
    assert framer.feed((DATA / "rfc4475" / "clerr.dat").read_bytes()) == []
    assert not framer.broken and framer.buffered > 0
    for name in ("ncl.dat", "mcl01.dat"):
        framer = StreamFramer()
        (error,) = framer.feed((DATA / "rfc4475" / name).read_bytes())
        assert isinstance(error, SipParseError) and error.status == 400 and framer.broken
        response = make_error_response(error)  # sent before the connection is closed
        assert response is not None and response.status == 400
