"""Who a TLS peer is (sip/tls.py) and whether a trunk accepts it (router/trunk_tls.py)."""

from __future__ import annotations

import pytest

from router.config import NodruteSettings, TrunkSettings
from router.trunk_tls import trunk_identity_refusal
from sip.tls import PeerIdentity, peer_identity

# What ssl.SSLObject.getpeercert() returns for a verified client certificate.
PEERCERT = {
    "subject": ((("organizationName", "Carrier AS"),), (("commonName", "sbc1.carrier.example"),)),
    "issuer": ((("commonName", "nodrute test CA"),),),
    "subjectAltName": (("DNS", "sbc1.carrier.example"), ("DNS", "SBC-B.Carrier.example"),
                       ("IP Address", "192.0.2.7")),
}


def test_identity_from_a_peer_certificate_uses_short_attribute_names() -> None:
    identity = peer_identity(PEERCERT)
    assert identity == PeerIdentity(
        (("O", "Carrier AS"), ("CN", "sbc1.carrier.example")),
        ("sbc1.carrier.example", "SBC-B.Carrier.example"),
    )
    assert peer_identity({}) is None  # no certificate, or an unverified one
    assert peer_identity(None) is None


@pytest.mark.parametrize(("allowed", "expected"), [
    (["CN=sbc1.carrier.example"], True),
    (["cn = sbc1.carrier.example"], True),  # attribute names are case-insensitive
    (["CN=sbc1.carrier.example, O=Carrier AS"], True),  # every attribute must be there
    (["CN=sbc1.carrier.example, O=Other AS"], False),
    (["CN=SBC1.carrier.example"], False),  # values are exact
    (["sbc-b.carrier.example"], True),  # a SAN DNS name, case-insensitive
    (["DNS:sbc1.carrier.example."], True),
    (["192.0.2.7"], False),  # IP SANs are not names
    (["CN=rogue.example", "sbc1.carrier.example"], True),  # any entry
    (["CN="], False),
    ([], False),
])
def test_identity_matches_subjects_and_dns_names(allowed: list[str], expected: bool) -> None:
    identity = peer_identity(PEERCERT)
    assert identity is not None
    assert identity.matches(allowed) is expected


def test_trunk_refusal_reasons() -> None:
    open_trunk = TrunkSettings(name="open")
    tls_trunk = TrunkSettings(name="carrier", tls_subjects=["CN=sbc1.carrier.example"])
    identity = peer_identity(PEERCERT)
    stranger = PeerIdentity((("CN", "rogue.example"),), ("rogue.example",))
    assert trunk_identity_refusal(open_trunk, "UDP", None) is None
    assert trunk_identity_refusal(tls_trunk, "TLS", identity) is None
    assert "requires TLS" in (trunk_identity_refusal(tls_trunk, "UDP", identity) or "")
    assert "none was presented" in (trunk_identity_refusal(tls_trunk, "TLS", None) or "")
    assert "rogue.example" in (trunk_identity_refusal(tls_trunk, "TLS", stranger) or "")


def test_tls_transport_needs_a_certificate() -> None:
    with pytest.raises(ValueError, match="certificate"):
        NodruteSettings(sip={"transports": ["udp", "tls"]})
    with pytest.raises(ValueError, match="go together"):
        NodruteSettings(tls={"certificate": "/x.pem"})
    with pytest.raises(ValueError, match="ca_file"):
        NodruteSettings(tls={"require_client_certificate": True})
