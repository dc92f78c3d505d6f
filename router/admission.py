"""Who may use the node, decided per packet before it is parsed (sans-IO, fake-clock testable).

The transport asks :meth:`AdmissionPolicy.admit` about every message before parsing it, so
nothing from a stranger ever creates a server transaction:

* a **trunk** source (``[[trunks]] sources``), a **centre** of the routing table in force (its
  URI names an address) or a ``[security] trusted_sources`` network: admitted, no limit —
  emergency calls from real trunks never wait behind anything of ours;
* any **other** source goes through a per-source token bucket (``rate_pps``, ``burst``); one
  over its rate for ``block_after_s`` (its bucket never refilled in between) is **blocked** for
  ``block_s``: its packets are dropped on a dict lookup, unparsed. The table of sources is an
  LRU of ``max_sources`` entries, so a flood from many (spoofed) addresses costs bounded memory;
* a stranger's *response* within its rate is admitted (it matches one of our client
  transactions or is dropped by the layer: no state); a stranger's *request* is refused per
  ``[security] unknown_source``: ``drop`` (default: a scanner learns nothing, not even that a
  SIP stack listens) or ``403`` (a stateless answer, no transaction).

Every refusal is counted by a bounded reason (``unknown_source``, ``rate_limited``,
``blocked``) and the first per source and ``log_interval_s`` is logged with the source's
address: a carrier whose trunk ``sources`` are misconfigured shows up in the log and the
metric, not as silence.

:class:`TrunkLoad` bounds what one trunk may hold open on the node (``max_calls``,
``max_transactions``); the B2BUA answers 503 + Retry-After beyond it so the carrier fails over.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from municipality_map import RoutingSnapshot
from sip.errors import SipParseError
from sip.transport import Admission

from .config import NodruteSettings, SecuritySettings, TrunkSettings
from .legs import uri_destination

log = logging.getLogger("nodrute.admission")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_RESPONSE_START = b"SIP/2.0 "
_CLASSIFIED_MAX = 4096
"""Source addresses whose trunk/peer/stranger class is memoised (cleared whole when full)."""


class RejectReason(enum.StrEnum):
    """Why a message got no service (the ``reason`` label of ``nodrute_rejected_total``)."""

    UNKNOWN_SOURCE = "unknown_source"
    """A request from an address in no trunk, no centre, no ``trusted_sources``."""
    RATE_LIMITED = "rate_limited"
    """A non-trunk source over its ``rate_pps``."""
    BLOCKED = "blocked"
    """A non-trunk source blocked for having stayed over its rate."""
    TRUNK_CALLS = "trunk_calls"
    """A trunk at its ``max_calls``: 503 + Retry-After."""
    TRUNK_TRANSACTIONS = "trunk_transactions"
    """A trunk at its ``max_transactions``: 503 + Retry-After."""


class Verdict(enum.Enum):
    """What the rate limiter says about one packet of a non-trunk source."""

    PASS = "pass"
    LIMITED = "limited"
    BLOCKED = "blocked"


@dataclass(slots=True)
class _SourceState:
    tokens: float
    at: float
    over_since: float | None = None
    """When the source first found its bucket empty since it was last full."""
    blocked_until: float = 0.0


class SourceLimiter:
    """Per-source token buckets with temporary blocking, in a bounded LRU table."""

    def __init__(self, rate_pps: float, burst: int, block_after_s: float, block_s: float,
                 max_sources: int,
                 on_block: Callable[[str, float], None] | None = None) -> None:
        self.rate_pps = rate_pps
        self.burst = float(burst)
        self.block_after_s = block_after_s
        self.block_s = block_s
        self.max_sources = max_sources
        self._on_block = on_block
        self._sources: OrderedDict[str, _SourceState] = OrderedDict()
        self.blocks = 0
        """Sources blocked so far (each block counts once)."""
        self.evicted = 0
        """Sources forgotten to keep the table within ``max_sources``."""

    def __len__(self) -> int:
        return len(self._sources)

    def blocked_count(self, now: float) -> int:
        """Sources blocked at ``now`` (for the gauge; walks the table)."""
        return sum(1 for s in self._sources.values() if s.blocked_until > now)

    def is_blocked(self, source: str, now: float) -> bool:
        state = self._sources.get(source)
        return state is not None and state.blocked_until > now

    def check(self, source: str, now: float) -> Verdict:
        """Take a token for one packet from ``source`` at ``now``."""
        sources = self._sources
        state = sources.get(source)
        if state is None:
            if len(sources) >= self.max_sources:
                sources.popitem(last=False)
                self.evicted += 1
            state = sources[source] = _SourceState(self.burst, now)
        else:
            sources.move_to_end(source)
            if state.blocked_until > now:
                return Verdict.BLOCKED
            if state.blocked_until:  # the block has run out: a fresh start
                state.blocked_until = 0.0
                state.tokens, state.at, state.over_since = self.burst, now, None
        tokens = min(self.burst, state.tokens + (now - state.at) * self.rate_pps)
        state.at = now
        if tokens >= self.burst:
            state.over_since = None  # quiet long enough to refill: the streak is over
        if tokens >= 1.0:
            state.tokens = tokens - 1.0
            return Verdict.PASS
        state.tokens = tokens
        if state.over_since is None:
            state.over_since = now
        elif now - state.over_since >= self.block_after_s:
            state.blocked_until = now + self.block_s
            self.blocks += 1
            if self._on_block is not None:
                self._on_block(source, state.blocked_until)
            return Verdict.BLOCKED
        return Verdict.LIMITED


class _LogGate:
    """At most one log line per (reason, source) every ``interval_s``, in a bounded table."""

    def __init__(self, interval_s: float, max_entries: int) -> None:
        self.interval_s = interval_s
        self.max_entries = max_entries
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()

    def allow(self, reason: str, source: str, now: float) -> bool:
        key = (reason, source)
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        return True


class AdmissionPolicy:
    """The transport's admission check (:class:`sip.transport.AdmissionCheck`).

    ``settings`` and ``snapshot`` are read through callables (the B2BUA's, so a SIGHUP reload or
    a table switch takes effect at the next packet without anyone telling this object)."""

    def __init__(self, settings: Callable[[], NodruteSettings],
                 snapshot: Callable[[], RoutingSnapshot] | None = None,
                 on_reject: Callable[[str], None] | None = None) -> None:
        self._settings_fn = settings
        self._snapshot_fn = snapshot
        self._on_reject = on_reject
        self.rejected: Counter[str] = Counter()
        """Refusals by :class:`RejectReason` value."""
        self._settings: NodruteSettings | None = None
        self._snapshot: RoutingSnapshot | None = None
        self._networks: list[Network] = []
        self._peers: frozenset[str] = frozenset()
        self._classified: dict[str, bool] = {}
        sec = settings().security
        self.limiter = self._new_limiter(sec)
        self._log_gate = _LogGate(sec.log_interval_s, sec.max_sources)
        self._refresh()

    # ----------------------------------------------------------------- the check

    def admit(self, data: bytes, source: tuple[str, int], transport: str,
              now: float) -> Admission:
        """Admit, drop or (``unknown_source = "403"``) reject one message; never raises."""
        if self._settings_fn() is not self._settings or (
                self._snapshot_fn is not None and self._snapshot_fn() is not self._snapshot):
            self._refresh()
        ip = source[0]
        trusted = self._classified.get(ip)
        if trusted is None:
            trusted = self._classify(ip)
        if trusted:
            return Admission.ADMIT
        now_verdict = self.limiter.check(ip, now)
        if now_verdict is Verdict.BLOCKED:
            self._reject(RejectReason.BLOCKED, ip, now, data)
            return Admission.DROP
        if now_verdict is Verdict.LIMITED:
            self._reject(RejectReason.RATE_LIMITED, ip, now, data)
            return Admission.DROP
        if data.startswith(_RESPONSE_START):
            return Admission.ADMIT  # matches a client transaction of ours or is dropped there
        self._reject(RejectReason.UNKNOWN_SOURCE, ip, now, data)
        assert self._settings is not None
        return Admission.REJECT if self._settings.security.unknown_source == "403" \
            else Admission.DROP

    def is_trusted(self, ip: str) -> bool:
        """A trunk, a centre of the table in force or a ``trusted_sources`` address."""
        trusted = self._classified.get(ip)
        return self._classify(ip) if trusted is None else trusted

    # ----------------------------------------------------------------- internals

    def _reject(self, reason: RejectReason, ip: str, now: float, data: bytes) -> None:
        self.rejected[reason.value] += 1
        if self._on_reject is not None:
            self._on_reject(reason.value)
        if reason is RejectReason.UNKNOWN_SOURCE and self._log_gate.allow(reason.value, ip, now):
            log.warning("request from unknown source %s dropped or refused (%s): the address is "
                        "in no [[trunks]] sources; first line %r (at most one line per source "
                        "every %.0f s)", ip, self._action(), _first_line(data),
                        self._log_gate.interval_s)

    def _action(self) -> str:
        assert self._settings is not None
        return "403" if self._settings.security.unknown_source == "403" else "drop"

    def _blocked(self, ip: str, until: float) -> None:
        limiter = self.limiter
        if self._log_gate.allow("blocked", ip, until - limiter.block_s):
            log.warning("source %s blocked for %.0f s: over %g packets/s for %g s", ip,
                        limiter.block_s, limiter.rate_pps, limiter.block_after_s)

    def _new_limiter(self, sec: SecuritySettings) -> SourceLimiter:
        return SourceLimiter(sec.rate_pps, sec.burst, sec.block_after_s, sec.block_s,
                             sec.max_sources, on_block=self._blocked)

    def _refresh(self) -> None:
        settings = self._settings_fn()
        if self._settings is not None and settings.security != self._settings.security:
            self.limiter = self._new_limiter(settings.security)
            self._log_gate = _LogGate(settings.security.log_interval_s,
                                      settings.security.max_sources)
        self._settings = settings
        networks = [ipaddress.ip_network(c, strict=False)
                    for trunk in settings.trunks for c in trunk.sources]
        networks += [ipaddress.ip_network(c, strict=False)
                     for c in settings.security.trusted_sources]
        self._networks = networks
        if self._snapshot_fn is not None:
            self._snapshot = self._snapshot_fn()
            self._peers = centre_addresses(self._snapshot)
        self._classified = {}

    def _classify(self, ip: str) -> bool:
        if ip in self._peers:
            trusted = True
        else:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                trusted = False
            else:
                trusted = any(address in net for net in self._networks)
        classified = self._classified
        if len(classified) >= _CLASSIFIED_MAX:
            classified.clear()
        classified[ip] = trusted
        return trusted


def centre_addresses(snapshot: RoutingSnapshot) -> frozenset[str]:
    """The IP addresses the centres' URIs name (host names are left out: no DNS here)."""
    found: set[str] = set()
    named: list[str] = []
    for centre in snapshot.centres.values():
        for uri in centre.uris:
            try:
                host = uri_destination(uri)[0]
            except (SipParseError, ValueError):  # a URI we cannot read: the table check's job
                continue
            try:
                found.add(str(ipaddress.ip_address(host)))
            except ValueError:
                named.append(f"{centre.centre_id} ({host})")
    if named:
        log.warning("centre URIs naming a host, not an address: %s; their traffic is treated "
                    "as a stranger's (rate-limited, requests dropped) unless [security] "
                    "trusted_sources covers their addresses", ", ".join(sorted(named)))
    return frozenset(found)


