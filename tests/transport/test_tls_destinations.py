"""Which centre URIs are reached over TLS (router/legs.py uri_destination, RFC 3261 §26.2.2)."""

from __future__ import annotations

import pytest

from router.legs import uri_destination


@pytest.mark.parametrize(("uri", "expected"), [
    ("sips:amk@127.0.0.1", ("127.0.0.1", 5061, "TLS")),
    ("sips:amk@127.0.0.1:5071", ("127.0.0.1", 5071, "TLS")),
    ("sips:amk@amk.example;transport=tcp", ("amk.example", 5061, "TLS")),  # sips: is TLS
    ("sip:amk@127.0.0.1:5061;transport=tls", ("127.0.0.1", 5061, "TLS")),
    ("sip:amk@127.0.0.1;transport=TLS", ("127.0.0.1", 5061, "TLS")),  # RFC 3263 §4.2
    ("sip:amk@127.0.0.1;transport=tcp", ("127.0.0.1", 5060, "TCP")),
    ("sip:amk@127.0.0.1", ("127.0.0.1", 5060, "UDP")),
])
def test_centre_uri_transport(uri: str, expected: tuple[str, int, str]) -> None:
    assert uri_destination(uri) == expected
