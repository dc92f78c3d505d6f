"""Credentials stay out of logs and out of reach of other users (issue 9).

* :func:`mask_url` / :func:`mask_secrets` replace the password of a ``scheme://user:pw@host``
  URL (a PostgreSQL or MQTT URL) with ``***`` wherever a URL is shown;
  :func:`install_log_masking` does the same to every log record's message as a safety net
  (exception texts are not rewritten: SQLAlchemy masks its URLs itself, aiomqtt names none).
* :func:`exposed_config_warning` checks at start that a config file holding credentials (a
  password in a URL, a ``password``/``secret``/``token`` key) is not readable by group or
  others, and names the file and its mode when it is.
"""

from __future__ import annotations

import logging
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("nodrute.secrets")

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s'\"]*:)"
                           r"(?P<password>[^@/?#\s'\"]+)(?P<at>@)")
"""``scheme://user:password@`` — the password is what lies between the second ``:`` and ``@``."""

_SECRET_KEYS = ("password", "passwd", "secret", "token")


def mask_url(url: str) -> str:
    """``postgresql+asyncpg://nodrute:s3cret@db/x`` -> ``postgresql+asyncpg://nodrute:***@db/x``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", url)


def mask_secrets(text: str) -> str:
    """Every URL password in ``text`` masked (cheap when ``text`` holds no ``://``)."""
    return mask_url(text) if "://" in text else text


def has_url_password(text: str) -> bool:
    return "://" in text and _URL_PASSWORD.search(text) is not None


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with every URL password in its message masked (message pre-formatted)."""
    msg = record.msg
    if not record.args and isinstance(msg, str):
        if "://" in msg:
            record.msg = mask_url(msg)
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the handler to report
        return record
    if "://" in message:
        record.msg, record.args = mask_url(message), None
    return record


_installed: list[Callable[..., logging.LogRecord]] = []


def install_log_masking() -> None:
    """Mask URL passwords in every log record of the process, whatever handler or formatter
    renders it (a record factory: it survives a log reconfiguration). Idempotent."""
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return mask_record(previous(*args, **kwargs))

    _installed.append(previous)
    logging.setLogRecordFactory(factory)


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)
    elif isinstance(value, str):
        yield key, value


def holds_credentials(path: Path) -> bool:
    """Whether the TOML file has a password in a URL or a password/secret/token value."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    for key, value in _strings(data):
        lowered = key.lower()
        if has_url_password(value) or (value and any(s in lowered for s in _SECRET_KEYS)):
            return True
    return False


def exposed_config_warning(path: Path) -> str | None:
    """The warning to log when ``path`` holds credentials and group or others may read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH) or not holds_credentials(path):
        return None
    return (f"config file {path} holds credentials and is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); make it readable by the service user only "
            f"(chmod 600 {path})")


def warn_if_config_exposed(path: Path | None) -> None:
    """Log :func:`exposed_config_warning` for ``path`` (called once at start)."""
    if path is None:
        return
    warning = exposed_config_warning(path)
    if warning is not None:
        log.warning("%s", warning)
