"""Service configuration: a TOML file, overridable by environment variables.

Typed defaults with units in the names. ``NODRUTE__SIP__PORT=5070`` overrides ``[sip] port``
(double underscore separates the nesting levels). Relative paths in the file are relative to the
file's own folder, so ``configs/nodrute.toml`` can say ``table_dir = "tables/sample-2024"``.
Everything is validated at start; a bad file stops the router with a message naming the field.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ivr.config import IvrSettings, MediaSettings
from municipality_map import Service, default_table_dir

from .answer_time import AnswerTimeSettings
from .health import HealthSettings
from .resolve import LocationSource

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "nodrute.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipSettings(_Section):
    """Where the router listens and how it speaks SIP."""

    host: str = "127.0.0.1"
    """Address to bind UDP and TCP listeners to."""
    port: int = Field(5060, ge=0, le=65535)
    """Listen port for UDP and TCP; 0 picks a free one (tests)."""
    transports: list[Literal["udp", "tcp", "tls"]] = ["udp", "tcp"]
    """``tls`` listens on ``[tls] tls_port`` with ``[tls] certificate`` (RFC 3261 §26)."""
    advertised_host: str | None = None
    """Host put in Via/Contact; defaults to ``host`` (set it when binding 0.0.0.0)."""
    t1_s: float = Field(0.5, gt=0)
    """RFC 3261 T1 (round-trip estimate); timers A-K derive from T1/T2/T4."""
    t2_s: float = Field(4.0, gt=0)
    t4_s: float = Field(5.0, gt=0)
    user_agent: str = "nodrute/0.1"
    max_forwards: int = Field(70, ge=1, le=255)
    drain_retry_after_s: int = Field(30, ge=0, le=86400)
    """SIGTERM: new INVITEs (and OPTIONS) get 503 with this Retry-After while calls drain."""
    drain_timeout_s: float = Field(3600.0, ge=0)
    """SIGTERM: calls still up after this long are released (BYE / 503), then the node exits."""

    @property
    def via_host(self) -> str:
        return self.advertised_host or self.host


class RoutingSettings(_Section):
    """The routing table and what to do when it has no answer."""

    table_dir: Path = Field(default_factory=default_table_dir)
    default_centre_113: str = "AMK-OSLO"
    """Centre for a 113 call with no usable location (missing or unknown municipality)."""
    default_centre_116117: str = "LVS-0301"
    """Centre for a 116117 call with no usable location."""
    ring_timeout_113_s: float = Field(120.0, gt=0)
    """The whole hunt for a 113 call (every attempt, both passes) ends after this long."""
    ring_timeout_116117_s: float = Field(300.0, gt=0)
    """The whole hunt for a 116117 call ends after this long."""

    def default_centre(self, service: Service) -> str:
        return self.default_centre_113 if service is Service.AMK else self.default_centre_116117

    def ring_timeout_s(self, service: Service) -> float:
        return self.ring_timeout_113_s if service is Service.AMK else self.ring_timeout_116117_s


class LocationSettings(_Section):
    """Caller location by value: PIDF-LO positions and civic postcodes (issue 7)."""

    max_uncertainty_m: float = Field(5000.0, gt=0)
    """A position whose uncertainty radius is larger than this is not used for routing."""
    max_nearest_m: float = Field(5000.0, ge=0)
    """A position in no municipality (at sea, on a skerry) takes the nearest one within this."""
    max_pidf_bytes: int = Field(16 * 1024, ge=512, le=256 * 1024)
    """A PIDF-LO document larger than this is not parsed (bounds the time spent per call)."""


class FailoverSettings(_Section):
    """Per-attempt timers of the hunt along a centre's destination plan (``router/hunt.py``)."""

    first_response_s: float = Field(2.0, gt=0)
    """No provisional response (not even 100) from a centre within this long: next one."""
    attempt_ring_113_s: float = Field(20.0, gt=0)
    """A 113 centre ringing this long without answering: CANCEL it, next destination."""
    attempt_ring_116117_s: float = Field(120.0, gt=0)
    """A legevaktsentral ringing this long without answering: next destination."""
    final_codes: list[int] = []
    """Final statuses (300-699) relayed to the caller at once instead of failing over."""
    retry_plan_113: bool = True
    """113: when every destination failed, walk the whole plan once more."""
    retry_plan_116117: bool = False

    @field_validator("final_codes")
    @classmethod
    def _final_codes_are_failures(cls, value: list[int]) -> list[int]:
        bad = [code for code in value if not 300 <= code <= 699]
        if bad:
            raise ValueError(f"final_codes must be 300-699, got {bad}")
        return value

    def attempt_ring_s(self, service: Service) -> float:
        return self.attempt_ring_113_s if service is Service.AMK else self.attempt_ring_116117_s

    def passes(self, service: Service) -> int:
        retry = self.retry_plan_113 if service is Service.AMK else self.retry_plan_116117
        return 2 if retry else 1


