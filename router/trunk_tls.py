"""The node's TLS (RFC 3261 §26): contexts from ``[tls]``, and mutual TLS for carrier trunks.

:func:`node_tls_contexts` turns the settings into what the SIP endpoint needs (sip/tls.py does
the ssl work). :func:`trunk_identity_refusal` answers "is this peer the trunk?" (RFC 5922):

A trunk configured with ``tls_subjects`` is more than a source network: its requests must come
over TLS from a peer whose client certificate, verified against ``[tls] ca_file`` at the
handshake (sip/transport.py), names it. A request from the trunk's addresses over UDP or TCP, or
over TLS without a certificate or with another one, gets no service: source addresses alone can
be spoofed or shared, a verified certificate cannot.
"""

from __future__ import annotations

from sip.tls import PeerIdentity, TlsContexts, client_context, server_context

from .config import NodruteSettings, TrunkSettings


def node_tls_contexts(settings: NodruteSettings) -> TlsContexts:
    """Server context when ``tls`` is among ``[sip] transports``; a client context always
    (a ``sips:`` centre may appear with any table). Raises OSError/ssl.SSLError for certificate
    files that cannot be read or do not fit together: the node does not start."""
    tls = settings.tls
    server = None
    if "tls" in settings.sip.transports:
        assert tls.certificate is not None and tls.private_key is not None  # validated
        server = server_context(
            tls.certificate, tls.private_key, ca_file=tls.ca_file,
            require_client_certificate=tls.require_client_certificate,
            min_version=tls.min_version,
        )
    client = client_context(
        ca_file=tls.ca_file, certificate=tls.certificate, private_key=tls.private_key,
        min_version=tls.min_version,
    )
    return TlsContexts(server, client, tls.tls_port, tls.handshake_timeout_s)


def trunk_identity_refusal(
    trunk: TrunkSettings, transport: str, peer: PeerIdentity | None
) -> str | None:
    """Why a request from ``trunk``'s addresses is refused, or None when the trunk accepts it
    (no ``tls_subjects``, or a TLS peer whose certificate carries one of them)."""
    if not trunk.tls_subjects:
        return None
    if transport.upper() != "TLS":
        return f"trunk {trunk.name} requires TLS, request came over {transport}"
    if peer is None:
        return f"trunk {trunk.name} requires a client certificate, none was presented"
    if not peer.matches(trunk.tls_subjects):
        return f"trunk {trunk.name}: certificate {peer.describe()} is not one of its subjects"
    return None
