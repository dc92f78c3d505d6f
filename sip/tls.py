"""TLS for SIP (RFC 3261 §26.2.1, RFC 5922 §7): the contexts and the peer's certificate identity.

:mod:`sip.transport` does the I/O; this module builds the two :class:`ssl.SSLContext` objects it
uses and turns the certificate a peer presented into a :class:`PeerIdentity` the transaction user
can judge (a carrier trunk accepted only with the subject or DNS name it was configured with).

- Server side (our listener, port 5061 by default): our certificate chain; the client's
  certificate asked for (verified against ``ca_file``) whenever a CA file is given, demanded
  when ``require_client_certificate`` is set — so mutual TLS is refused at the handshake, or
  left to the TU per trunk.
- Client side (towards centres): the peer is verified against ``ca_file`` (the system store
  without one) and its certificate must name the host we connect to (SNI = that host; an IP
  address is matched against the certificate's IP SANs). Our own certificate is offered, for
  centres that want mutual TLS.

Reading the certificate files is start-up I/O, never on the call path.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TLS_DEFAULT_PORT = 5061
"""RFC 3261 §26.2.1 / §19.1.2: the default port for ``sips:`` and ``;transport=tls``."""

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

# OpenSSL's long attribute names (what ``getpeercert()`` returns) -> the RFC 4514 short forms
# operators write in configuration ("CN=sbc1.carrier.example").
_SHORT_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
    "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
    "domainComponent": "DC", "serialNumber": "SERIALNUMBER", "emailAddress": "EMAILADDRESS",
}


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who the peer of a TLS connection proved to be: its verified certificate's names."""

    subject: tuple[tuple[str, str], ...]
    """Subject attributes as (short name, value), e.g. ``(("O", "Carrier"), ("CN", "sbc1"))``."""
    dns_names: tuple[str, ...]
    """``subjectAltName`` DNS entries."""

    def matches(self, allowed: Iterable[str]) -> bool:
        """True when one ``allowed`` entry names this peer.

        An entry with ``=`` is a set of subject attributes (``"CN=sbc1.carrier.example"`` or
        ``"CN=sbc1.carrier.example, O=Carrier AS"``), every one of which the subject must
        carry; attribute names are case-insensitive, values exact. Any other entry (optionally
        ``DNS:``-prefixed) is a DNS name, matched case-insensitively against the SAN DNS names.
        """
        subject = {(name.upper(), value) for name, value in self.subject}
        dns = {name.lower().rstrip(".") for name in self.dns_names}
        for entry in allowed:
            text = entry.strip()
            if text[:4].upper() == "DNS:":
                if text[4:].strip().lower().rstrip(".") in dns:
                    return True
            elif "=" in text:
                wanted = _parse_attributes(text)
                if wanted and wanted <= subject:
                    return True
            elif text.lower().rstrip(".") in dns:
                return True
        return False

    def describe(self) -> str:
        """One line for logs: the subject and the SAN DNS names."""
        subject = ",".join(f"{name}={value}" for name, value in self.subject)
        return f"subject={subject or '-'} dns={','.join(self.dns_names) or '-'}"


def _parse_attributes(text: str) -> set[tuple[str, str]]:
    attributes: set[tuple[str, str]] = set()
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            return set()
        attributes.add((name.strip().upper(), value.strip()))
    return attributes


def peer_identity(peercert: Mapping[str, Any] | None) -> PeerIdentity | None:
    """The identity in a verified peer certificate (``SSLObject.getpeercert()``), or None.

    ``getpeercert()`` is empty when the peer sent no certificate, and when verification was
    off; either way there is no identity to trust.
    """
    if not peercert:
        return None
    subject: list[tuple[str, str]] = []
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            subject.append((_SHORT_NAMES.get(str(name), str(name)), str(value)))
    dns = tuple(str(value) for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    return PeerIdentity(tuple(subject), dns)


def server_context(
    certificate: Path,
    private_key: Path,
    *,
    ca_file: Path | None = None,
    require_client_certificate: bool = False,
    min_version: str = "TLSv1.2",
) -> ssl.SSLContext:
    """The context of our TLS listener (RFC 3261 §26.2.1).

    With ``ca_file`` a client certificate is asked for and, when sent, verified against it (a
    bad one fails the handshake); ``require_client_certificate`` also fails the handshake of a
    client that sends none. Raises ``OSError``/``ssl.SSLError`` for unreadable files.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _version(min_version)
    context.load_cert_chain(certificate, private_key)
    if require_client_certificate and ca_file is None:
        raise ValueError("require_client_certificate needs a ca_file to verify clients with")
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = (
            ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
        )
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(
    *,
    ca_file: Path | None = None,
    certificate: Path | None = None,
    private_key: Path | None = None,
    min_version: str = "TLSv1.2",
) -> ssl.SSLContext:
    """The context for connections we open (to centres): the server certificate is verified
    against ``ca_file`` (the system store without one) and must name the host (RFC 5922 §7.3);
    our certificate, when configured, is offered for mutual TLS."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = _version(min_version)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if certificate is not None and private_key is not None:
        context.load_cert_chain(certificate, private_key)
    return context


def _version(name: str) -> ssl.TLSVersion:
    try:
        return _VERSIONS[name]
    except KeyError:
        raise ValueError(f"min_version must be one of {sorted(_VERSIONS)}, got {name!r}") from None


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """What :class:`sip.transport.SipEndpoint` needs for TLS."""

    server: ssl.SSLContext | None
    """Context of the listener; None: no TLS listener."""
    client: ssl.SSLContext | None
    """Context for connections we open; None: a ``TLS`` destination is a transport error."""
    port: int = TLS_DEFAULT_PORT
    """Listen port (0 picks a free one)."""
    handshake_timeout_s: float = 5.0
    """A handshake not done within this long fails (a stalled peer holds no slot for long)."""
