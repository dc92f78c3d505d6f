"""sip.dialog: dialog creation (UAS/UAC), in-dialog requests, routing, CSeq screening."""

from __future__ import annotations

import pytest

from sip.dialog import Dialog, request_dialog_key, response_dialog_key
from sip.errors import SipParseError, SipUsageError
from sip.headers import NameAddr, parse_cseq
from sip.message import Headers, Request, Response
from sip.parser import parse_message, validate_request

VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew"


def _invite(*, record_route: tuple[str, ...] = ("<sip:p1.example.no;lr>",
                                                "<sip:p2.example.no;lr>"),
            contact: str | None = "<sip:caller@198.51.100.7:5070;transport=tcp>") -> Request:
    headers = Headers([
        ("Via", "SIP/2.0/UDP p1.example.no;branch=z9hG4bKp1"),
        ("Via", "SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKc1"),
        *(("Record-Route", rr) for rr in record_route),
        ("From", '"Ola" <sip:+4791234567@carrier.example.no>;tag=ctag'),
        ("To", "<sip:113@nodrute.example.no>"),
        ("Call-ID", "call-1@198.51.100.7"),
        ("CSeq", "101 INVITE"),
        ("Max-Forwards", "69"),
    ])
    if contact is not None:
        headers.add("Contact", contact)
    return Request("INVITE", "sip:113@nodrute.example.no", headers)


def _ok(request: Request, *, record_route: tuple[str, ...] = (),
        contact: str | None = "<sip:amk@192.0.2.20:5080>") -> Response:
    headers = Headers([
        ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKout"),
        *(("Record-Route", rr) for rr in record_route),
        ("From", request.headers.get("From") or ""),
        ("To", "<sip:113@amk.example.no>;tag=rtag"),
        ("Call-ID", request.headers.get("Call-ID") or ""),
        ("CSeq", request.headers.get("CSeq") or ""),
    ])
    if contact is not None:
        headers.add("Contact", contact)
    return Response(200, "OK", headers)


def _outbound_invite() -> Request:
    return Request("INVITE", "sip:113@amk.example.no", Headers([
        ("Via", VIA),
        ("From", "<sip:nodrute@nodrute.example.no>;tag=ourtag"),
        ("To", "<sip:113@amk.example.no>"),
        ("Call-ID", "out-1@nodrute"),
        ("CSeq", "7 INVITE"),
        ("Contact", "<sip:nodrute@192.0.2.1:5060>"),
    ]))


# ------------------------------------------------------------------------------- as UAS


def test_as_uas() -> None:
    dialog = Dialog.as_uas(_invite(), "ourtag", "<sip:nodrute@192.0.2.1>")
    assert dialog.key == ("call-1@198.51.100.7", "ourtag", "ctag")
    assert dialog.local_uri == "sip:113@nodrute.example.no"
    assert dialog.remote_uri == "sip:+4791234567@carrier.example.no"
    assert dialog.remote_target == "sip:caller@198.51.100.7:5070;transport=tcp"
    assert dialog.route_set == ["<sip:p1.example.no;lr>", "<sip:p2.example.no;lr>"]
    assert (dialog.local_cseq, dialog.remote_cseq) == (0, 101)
    assert not dialog.secure
    assert dialog.local_contact == "<sip:nodrute@192.0.2.1>"


def test_as_uas_needs_a_sip_contact() -> None:
    with pytest.raises(SipParseError) as info:
        Dialog.as_uas(_invite(contact=None), "t", "<sip:x@y>")
    assert info.value.reason == "Missing Contact header"
    with pytest.raises(SipParseError):
        Dialog.as_uas(_invite(contact="<tel:+4791234567>"), "t", "<sip:x@y>")
    with pytest.raises(SipParseError):
        Dialog.as_uas(_invite(record_route=("<sip:p1;lr", )), "t", "<sip:x@y>")


