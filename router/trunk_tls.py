"""Mutual TLS for carrier trunks (RFC 3261 §26.3.2.2, RFC 5922): is this peer the trunk?

A trunk configured with ``tls_subjects`` is more than a source network: its requests must come
over TLS from a peer whose client certificate, verified against ``[tls] ca_file`` at the
handshake (sip/transport.py), names it. A request from the trunk's addresses over UDP or TCP, or
over TLS without a certificate or with another one, gets no service: source addresses alone can
be spoofed or shared, a verified certificate cannot.
"""

from __future__ import annotations

from sip.tls import PeerIdentity

from .config import TrunkSettings


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
