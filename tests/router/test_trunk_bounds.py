"""Per-trunk bounds (``max_calls``, ``max_transactions``): 503 + Retry-After, never a drop.

Sans-IO: the real transaction layer and dispatcher, a fake clock."""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    Harness,
    caller_cancel,
    caller_invite,
    dest_of,
    make_harness,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.config import NodruteSettings, SecuritySettings, TrunkSettings
from sip.message import Request, Response

OTHER_CARRIER = ("198.51.100.5", 5060)


REJECTED: list[str] = []


def bounded(snapshot: RoutingSnapshot, *, max_calls: int = 1000,
            max_transactions: int = 1000) -> Harness:
    h = make_harness(snapshot, NodruteSettings(
        trunks=[
            TrunkSettings(name="carrier", sources=["192.0.2.0/24"], max_calls=max_calls,
                          max_transactions=max_transactions),
            TrunkSettings(name="other", sources=["198.51.100.0/24"]),
        ],
        security=SecuritySettings(busy_retry_after_s=7),
    ))
    REJECTED.clear()
    h.b2bua.on_rejected = REJECTED.append
    return h


def options(n: int, source: tuple[str, int] = CARRIER) -> bytes:
    return (f"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bKping{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:sbc@carrier.example>;tag=p{n}\r\n"
            f"To: <sip:127.0.0.1>\r\nCall-ID: ping{n}@carrier.example\r\n"
            f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def final_to_caller(h: Harness) -> Response:
    finals = [s.message for s in h.take()
              if isinstance(s.message, Response) and s.message.status >= 200
              and s.dest == CARRIER]
    assert len(finals) == 1, finals
    return finals[0]


def test_an_invite_beyond_max_calls_gets_503_with_retry_after(
        snapshot: RoutingSnapshot) -> None:
    h = bounded(snapshot, max_calls=2)
    for n in (1, 2):
        h.feed(caller_invite(n))
        h.take_one("INVITE")  # routed to a centre
        h.take()
    h.feed(caller_invite(3))
    busy = h.take_one(503, CARRIER).message
    assert isinstance(busy, Response)
    assert busy.headers.get("Retry-After") == "7"
    assert h.take() == []  # nothing went to a centre
    assert h.b2bua.trunk_loads["carrier"].calls == 2
    assert REJECTED == ["trunk_calls"]
    assert h.b2bua.counters["rejected:trunk_calls"] == 1


def test_a_call_ending_makes_room_for_the_next(snapshot: RoutingSnapshot) -> None:
    h = bounded(snapshot, max_calls=1)
    h.feed(caller_invite(1))
    centre_invite = h.take_one("INVITE").message
    h.take()
    h.feed(caller_invite(2))
    h.take_one(503, CARRIER)
    h.feed(caller_cancel(1))  # the caller gives up; the centre confirms
    h.take()
    assert isinstance(centre_invite, Request)
    h.feed(response_to(centre_invite, 487), source=dest_of(str(centre_invite.uri)))
    h.take()
    assert h.b2bua.trunk_loads["carrier"].calls == 0
    h.feed(caller_invite(4))
    assert h.take_one("INVITE")


def test_the_bound_is_per_trunk(snapshot: RoutingSnapshot) -> None:
    h = bounded(snapshot, max_calls=1)
    h.feed(caller_invite(1))
    h.take_one("INVITE")
    h.take()
    other = caller_invite(2).replace(f"{CARRIER[0]}:{CARRIER[1]}".encode(),
                                     f"{OTHER_CARRIER[0]}:{OTHER_CARRIER[1]}".encode())
    h.feed(other, source=OTHER_CARRIER)
    assert h.take_one("INVITE")
    assert h.b2bua.trunk_loads["other"].calls == 1


def test_options_beyond_max_transactions_get_503_until_their_timers_end(
        snapshot: RoutingSnapshot) -> None:
    h = bounded(snapshot, max_transactions=3)
    for n in range(3):
        h.feed(options(n))
        assert final_to_caller(h).status == 200
    h.feed(options(3))
    busy = final_to_caller(h)
    assert busy.status == 503
    assert busy.headers.get("Retry-After") == "7"
    assert REJECTED == ["trunk_transactions"]
    # A trunk's retransmission of an admitted request is absorbed by its transaction as usual
    h.feed(options(0))
    assert final_to_caller(h).status == 200
    h.advance(33.0)  # Timer J (64*T1 over UDP, RFC 3261 §17.2.2): the answered ones are gone
    h.feed(options(4))
    assert final_to_caller(h).status == 200


def test_an_invite_beyond_max_transactions_gets_503(snapshot: RoutingSnapshot) -> None:
    h = bounded(snapshot, max_transactions=2)
    h.feed(options(1))
    h.feed(options(2))
    h.take()
    h.feed(caller_invite(1))
    assert h.take_one(503, CARRIER)
    assert h.b2bua.active_calls == 0


def test_a_cancel_is_not_bounded(snapshot: RoutingSnapshot) -> None:
    # A CANCEL ends a call: refusing it at the bound would only hold the call up longer.
    h = bounded(snapshot, max_calls=1, max_transactions=1)
    h.feed(caller_invite(1))
    h.take_one("INVITE")
    h.take()
    h.feed(caller_cancel(1))
    assert h.take_one(200, CARRIER)
    assert h.b2bua.counters["rejected:trunk_transactions"] == 0
