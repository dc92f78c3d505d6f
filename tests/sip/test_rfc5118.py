"""RFC 5118 (IPv6 torture tests) through the node's whole receive path.

Same harness and reading as tests/sip/test_rfc4475.py (whose helpers this imports): each message
is one UDP datagram through parser, stateless answers, transaction layer and B2BUA, and we check
the one final response sent back (or that the INVITE, re-addressed to 113, is routed).
"""

from __future__ import annotations

import pytest
from test_rfc4475 import DATA, Verdict, check_routed, check_verdict, manifest, receive

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot

ROWS = manifest(DATA / "rfc5118" / "manifest_wire.csv")

VERDICTS: dict[str, Verdict] = {
    "ipv6-good.dat": Verdict(405),  # REGISTER: parsed (§4.1), we are no registrar
    "ipv6-bad.dat": Verdict(400),  # IPv6 address without [] in the Request-URI (§4.2)
    "port-ambiguous.dat": Verdict(405),  # [2001:db8::10:5070] is an address, no port (§4.3)
    "port-unambiguous.dat": Verdict(405),
    "via-received-param-with-delim.dat": Verdict(481),  # BYE outside any dialog: parsed (§4.5)
    "via-received-param-no-delim.dat": Verdict(200),  # OPTIONS
    "ipv6-in-sdp.dat": Verdict(404, routed_variant=True),
    "mult-ip-in-header.dat": Verdict(481),
    "mult-ip-in-sdp.dat": Verdict(404, routed_variant=True),
    "ipv4-mapped-ipv6.dat": Verdict(404, routed_variant=True),
    # §4.10: RFC 5118 asks for robustness; RFC 5954 later made three colons invalid. Tolerated:
    # the host is not used for anything but the Request-URI we answer.
    "ipv6-bug-abnf-3-colons.dat": Verdict(200),
    "ipv6-correct-abnf-2-colons.dat": Verdict(200),
}


@pytest.fixture(scope="module")
def snapshot() -> RoutingSnapshot:
    return load_snapshot(default_table_dir())


def test_every_manifest_row_has_a_verdict() -> None:
    assert sorted(VERDICTS) == sorted(row["file"] for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_ipv6_torture_message(snapshot: RoutingSnapshot, row: dict[str, str]) -> None:
    data = (DATA / "rfc5118" / "wire" / row["file"]).read_bytes()
    verdict = VERDICTS[row["file"]]
    check_verdict(snapshot, data, verdict)
    if verdict.routed_variant:
        check_routed(snapshot, data)


def test_answer_goes_to_the_source_not_an_ipv6_sent_by(snapshot: RoutingSnapshot) -> None:
    # §4.7: the top Via's sent-by is IPv6 but the datagram came from 192.0.2.10 over IPv4:
    # RFC 3261 §18.2.2 sends to the source address (received), at the sent-by port
    data = (DATA / "rfc5118" / "wire" / "mult-ip-in-header.dat").read_bytes()
    (sent,) = receive(snapshot, data)
    assert (sent.status, sent.dest) == (481, ("192.0.2.10", 6050))