class TrunkSettings(_Section):
    """A carrier trunk: who it is and how it signals the caller's municipality."""

    name: str
    sources: list[str] = ["0.0.0.0/0", "::/0"]
    """Source networks (CIDR) the trunk's traffic comes from; first matching trunk wins."""
    municipality_sources: list[LocationSource] = [
        LocationSource.HEADER, LocationSource.URI_PARAM, LocationSource.PREFIX,
        LocationSource.GEO, LocationSource.POSTCODE,
    ]
    """Where to look for the municipality number, in order of precedence: the first one the
    routing table knows decides. ``geo`` (PIDF-LO position) first suits a trunk whose
    municipality header comes from the cell site rather than the caller."""
    municipality_header: str = "X-Kommunenummer"
    max_calls: int = Field(20000, ge=1)
    """Calls in progress from this trunk; a new INVITE beyond it gets 503 + Retry-After (the
    carrier fails over to another node) instead of taking the node down for everyone."""
    max_transactions: int = Field(100000, ge=1)
    """Out-of-dialog server transactions (INVITE, OPTIONS, ...) open for this trunk, answered ones
    included until their timers end; beyond it new requests get 503 + Retry-After."""
    tls_subjects: list[str] = []
    """Mutual TLS: when set, the trunk's INVITEs must come over TLS from a peer whose verified
    client certificate carries one of these subjects (``"CN=sbc1.carrier.example"``, every
    attribute of ``"CN=…, O=…"``) or SAN DNS names (``"sbc1.carrier.example"``); else 403."""

    @field_validator("sources")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError with the bad text
        return value

    @field_validator("municipality_sources")
    @classmethod
    def _no_default_source(cls, value: list[LocationSource]) -> list[LocationSource]:
        if LocationSource.DEFAULT in value:
            raise ValueError("'default' is not a source; it is what happens when none is usable")
        return value


class TlsSettings(_Section):
    """TLS (RFC 3261 §26): our certificate, the CA peers are verified with (sip/tls.py)."""

    certificate: Path | None = None
    """PEM certificate chain of this node (needed for ``tls`` in ``[sip] transports``)."""
    private_key: Path | None = None
    """PEM private key of ``certificate`` (keep it readable by the service user only)."""
    ca_file: Path | None = None
    """PEM CA bundle: centres' server certificates and trunks' client certificates are
    verified against it (centres: the system store when unset)."""
    tls_port: int = Field(5061, ge=0, le=65535)
    """TLS listen port; 0 picks a free one (tests)."""
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    require_client_certificate: bool = False
    """Refuse the handshake of a client without a certificate signed by ``ca_file``. Off: a
    client certificate is asked for, and trunks with ``tls_subjects`` demand it per trunk."""
    handshake_timeout_s: float = Field(5.0, gt=0)
    """A TLS handshake (either direction) not done within this long fails."""

    @model_validator(mode="after")
    def _key_with_certificate(self) -> TlsSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        if self.require_client_certificate and self.ca_file is None:
            raise ValueError("require_client_certificate needs ca_file")
        return self


