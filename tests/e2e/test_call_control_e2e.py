"""Call control through the router with real SIPp peers: CANCEL, centre BYE, 404, OPTIONS, TCP.

The centres listen on their ports from the committed centres.csv; the router runs with the
committed sample-2024 table (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from expected_routing import RoutingTable, load_centres
from router_process import RunningRouter, send_options
from sipp_harness import REPO, SippFleet, first_requests, write_injection_file

pytestmark = pytest.mark.e2e

DATA = REPO / "loadtests" / "data"
OSLO_113 = ("113", "0301", "+4791000001")  # loadtests/data/calls_one.csv -> AMK-OSLO


def centre_port(centre_id: str) -> int:
    return load_centres()[centre_id].port


def test_caller_cancel_while_centre_rings_cancels_the_centre_leg(
    router: RunningRouter, sipp: SippFleet
) -> None:
    centre = sipp.start_uas("uas_ring_long.xml", "AMK-OSLO", centre_port("AMK-OSLO"), calls=1)
    # -d 300: the caller hears ringing for 300 ms, then sends CANCEL.
    caller = sipp.run_uac(
        "uac_cancel.xml", router.port, injection_file=DATA / "calls_one.csv", calls=1,
        extra_args=["-d", "300"],
    )  # fmt: skip
    assert (caller.returncode, caller.successful_calls) == (0, 1), caller.summary()
    assert [m.status for m in caller.messages() if m.status == 487][:1] == [487]
    # uas_ring_long.xml succeeds only if a CANCEL came and its 487 was ACKed.
    assert centre.wait(timeout_s=15) == 0
    assert len(first_requests(centre.messages(), "CANCEL")) == 1


def test_centre_bye_reaches_the_caller(router: RunningRouter, sipp: SippFleet) -> None:
    centre = sipp.start_uas(
        "uas_hangup.xml", "AMK-OSLO", centre_port("AMK-OSLO"), calls=1, extra_args=["-d", "300"]
    )
    caller = sipp.run_uac(
        "uac_wait_bye.xml", router.port, injection_file=DATA / "calls_one.csv", calls=1
    )
    assert (caller.returncode, caller.successful_calls) == (0, 1), caller.summary()
    assert centre.wait(timeout_s=15) == 0
    (bye,) = first_requests(caller.messages(), "BYE")
    (invite,) = [m for m in caller.messages() if m.method == "INVITE"]
    assert bye.call_id == invite.call_id, "the BYE must come in the caller's own dialog"


def test_non_emergency_number_gets_404(router: RunningRouter, sipp: SippFleet) -> None:
    caller = sipp.run_uac(
        "uac_expect_404.xml", router.port, injection_file=DATA / "calls_not_emergency.csv",
        calls=1,
    )  # fmt: skip
    assert (caller.returncode, caller.successful_calls) == (0, 1), caller.summary()


def test_options_gets_200_with_allow(router: RunningRouter) -> None:
    response = send_options(router.port, timeout_s=2)
    assert response is not None, "no answer to OPTIONS"
    assert response.startswith("SIP/2.0 200"), response
    allow = {
        method.strip()
        for line in response.split("\r\n\r\n")[0].split("\r\n")[1:]
        if line.lower().startswith("allow:")
        for method in line.split(":", 1)[1].split(",")
    }
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"} <= allow, response


def test_calls_over_tcp_land(router: RunningRouter, sipp: SippFleet, tmp_path: Path) -> None:
    table = RoutingTable()
    lines = [
        ("113", "4601", "+4791000011"),
        ("116117", "4601", "+4791000012"),
        ("113", "3005", "+4791000013"),
        ("116117", "", "+4791000014"),
    ]
    planned = [table.expect(*line) for line in lines]
    centres = {
        centre_id: sipp.start_uas("uas_centre.xml", centre_id, centre_port(centre_id))
        for centre_id in {call.expected_centre for call in planned}
    }
    caller = sipp.run_uac(
        "uac_emergency.xml", router.port, transport="t1", calls=len(lines), rate_per_s=10,
        injection_file=write_injection_file(tmp_path / "tcp.csv", lines),
    )  # fmt: skip
    assert (caller.returncode, caller.successful_calls) == (0, len(lines)), caller.summary()
    for centre in centres.values():
        centre.stop()
    landed = {
        invite.from_user: centre_id
        for centre_id, centre in centres.items()
        for invite in centre.received_invites()
    }
    assert landed == {call.caller: call.expected_centre for call in planned}
