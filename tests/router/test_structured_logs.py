"""Structured logs (router/logs.py): one call through the sans-IO harness, its log read back.

JSON lines carry the call's fields bound through contextvars on every line of the call — its
own state events and stdlib lines logged while it is handled; the console format is readable
text; a caller who asked for Privacy is logged as ``anonymous`` and nowhere by number.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    Harness,
    caller_invite,
    in_dialog_request,
    make_harness,
    response_to,
)

from municipality_map import RoutingSnapshot
from router import logs as node_logs
from router.config import LogSettings
from router.logs import ANONYMOUS, apply_log_settings, configure_logging
from sip.message import Request, Response

CALLER_NUMBER = "4790000001"  # caller_invite(1)'s From user; P-Asserted-Identity +4790000001


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def log_to() -> Iterator[Any]:
    """Configure the node's logging onto a stream; undone after the test."""
    root = logging.getLogger()
    level = root.level
    handlers: list[logging.Handler] = []

    def configure(stream: io.StringIO, **settings: Any) -> io.StringIO:
        handlers.append(configure_logging(LogSettings(**settings), stream))
        return stream

    yield configure
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(logging.NOTSET)
    node_logs._CALL_EVENTS.level = logging.DEBUG
    structlog.reset_defaults()


def full_call(snapshot: RoutingSnapshot, invite: bytes | None = None,
              failover: bool = False) -> Harness:
    """INVITE (to 0301 → AMK-OSLO), 180, 200, ACK, BYE from the caller; with ``failover``
    the first destination answers 503 first."""
    h = make_harness(snapshot)
    h.feed(invite or caller_invite(1))
    h.take_one(100, CARRIER)
    sent = h.take_one("INVITE")
    centre = sent.message
    assert isinstance(centre, Request)
    if failover:
        h.feed(response_to(centre, 503), source=sent.dest)
        sent = h.take_one("INVITE")
        centre = sent.message
        assert isinstance(centre, Request)
        h.take()
    h.feed(response_to(centre, 180), source=sent.dest)
    h.feed(response_to(centre, 200, body=SDP_ANSWER), source=sent.dest)
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    h.feed(in_dialog_request("ACK", ok, 1, 1))
    h.feed(in_dialog_request("BYE", ok, 1, 2))
    bye = h.take_one("BYE", sent.dest).message
    assert isinstance(bye, Request)
    h.feed(response_to(bye, 200), source=sent.dest)
    assert len(h.records) == 1
    return h


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_json_lines_carry_each_state_change_with_the_bound_call_fields(
        snapshot: RoutingSnapshot, log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="DEBUG", format="json")
    h = full_call(snapshot)
    record = h.records[0]
    lines = [line for line in json_lines(stream) if line.get("call_id") == "call1@carrier.example"]
    states = [line["state"] for line in lines if line["event"] in ("call.state", "call ended")]
    assert states == ["routing", "calling", "early", "answered", "confirmed", "ended"]
    for line in lines:
        assert line["service"] == "113"
        assert line["table_version"] == snapshot.version.label == record.table_version
        assert line["level"] in ("debug", "info") and line["timestamp"]
    routing = next(line for line in lines if line.get("state") == "routing")
    assert (routing["municipality"], routing["centre"], routing["source"]) == (
        "0301", "AMK-OSLO", "header")
    assert routing["caller"] == f"sip:{CALLER_NUMBER}@carrier.example"
    ended = lines[-1]
    assert ended["event"] == "call ended" and ended["level"] == "info"
    assert (ended["reason"], ended["outcome"], ended["centre"]) == (
        "caller_bye", "answered", "AMK-OSLO")
    assert next(line for line in lines if line.get("state") == "early")["status"] == 180


def test_stdlib_lines_logged_while_a_call_is_handled_carry_its_fields(
        snapshot: RoutingSnapshot, log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="DEBUG", format="json")
    full_call(snapshot, failover=True)
    lines = json_lines(stream)
    [failover] = [line for line in lines if line["logger"] == "nodrute.b2bua"
                  and line["event"].startswith("failover")]
    assert failover["level"] == "warning"
    assert failover["call_id"] == "call1@carrier.example" and failover["municipality"] == "0301"
    [attempt] = [line for line in lines if line["event"] == "call.attempt"]
    assert attempt["attempt"] == 2 and attempt["call_id"] == "call1@carrier.example"
    assert attempt["uri"] != next(line for line in lines if line.get("state") == "calling")["uri"]
    # Outside any call: no call fields.
    logging.getLogger("nodrute.app").warning("node-wide %s", "line")
    last = json_lines(stream)[-1]
    assert last["event"] == "node-wide line" and "call_id" not in last


def test_per_call_events_follow_their_own_level_the_summary_stays_info(
        snapshot: RoutingSnapshot, log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="INFO", format="json")
    full_call(snapshot)
    assert [line["event"] for line in json_lines(stream)] == ["call ended"]
    stream = log_to(io.StringIO(), level="INFO", format="json", call_events="INFO")
    full_call(snapshot)
    assert [line.get("state") for line in json_lines(stream)] == [
        "routing", "calling", "early", "answered", "confirmed", "ended"]


