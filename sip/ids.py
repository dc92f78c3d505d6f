"""Identifiers the core mints: branches, tags, Call-IDs (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).

They must be globally unique and unguessable enough that a stranger cannot inject into a
dialog, so they come from the OS's CSPRNG (``os.urandom``, what ``secrets`` uses); a short random
prefix plus a counter keeps minting cheap on the call path while staying unique per process.
"""

from __future__ import annotations

import itertools
import os
import secrets

from .headers import BRANCH_MAGIC_COOKIE

_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


class _RandomHex:
    """Hex digits from ``os.urandom``, fetched 4 KiB at a time.

    A call mints six identifiers; ``secrets.token_hex`` makes one getrandom() system call for
    each, which was ~5 % of the router's CPU per call. Slicing them off a buffer refilled from
    the same CSPRNG keeps them just as unpredictable for a fraction of the cost. Every digit is
    used once.
    """

    __slots__ = ("_buf", "_pos")

    _REFILL_BYTES = 4096

    def __init__(self) -> None:
        self._buf = ""
        self._pos = 0

    def discard(self) -> None:
        """Drop the buffered digits (the next take() refills)."""
        self._buf = ""
        self._pos = 0

    def take(self, nbytes: int) -> str:
        """``2 * nbytes`` fresh hex digits (``nbytes`` random bytes)."""
        end = self._pos + 2 * nbytes
        if end > len(self._buf):
            self._buf = os.urandom(max(self._REFILL_BYTES, nbytes)).hex()
            self._pos, end = 0, 2 * nbytes
        digits = self._buf[self._pos:end]
        self._pos = end
        return digits


_random_hex = _RandomHex()
if hasattr(os, "register_at_fork"):  # a forked child must not mint its parent's next ids
    os.register_at_fork(after_in_child=_random_hex.discard)


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie (§8.1.1.7)."""
    return f"{BRANCH_MAGIC_COOKIE}{_PREFIX}{next(_counter):x}{_random_hex.take(4)}"


def new_tag() -> str:
    """A From/To tag (§19.3): at least 32 bits of randomness."""
    return _random_hex.take(6)


def new_call_id(host: str) -> str:
    """A Call-ID unique in space and time (§8.1.1.4)."""
    return f"{_random_hex.take(8)}{next(_counter):x}@{host}"