class SecuritySettings(_Section):
    """Who may use the node and how strangers are kept cheap (router/admission.py)."""

    unknown_source: Literal["drop", "403"] = "drop"
    """A request from an address in no trunk (and not a centre or ``trusted_sources``):
    ``drop`` it silently (scanners learn nothing) or answer ``403`` statelessly. Either way it
    is counted (``nodrute_rejected_total{reason="unknown_source"}``) and logged, rate-limited,
    naming the source: the signal for a trunk whose ``sources`` are wrong."""
    trusted_sources: list[str] = []
    """Extra peers (CIDR) served without rate limits although not trunks, e.g. centres whose
    URIs name a host rather than an address (those named by address are trusted already)."""
    rate_pps: float = Field(10.0, gt=0)
    """Packets per second looked at from one non-trunk source (token bucket)."""
    burst: int = Field(20, ge=1)
    """Token bucket depth for one non-trunk source."""
    block_after_s: float = Field(5.0, ge=0)
    """A non-trunk source over ``rate_pps`` this long (its bucket never refilled) is blocked."""
    block_s: float = Field(60.0, gt=0)
    """How long a blocked source's packets are dropped before they are even parsed."""
    max_sources: int = Field(4096, ge=16)
    """Non-trunk sources remembered (least recently heard from forgotten first): bounds memory
    under a flood from many (spoofed) addresses."""
    log_interval_s: float = Field(60.0, gt=0)
    """At most one log line per source and reason this often (unknown source, blocked)."""
    busy_retry_after_s: int = Field(5, ge=0, le=86400)
    """Retry-After on the 503 to a trunk over its ``max_calls`` / ``max_transactions``."""

    @field_validator("trusted_sources")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value


class LogSettings(_Section):
    """Log lines (router/logs.py): level, format, and the level of per-call events."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    """``json``: one JSON object per line; ``console``: readable; ``auto``: console on a TTY."""
    call_events: Literal["DEBUG", "INFO"] = "DEBUG"
    """Level of the per-call state events (the one ``call ended`` summary is always INFO)."""


class HepSettings(_Section):
    """Copies of every SIP message to a Homer/HEPv3 collector over UDP (off by default)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9060, ge=1, le=65535)
    node_id: int = Field(2001, ge=0, le=0xFFFFFFFF)
    """HEP capture agent id (chunk 0x000c) naming this node in the collector."""
    password: str = ""
    """HEP authentication key (chunk 0x000e); empty: none sent."""
    queue_size: int = Field(10_000, ge=1)
    """Messages waiting to be sent at most; beyond it copies are dropped (and counted)."""


class DatabaseSettings(_Section):
    """Where table versions, activations and the audit log are kept (SQLAlchemy async URL)."""

    url: str = f"sqlite+aiosqlite:///{(REPO_ROOT / 'var' / 'nodrute.db').as_posix()}"
    """``sqlite+aiosqlite:///path`` (default ``var/nodrute.db`` of the checkout, created on
    first start) or ``postgresql+asyncpg://user@host/db``."""