def test_console_format_is_readable_text(snapshot: RoutingSnapshot, log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="DEBUG", format="console")
    full_call(snapshot)
    lines = stream.getvalue().splitlines()
    early = next(line for line in lines if "state=early" in line)
    assert "call.state" in early and "call_id=call1@carrier.example" in early
    assert "centre=AMK-OSLO" in early and "[debug" in early
    assert not any(line.lstrip().startswith("{") for line in lines)
    assert "\x1b[" not in stream.getvalue()  # no colours when not on a terminal


def test_auto_format_is_console_on_a_tty_and_json_otherwise(log_to: Any) -> None:
    piped = log_to(io.StringIO(), format="auto")
    logging.getLogger("nodrute.app").warning("hello %d", 1)
    assert json.loads(piped.getvalue())["event"] == "hello 1"
    tty = log_to(FakeTty(), format="auto")
    logging.getLogger("nodrute.app").warning("hello %d", 2)
    text = tty.getvalue()
    assert "hello 2" in text and not text.lstrip().startswith("{")


@pytest.mark.parametrize("privacy", ["id", "header;user", "user", "Id"])
def test_privacy_hides_the_caller_in_every_line(snapshot: RoutingSnapshot, log_to: Any,
                                                privacy: str) -> None:
    stream = log_to(io.StringIO(), level="DEBUG", format="json")
    invite = caller_invite(1).replace(b"Privacy: none", f"Privacy: {privacy}".encode())
    h = full_call(snapshot, invite)
    assert CALLER_NUMBER in h.records[0].caller  # the record keeps what was received
    assert CALLER_NUMBER not in stream.getvalue()
    lines = json_lines(stream)
    callers = [line["caller"] for line in lines if "caller" in line]
    assert callers == [ANONYMOUS, ANONYMOUS]  # the routing event and the summary


def test_without_privacy_the_caller_is_logged(snapshot: RoutingSnapshot, log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="INFO", format="json")
    full_call(snapshot)  # "Privacy: none"
    [ended] = json_lines(stream)
    assert ended["caller"] == f"sip:{CALLER_NUMBER}@carrier.example"



def test_a_reload_changes_level_and_format_on_the_installed_handler(log_to: Any) -> None:
    stream = log_to(io.StringIO(), level="WARNING", format="json")
    node = logging.getLogger("nodrute.app")
    node.info("not yet")
    apply_log_settings(LogSettings(level="INFO", format="console"))
    node.info("now readable")
    text = stream.getvalue()
    assert "not yet" not in text
    assert "now readable" in text and not text.lstrip().startswith("{")
    assert len([h for h in logging.getLogger().handlers if h.formatter is not None
                and "ProcessorFormatter" in type(h.formatter).__name__]) == 1


def test_debug_level_keeps_aiosqlite_statements_out(log_to: Any) -> None:
    # aiosqlite logs each statement with its parameters (a call record's caller) at DEBUG.
    stream = log_to(io.StringIO(), level="DEBUG", format="json")
    logging.getLogger("aiosqlite").debug("executing INSERT ... %s", CALLER_NUMBER)
    logging.getLogger("nodrute.app").debug("ours")
    assert [line["event"] for line in json_lines(stream)] == ["ours"]


def test_media_calls_log_the_ivr_and_the_media_release(snapshot: RoutingSnapshot,
                                                       log_to: Any) -> None:
    from test_call_media_anchor import AMK_OSLO, FakeEngine, answered_media_call, media_harness

    from ivr.config import MediaSettings
    from router.config import NodruteSettings

    stream = log_to(io.StringIO(), level="DEBUG", format="json")
    engine = FakeEngine()
    h = media_harness(snapshot, engine, NodruteSettings(
        media=MediaSettings(enabled=True, mode="release")))
    answered_media_call(h, engine, 1)
    to_caller = h.take_one("INVITE", CARRIER).message
    assert isinstance(to_caller, Request)
    h.feed(response_to(to_caller, 200, body=SDP_ANSWER, to_tag=None))
    to_centre = h.take_one("INVITE", AMK_OSLO).message
    assert isinstance(to_centre, Request)
    h.feed(response_to(to_centre, 200, body=SDP_ANSWER, to_tag=None), source=AMK_OSLO)
    events = [(line["event"], line.get("state")) for line in json_lines(stream)
              if line["logger"] == "nodrute.call"]
    assert events == [("call.state", "routing"), ("call.ivr", None),
                      ("call.state", "calling"), ("call.state", "answered"),
                      ("call.state", "confirmed"), ("call.media_released", None)]
    ivr = next(line for line in json_lines(stream) if line["event"] == "call.ivr")
    assert ivr["early_media"] is True and ivr["centre"] == "AMK-OSLO"