def test_secure_needs_tls_and_sips() -> None:
    request = _invite()
    request.uri = "sips:113@nodrute.example.no"
    assert Dialog.as_uas(request, "t", "<sips:x@y>", over_tls=True).secure
    assert not Dialog.as_uas(request, "t", "<sips:x@y>").secure


def test_uas_requests_follow_loose_route_set() -> None:
    dialog = Dialog.as_uas(_invite(), "ourtag", "<sip:nodrute@192.0.2.1>")
    bye = dialog.create_request("BYE", via=VIA, extra=[("Reason", "Q.850;cause=16")])
    assert bye.method == "BYE"
    assert bye.uri == "sip:caller@198.51.100.7:5070;transport=tcp"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.no;lr>", "<sip:p2.example.no;lr>"]
    sender = NameAddr.parse(bye.headers.get("From") or "")
    receiver = NameAddr.parse(bye.headers.get("To") or "", "To")
    assert (sender.uri, sender.tag) == ("sip:113@nodrute.example.no", "ourtag")
    assert (receiver.uri, receiver.tag) == ("sip:+4791234567@carrier.example.no", "ctag")
    assert bye.headers.get("Call-ID") == "call-1@198.51.100.7"
    assert parse_cseq(bye.headers.get("CSeq") or "") == (1, "BYE")
    assert bye.headers.get("Via") == VIA
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.headers.get("Reason") == "Q.850;cause=16"
    assert dialog.next_hop() == ("p1.example.no", None, "UDP")
    # it is a well-formed request
    again = parse_message(bye.to_bytes())
    assert isinstance(again, Request)
    validate_request(again)
    assert [h for h in again.headers if h[0] != "Content-Length"] == list(bye.headers)


def test_cseq_increments_and_body() -> None:
    dialog = Dialog.as_uas(_invite(), "ourtag", "<sip:nodrute@192.0.2.1>")
    first = dialog.create_request("INFO", via=VIA, body=b"x", content_type="text/plain")
    second = dialog.create_request("UPDATE", via=VIA, max_forwards=10)
    assert parse_cseq(first.headers.get("CSeq") or "") == (1, "INFO")
    assert parse_cseq(second.headers.get("CSeq") or "") == (2, "UPDATE")
    assert first.headers.get("Content-Type") == "text/plain" and first.body == b"x"
    assert second.headers.get("Content-Type") is None
    assert second.headers.get("Max-Forwards") == "10"
    assert dialog.local_cseq == 2


def test_ack_and_cancel_are_not_built_by_create_request() -> None:
    dialog = Dialog.as_uas(_invite(), "ourtag", "<sip:nodrute@192.0.2.1>")
    for method in ("ACK", "CANCEL"):
        with pytest.raises(SipUsageError):
            dialog.create_request(method, via=VIA)


def test_no_route_set_targets_the_contact() -> None:
    dialog = Dialog.as_uas(_invite(record_route=()), "t", "<sip:x@y>")
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.uri == dialog.remote_target and bye.headers.get_all("Route") == []
    assert dialog.next_hop() == ("198.51.100.7", 5070, "TCP")


def test_strict_router_first_hop() -> None:
    # RFC 3261 §12.2.1.1: first route without ;lr -> it becomes the Request-URI
    dialog = Dialog.as_uas(_invite(record_route=("<sip:strict.example.no;maddr=10.0.0.9>",
                                                 "<sip:p2.example.no;lr>")), "t", "<sip:x@y>")
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.uri == "sip:strict.example.no"
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.no;lr>", "<sip:caller@198.51.100.7:5070;transport=tcp>"]
    assert dialog.next_hop() == ("10.0.0.9", None, "UDP")  # maddr wins


# ------------------------------------------------------------------------------- as UAC


