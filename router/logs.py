"""The node's logs, configured in one place (structlog on top of stdlib logging).

Every line — the call events below and every ``logging.getLogger(...)`` call elsewhere — goes
through one stdlib handler whose :class:`structlog.stdlib.ProcessorFormatter` renders it:

* ``[log] format = "json"``: one JSON object per line (production; what a log shipper reads);
* ``"console"``: aligned, readable ``key=value`` lines (colours on a TTY);
* ``"auto"`` (default): console when the stream is a TTY, JSON otherwise.

Call context travels in a context variable (``structlog.contextvars``): :func:`in_call_context`
binds the call's record while the call handles an event and resets it after, and every line
logged meanwhile — the call's own events, a failover warning from the dispatcher, a media
release warning — carries ``call_id``, ``service``, ``municipality``, ``centre`` and
``table_version`` as they are at that moment.

Per-call events (:func:`call_event`: ``call.state`` routing/calling/early/answered/confirmed/
failing, ``call.attempt``, ``call.ivr``, ``call.transfer``, ``call.media_released``) are logged at
``[log] call_events`` (DEBUG by default: at INFO they cost more than 10 % of the router's CPU at
full load, see README "Logs and SIP tracing"); the one ``call ended`` summary is INFO.

Privacy (RFC 3323 §4.2, RFC 3325 §9.3): a caller who asked for ``Privacy: id``, ``header`` or
``user`` is logged as ``anonymous`` (:func:`caller_for_log`); the record keeps what was received.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TextIO, TypeVar

import structlog
from structlog.contextvars import merge_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

if TYPE_CHECKING:
    from sip.message import Request

    from .call_record import CallRecord
    from .config import LogSettings

LogFormat = Literal["auto", "json", "console"]

ANONYMOUS = "anonymous"
"""What is logged instead of the caller's identity when the caller asked for privacy."""

_HIDING_PRIVACY = frozenset({"id", "header", "user"})
"""Privacy values that hide the caller's identity (RFC 3323 §4.2, RFC 3325 §9.3)."""

_CALL_KEY = "call"
"""The event-dict key of an explicitly given call record (``call_summary``)."""

_CURRENT_CALL: ContextVar[CallRecord | None] = ContextVar("nodrute_call", default=None)
"""The record of the call at work, set by :func:`in_call_context` while it handles an event."""

_HANDLER_MARK = "_nodrute_handler"

_CHATTY_LIBRARIES = ("aiosqlite",)
"""Loggers kept at INFO or above even at ``[log] level = "DEBUG"``: aiosqlite logs every
statement with its parameters — a call record's caller among them, Privacy or not."""


class _CallOwner(Protocol):
    @property
    def record(self) -> CallRecord: ...


