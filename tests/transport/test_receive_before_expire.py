"""Receive before expire: after the event loop was held up, datagrams that arrived before a
deadline are handed up before that deadline's timers run. libuv reads a socket in batches (32
datagrams a poll) and runs due timers at the start of the next loop iteration, so behind a
backlog a centre's 100 Trying that came in time could otherwise be read only after the timer
that gives up on that centre."""

from __future__ import annotations

import asyncio
import socket
import time

import uvloop

from sip.events import RequestReceived
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKrbe1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
    b"Call-ID: rbe1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


BACKLOG = 150


class Recorder:
    """A transaction user that notes the order of events and timer runs."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.deadline: float | None = None

    def handle_event(self, event: object, now: float) -> None:
        if isinstance(event, RequestReceived):
            call_id = event.request.headers.get("Call-ID") or ""
            self.seen.append("marker" if call_id.startswith("marker") else "request")

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timers(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.seen.append("timer")


async def held_up_loop() -> list[str]:
    endpoint = SipEndpoint(TransactionLayer(TimerConfig()))
    user = Recorder()
    endpoint.user = user
    await endpoint.start("127.0.0.1", 0, ["udp"])
    assert endpoint.local_address is not None
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        user.deadline = endpoint.now() + 0.05
        endpoint.pump(endpoint.now())  # arm the timer
        target = ("127.0.0.1", endpoint.local_address[1])
        for n in range(BACKLOG):  # a backlog, then the message that matters, all in time
            sender.sendto(OPTIONS.replace(b"rbe1", f"rbe{n}".encode()), target)
        sender.sendto(OPTIONS.replace(b"rbe1", b"marker"), target)
        time.sleep(0.2)  # the loop is held up: the datagrams wait, the deadline passes
        await asyncio.sleep(0.1)
    finally:
        sender.close()
        await endpoint.close()
    return user.seen


def test_datagrams_that_arrived_in_time_are_handled_before_the_overdue_timer() -> None:
    seen = uvloop.run(held_up_loop())
    assert seen.index("marker") < seen.index("timer"), seen[-5:]
    assert seen.count("request") == BACKLOG