def test_as_uac_reverses_record_route() -> None:
    invite = _outbound_invite()
    ok = _ok(invite, record_route=("<sip:far.example.no;lr>", "<sip:near.example.no;lr>"))
    dialog = Dialog.as_uac(invite, ok)
    assert dialog.key == ("out-1@nodrute", "ourtag", "rtag")
    assert dialog.local_uri == "sip:nodrute@nodrute.example.no"
    assert dialog.remote_uri == "sip:113@amk.example.no"
    assert dialog.remote_target == "sip:amk@192.0.2.20:5080"
    assert dialog.route_set == ["<sip:near.example.no;lr>", "<sip:far.example.no;lr>"]
    assert (dialog.local_cseq, dialog.remote_cseq) == (7, None)
    assert dialog.next_hop() == ("near.example.no", None, "UDP")
    bye = dialog.create_request("BYE", via=VIA)
    assert parse_cseq(bye.headers.get("CSeq") or "") == (8, "BYE")


def test_ack_for_2xx_reuses_the_invite_cseq() -> None:
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite))
    ack = dialog.create_ack(7, VIA, body=b"v=0\r\n", content_type="application/sdp")
    assert ack.method == "ACK" and ack.uri == "sip:amk@192.0.2.20:5080"
    assert parse_cseq(ack.headers.get("CSeq") or "") == (7, "ACK")
    assert ack.headers.get("Content-Type") == "application/sdp"
    assert dialog.local_cseq == 7  # untouched
    assert dialog.next_hop() == ("192.0.2.20", 5080, "UDP")


def test_as_uac_without_contact_keeps_a_target() -> None:
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite, contact=None))
    assert dialog.remote_target == invite.uri


def test_sips_target_defaults_to_tls() -> None:
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite, contact="<sips:amk@[2001:db8::20]>"))
    assert dialog.next_hop() == ("[2001:db8::20]", None, "TLS")


def test_update_remote_target() -> None:
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite))
    dialog.update_remote_target(_ok(invite, contact="<sip:amk@192.0.2.21>"))
    assert dialog.remote_target == "sip:amk@192.0.2.21"
    dialog.update_remote_target(_ok(invite, contact=None))
    assert dialog.remote_target == "sip:amk@192.0.2.21"


# ------------------------------------------------------------------ requests we receive


def _in_dialog(method: str, cseq: int) -> Request:
    return Request(method, "sip:nodrute@192.0.2.1", Headers([
        ("Via", "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKx"),
        ("From", '"Ola" <sip:+4791234567@carrier.example.no>;tag=ctag'),
        ("To", "<sip:113@nodrute.example.no>;tag=ourtag"),
        ("Call-ID", "call-1@198.51.100.7"),
        ("CSeq", f"{cseq} {method}"),
    ]))


def test_accept_remote_request_orders_cseq() -> None:
    dialog = Dialog.as_uas(_invite(), "ourtag", "<sip:nodrute@192.0.2.1>")
    assert dialog.accept_remote_request(_in_dialog("INFO", 102)) is None
    assert dialog.remote_cseq == 102
    assert dialog.accept_remote_request(_in_dialog("INFO", 90)) == 500  # §12.2.2
    assert dialog.remote_cseq == 102
    assert dialog.accept_remote_request(_in_dialog("ACK", 101)) is None  # ACK: not screened
    assert dialog.accept_remote_request(_in_dialog("BYE", 103)) is None
    assert dialog.remote_cseq == 103


def test_uac_dialog_takes_first_remote_cseq() -> None:
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite))
    assert dialog.accept_remote_request(_in_dialog("BYE", 1)) is None
    assert dialog.remote_cseq == 1


def test_dialog_keys_of_received_messages() -> None:
    assert request_dialog_key(_in_dialog("BYE", 5)) == ("call-1@198.51.100.7", "ourtag", "ctag")
    assert request_dialog_key(_invite()) is None  # no To tag: dialog-creating
    invite = _outbound_invite()
    dialog = Dialog.as_uac(invite, _ok(invite))
    assert response_dialog_key(_ok(invite)) == dialog.key