_Owner = TypeVar("_Owner", bound=_CallOwner)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def in_call_context(
    method: Callable[Concatenate[_Owner, _P], _R],
) -> Callable[Concatenate[_Owner, _P], _R]:
    """Decorate a call's event handler: its record is bound for the logs while it runs.

    One context variable set and reset per event (~1 µs); the fields are read from the record
    only when a line is actually written."""

    def handler(owner: _Owner, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        # One plain ContextVar, not structlog's bind_contextvars (a dict and a variable per key,
        # ~15 µs per call at 7 events): this runs for every message of every call.
        token = _CURRENT_CALL.set(owner.record)
        try:
            return method(owner, *args, **kwargs)
        finally:
            _CURRENT_CALL.reset(token)

    return functools.wraps(method)(handler)


def _call_fields(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Expand the bound call record into the fields every call line carries."""
    record = event_dict.pop(_CALL_KEY, None) or _CURRENT_CALL.get(None)
    if record is not None:
        event_dict.setdefault("call_id", record.call_id)
        event_dict.setdefault("service", record.service)
        event_dict.setdefault("municipality", record.municipality)
        event_dict.setdefault("centre", record.centre_id)
        event_dict.setdefault("table_version", record.table_version)
    return event_dict


# ----------------------------------------------------------------- call events


class _EventLog:
    """Events of one stdlib logger: its level decides (a SIGHUP reload changes it at run time)
    and is checked before anything is built, so a disabled event costs one method call.

    Fields travel as the record's ``extra`` (no name of a LogRecord attribute: ``name``,
    ``msg``, ``args``, ``module``…) and are rendered by the handler's ProcessorFormatter; going
    straight to stdlib rather than through a structlog BoundLogger saves ~10 µs a line."""

    def __init__(self, name: str, level: int) -> None:
        self.std = logging.getLogger(name)
        self.level = level

    def emit(self, event: str, fields: dict[str, Any], level: int | None = None) -> None:
        level = self.level if level is None else level
        if self.std.isEnabledFor(level):
            self.std.log(level, event, extra=fields)


_CALL_EVENTS = _EventLog("nodrute.call", logging.DEBUG)


def call_event(event: str, **fields: Any) -> None:
    """One event in a call's life (``call.state`` with ``state=…``, ``call.attempt``, …) at
    the ``[log] call_events`` level; the call's own fields come from the bound context."""
    _CALL_EVENTS.emit(event, fields)


def call_summary(record: CallRecord, event: str, **fields: Any) -> None:
    """The one line per call at INFO (``call ended``), with the call's fields from ``record``
    even where no call context is bound (a release by the node, a fault path)."""
    _CALL_EVENTS.emit(event, {_CALL_KEY: record, **fields}, logging.INFO)


def call_events_enabled() -> bool:
    """Whether :func:`call_event` writes anything (to skip building costly fields)."""
    return _CALL_EVENTS.std.isEnabledFor(_CALL_EVENTS.level)


def call_summary_enabled() -> bool:
    """Whether :func:`call_summary` writes anything (to skip building its fields)."""
    return _CALL_EVENTS.std.isEnabledFor(logging.INFO)


# ----------------------------------------------------------------- privacy


def privacy_hides_caller(invite: Request) -> bool:
    """The caller asked not to be identified: ``Privacy: id`` / ``header`` / ``user``."""
    for value in invite.headers.get_all("Privacy"):
        for token in value.replace(",", ";").split(";"):
            if token.strip().lower() in _HIDING_PRIVACY:
                return True
    return False


def caller_for_log(invite: Request, caller: str) -> str:
    """``caller`` (the From URI as received), or ``anonymous`` when privacy was asked for."""
    return ANONYMOUS if privacy_hides_caller(invite) else caller


# ----------------------------------------------------------------- configuration


def _shared_processors(console: bool) -> list[Processor]:
    processors: list[Processor] = [
        structlog.stdlib.ExtraAdder(),
        merge_contextvars,
        _call_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not console:
        processors.append(structlog.processors.format_exc_info)  # the console pretty-prints
    return processors


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _formatter(log_format: LogFormat, stream: TextIO) -> logging.Formatter:
    tty = _is_tty(stream)
    console = log_format == "console" or (log_format == "auto" and tty)
    renderer: Processor = (structlog.dev.ConsoleRenderer(
        colors=tty, exception_formatter=structlog.dev.plain_traceback) if console
                           else structlog.processors.JSONRenderer(default=str))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(console),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_logging(settings: LogSettings, stream: TextIO | None = None) -> logging.Handler:
    """Route every log line of the process through one handler on ``stream`` (stderr).

    Replaces the handler an earlier call installed; other handlers (pytest's) are left alone.
    Returns the handler."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(settings.format, stream))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    apply_log_settings(settings)
    # structlog.get_logger() anywhere else ends in the same handler.
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )  # fmt: skip
    return handler


def apply_log_settings(settings: LogSettings) -> None:
    """Level, per-call event level and format at once (a SIGHUP reload): the format changes on
    the handler :func:`configure_logging` installed, if there is one (none is added here)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _HANDLER_MARK, False) and isinstance(handler, logging.StreamHandler):
            handler.setFormatter(_formatter(settings.format, handler.stream))
    root.setLevel(settings.level)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    _CALL_EVENTS.level = logging.getLevelName(settings.call_events)
