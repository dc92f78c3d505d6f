"""Identifiers the core mints: branches, tags, Call-IDs (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3).

They must be globally unique and unguessable enough that a stranger cannot inject into a
dialog, so they come from ``secrets``; a short random prefix plus a counter keeps minting cheap on
the call path while staying unique per process.
"""

from __future__ import annotations

import itertools
import secrets

from .headers import BRANCH_MAGIC_COOKIE

_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie (§8.1.1.7)."""
    return f"{BRANCH_MAGIC_COOKIE}{_PREFIX}{next(_counter):x}{secrets.token_hex(4)}"


def new_tag() -> str:
    """A From/To tag (§19.3): at least 32 bits of randomness."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A Call-ID unique in space and time (§8.1.1.4)."""
    return f"{secrets.token_hex(8)}{next(_counter):x}@{host}"