def _first_line(data: bytes) -> str:
    return data[:80].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("ascii", "replace")


class TrunkLoad:
    """Calls in progress and out-of-dialog server transactions one trunk holds on the node.

    Transactions are kept as keys in a deque and swept incrementally: each new request checks
    a few keys at the front and keeps (rotates) those still alive, so the count is an upper
    bound that converges on the live number at a bounded cost per request (no timer)."""

    __slots__ = ("_txs", "calls")

    SWEEP = 4
    """Keys checked per request."""
    SWEEP_AT_BOUND = 64
    """Keys checked before refusing a request at the bound."""

    def __init__(self) -> None:
        self.calls = 0
        self._txs: deque[str] = deque()

    @property
    def transactions(self) -> int:
        """Transactions counted (live ones plus dead ones not yet swept)."""
        return len(self._txs)

    def admit(self, tx: str, invite: bool, trunk: TrunkSettings,
              alive: Callable[[str], bool]) -> RejectReason | None:
        """Count ``tx`` and return None, or the reason to refuse it with 503."""
        self._sweep(alive, self.SWEEP)
        if invite and self.calls >= trunk.max_calls:
            return RejectReason.TRUNK_CALLS
        if len(self._txs) >= trunk.max_transactions:
            self._sweep(alive, self.SWEEP_AT_BOUND)
            if len(self._txs) >= trunk.max_transactions:
                return RejectReason.TRUNK_TRANSACTIONS
        self._txs.append(tx)
        return None

    def _sweep(self, alive: Callable[[str], bool], most: int) -> None:
        txs = self._txs
        popleft, append = txs.popleft, txs.append
        for _ in range(most if most < len(txs) else len(txs)):
            tx = popleft()
            if alive(tx):
                append(tx)
