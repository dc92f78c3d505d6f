"""SIP messages on the wire, counted for ``/metrics``: requests by method, responses by code.

The transport tells :class:`SipTraffic` of every message it receives (parsed) and sends (bytes),
retransmissions included — at 1,500 calls/s some 20,000 times a second. So counting is a dict
lookup and an increment of a plain ``int`` in a list (no lock, no label formatting: only the
event loop's thread writes); the counters become Prometheus samples when scraped. Labels are
bounded: the methods and status codes listed here, anything else bucketed (``other``, ``4xx``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sip.message import Message, Request

SIP_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "PRACK",
               "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "REGISTER", "PUBLISH")
"""Methods with their own ``method`` label value; any other is counted as ``other``."""
SIP_CODES = (100, 180, 181, 182, 183, 199, 200, 202, 204, 300, 301, 302, 305, 380,
             400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421,
             422, 423, 428, 429, 433, 470, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489,
             491, 493, 494, 500, 501, 502, 503, 504, 505, 513, 580, 600, 603, 604, 606, 607,
             608)
"""Status codes of RFC 3261 §21 and its extensions with their own ``code`` label value; any
other is counted as its class (``4xx``), anything unreadable as ``other``."""
DIRECTIONS = ("received", "sent")

_REQUESTS_HELP = (
    "SIP requests on the wire, retransmissions included, by direction (received, sent) and "
    f"method ({', '.join(SIP_METHODS)}; any other: other).")
_RESPONSES_HELP = (
    "SIP responses on the wire, retransmissions included, by direction (received, sent) and "
    "status code (the codes of RFC 3261 and its extensions by number, any other as its "
    "class, e.g. 4xx).")
_MALFORMED_HELP = (
    "Messages received that could not be parsed or lacked a usable Via/CSeq (requests were "
    "answered 400/505/..., responses dropped).")


class SipTraffic(Collector):
    """The transport's :class:`sip.transport.TrafficCounter`, and the collector of its counts."""

    def __init__(self) -> None:
        methods = [*SIP_METHODS, "other"]
        codes = [str(code) for code in SIP_CODES] + [f"{n}xx" for n in range(1, 7)] + ["other"]
        self._request_labels = [(d, m) for d in DIRECTIONS for m in methods]
        self._response_labels = [(d, c) for d in DIRECTIONS for c in codes]
        self._requests = [0] * len(self._request_labels)
        self._responses = [0] * len(self._response_labels)
        self.malformed_count = 0
        request_slot = {label: i for i, label in enumerate(self._request_labels)}
        response_slot = {label: i for i, label in enumerate(self._response_labels)}
        self._rx_method = {m: request_slot["received", m] for m in SIP_METHODS}
        self._rx_method_other = request_slot["received", "other"]
        self._tx_method = {m.encode(): request_slot["sent", m] for m in SIP_METHODS}
        self._tx_method_other = request_slot["sent", "other"]

        def code_slot(direction: str, code: int) -> int:
            label = str(code) if code in SIP_CODES else f"{code // 100}xx"
            return response_slot[direction, label]

        self._rx_code = {code: code_slot("received", code) for code in range(100, 700)}
        self._rx_code_other = response_slot["received", "other"]
        self._tx_code = {str(code).encode(): code_slot("sent", code) for code in range(100, 700)}
        self._tx_code_other = response_slot["sent", "other"]

    # ------------------------------------------------------------------ the transport's hook

    def received(self, message: Message) -> None:
        if isinstance(message, Request):
            self._requests[self._rx_method.get(message.method, self._rx_method_other)] += 1
        else:
            self._responses[self._rx_code.get(message.status, self._rx_code_other)] += 1

    def sent(self, data: bytes) -> None:
        if data.startswith(b"SIP/2.0 "):
            self._responses[self._tx_code.get(data[8:11], self._tx_code_other)] += 1
            return
        space = data.find(b" ", 0, 16)
        method = data[:space] if space > 0 else b""
        self._requests[self._tx_method.get(method, self._tx_method_other)] += 1

    def malformed(self) -> None:
        self.malformed_count += 1

    # ------------------------------------------------------------------ the scrape

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily("nodrute_sip_requests", _REQUESTS_HELP,
                                    labels=["direction", "method"]),
                CounterMetricFamily("nodrute_sip_responses", _RESPONSES_HELP,
                                    labels=["direction", "code"]),
                CounterMetricFamily("nodrute_sip_malformed_messages", _MALFORMED_HELP)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        requests, responses, _ = self.describe()
        for labels, count in zip(self._request_labels, list(self._requests), strict=True):
            requests.add_metric(labels, count)
        for labels, count in zip(self._response_labels, list(self._responses), strict=True):
            responses.add_metric(labels, count)
        yield requests
        yield responses
        yield CounterMetricFamily("nodrute_sip_malformed_messages", _MALFORMED_HELP,
                                  value=self.malformed_count)