class TablesSettings(_Section):
    """How a node follows the table versions in the database."""

    poll_interval_s: float = Field(5.0, gt=0)
    """Re-read the activations this often (MQTT notifications trigger a read at once)."""
    drop_dir: Path | None = None
    """Folder watched for new table versions (one sub-folder each); None or "" = off."""
    drop_poll_interval_s: float = Field(2.0, gt=0)
    import_configured_table_on_empty: bool = True
    """On an empty database, import ``routing.table_dir`` and activate it."""

    @field_validator("drop_dir", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value == "" else value


class MqttSettings(_Section):
    """Table-activation announcements between nodes (aiomqtt); empty url = single node."""

    url: str = ""
    """``mqtt://127.0.0.1:1883``; empty: no broker, the node polls the database alone."""
    topic_prefix: str = "nodrute"
    node_id: str = ""
    """This node's name in ``{prefix}/nodes/{node_id}/active``; default ``hostname-pid``."""


class MetricsSettings(_Section):
    """Prometheus ``/metrics`` endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    answer_time: AnswerTimeSettings = AnswerTimeSettings()
    """``[metrics.answer_time]``: sliding windows and targets of the answer-time indicators."""


class RecordsSettings(_Section):
    """Call records (router/records.py): a bounded queue to the ``[database]``, a local
    append-only spill file while the database is down."""

    enabled: bool = True
    queue_size: int = Field(10_000, ge=1)
    """Records waiting in memory for the database; beyond it they go to the spill file."""
    batch_size: int = Field(200, ge=1)
    """Records per database transaction."""
    spill_path: Path | None = None
    """One JSON line per record the database did not take; replayed when it is back. Default:
    ``records-spill.jsonl`` beside an SQLite ``[database]`` file (so a spill is only ever
    replayed into its own database), else ``var/records-spill.jsonl`` of the checkout."""
    replay_interval_s: float = Field(5.0, gt=0)
    """How often a down database is tried again (and the spill file replayed)."""
    process: bool = True
    """Write the records from a child process (router/records_process.py): the router's event
    loop only hands them over. False: the writer runs inside the router (router/records.py)."""


class NodruteSettings(BaseSettings):
    """The whole configuration (``configs/nodrute.toml`` documents every field)."""

    model_config = SettingsConfigDict(
        env_prefix="NODRUTE__", env_nested_delimiter="__", extra="forbid", frozen=True,
    )

    sip: SipSettings = SipSettings()
    routing: RoutingSettings = RoutingSettings()
    failover: FailoverSettings = FailoverSettings()
    location: LocationSettings = LocationSettings()
    trunks: list[TrunkSettings] = [TrunkSettings(name="default")]
    log: LogSettings = LogSettings()
    database: DatabaseSettings = DatabaseSettings()
    tables: TablesSettings = TablesSettings()
    mqtt: MqttSettings = MqttSettings()
    metrics: MetricsSettings = MetricsSettings()
    hep: HepSettings = HepSettings()
    """``[hep]``: SIP tracing to a HEPv3 collector (router/hep.py)."""
    records: RecordsSettings = RecordsSettings()
    media: MediaSettings = MediaSettings()
    """``[media] enabled = true``: anchored RTP and the IVR (off by default: SDP relayed)."""
    ivr: IvrSettings = IvrSettings()
    health: HealthSettings = HealthSettings()
    """``[health]``: OPTIONS probes of every centre URI, hysteresis, override polling."""
    security: SecuritySettings = SecuritySettings()
    """``[security]``: unknown sources, per-source rate limits and blocking."""
    tls: TlsSettings = TlsSettings()
    """``[tls]``: certificate, key, CA file, port of the TLS transport."""

    @model_validator(mode="after")
    def _trunk_names_unique(self) -> NodruteSettings:
        names = [t.name for t in self.trunks]
        if len(names) != len(set(names)):
            raise ValueError(f"trunk names must be unique, got {names}")
        if not self.trunks:
            raise ValueError("at least one [[trunks]] entry is needed")
        if "tls" in self.sip.transports and self.tls.certificate is None:
            raise ValueError("[sip] transports has tls: [tls] certificate and private_key needed")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init kwargs): operators patch one
        # value in a container without editing the mounted file.
        return env_settings, init_settings


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    tls = data.get("tls")
    if isinstance(tls, dict):
        for key in ("certificate", "private_key", "ca_file"):
            if isinstance(tls.get(key), str):
                tls[key] = Path(tls[key]) if Path(tls[key]).is_absolute() else base / tls[key]
    routing = data.get("routing")
    if isinstance(routing, dict) and "table_dir" in routing:
        table_dir = Path(str(routing["table_dir"]))
        routing["table_dir"] = table_dir if table_dir.is_absolute() else base / table_dir
    tables = data.get("tables")
    if isinstance(tables, dict) and tables.get("drop_dir"):
        drop_dir = Path(str(tables["drop_dir"]))
        tables["drop_dir"] = drop_dir if drop_dir.is_absolute() else base / drop_dir
    records = data.get("records")
    if isinstance(records, dict) and records.get("spill_path"):
        spill = Path(str(records["spill_path"]))
        records["spill_path"] = spill if spill.is_absolute() else base / spill
    database = data.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        database["url"] = _resolve_sqlite_path(database["url"], base)


def _resolve_sqlite_path(url: str, base: Path) -> str:
    """``sqlite+aiosqlite:///rel/x.db`` -> the file relative to the config file's folder."""
    scheme, sep, path = url.partition(":///")
    if not sep or not scheme.startswith("sqlite") or path.startswith("/") or path == ":memory:":
        return url
    return f"{scheme}:///{(base / path).resolve().as_posix()}"


def load_settings(path: Path | None) -> NodruteSettings:
    """Read and validate a TOML config file (``None``: built-in defaults plus environment)."""
    if path is None:
        return NodruteSettings()
    with path.open("rb") as f:
        data = tomllib.load(f)
    _resolve_paths(data, path.resolve().parent)
    return NodruteSettings(**data)
