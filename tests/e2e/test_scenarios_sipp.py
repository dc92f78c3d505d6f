"""The SIPp scenarios in loadtests/scenarios against each other, without the router.

If one of these fails, the scenario (or the installed SIPp) is broken, not the router.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sipp_harness import (
    SippFleet,
    first_requests,
    free_port,
    write_injection_file,
)

pytestmark = pytest.mark.e2e

CALLS = [
    ("113", "0301", "+4791100001"),
    ("116117", "", "+4791100002"),  # no municipality: no X-Kommunenummer header at all
    ("1130301", "4601", "+4791100003"),
]


def inf(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    return write_injection_file(tmp_path / "calls.csv", rows)


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_emergency_call_to_centre(sipp: SippFleet, tmp_path: Path, transport: str) -> None:
    port = free_port()
    centre = sipp.start_uas(
        "uas_centre.xml", "AMK-TEST", port, transport=transport, calls=len(CALLS)
    )
    result = sipp.run_uac(
        "uac_emergency.xml", port, injection_file=inf(tmp_path, CALLS), calls=len(CALLS),
        rate_per_s=20, transport=transport,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls, result.failed_calls) == (0, 3, 0)
    assert centre.wait(10) == 0
    invites = centre.received_invites()
    assert [i.from_user for i in invites] == [caller for _, _, caller in CALLS]
    assert [i.header_values("x-kommunenummer") for i in invites] == [["0301"], [], ["4601"]]
    assert all("m=audio" in i.body for i in invites)
    answers = [m for m in result.messages() if m.status == 200 and m.direction == "received"]
    assert {a.header("x-centre") for a in answers} == {"AMK-TEST"}
    assert set(result.response_times_ms) >= {"trying", "answer"}


def test_cancel_while_ringing(sipp: SippFleet, tmp_path: Path) -> None:
    port = free_port()
    centre = sipp.start_uas("uas_ring_long.xml", "AMK-TEST", port, calls=1)
    result = sipp.run_uac(
        "uac_cancel.xml", port, injection_file=inf(tmp_path, CALLS[:1]), calls=1,
        extra_args=["-d", "200"],
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1)
    assert centre.wait(10) == 0
    assert len(first_requests(centre.messages(), "CANCEL")) == 1


def test_centre_hangs_up(sipp: SippFleet, tmp_path: Path) -> None:
    port = free_port()
    centre = sipp.start_uas("uas_hangup.xml", "AMK-TEST", port, calls=1, extra_args=["-d", "200"])
    result = sipp.run_uac(
        "uac_wait_bye.xml", port, injection_file=inf(tmp_path, CALLS[:1]), calls=1
    )
    assert (result.returncode, result.successful_calls) == (0, 1)
    assert centre.wait(10) == 0
    # The centre built its BYE from the INVITE: same dialog, To = the caller's From.
    (invite,) = [m for m in result.messages() if m.method == "INVITE"]
    (bye,) = first_requests(result.messages(), "BYE")
    assert bye.call_id == invite.call_id
    assert bye.header("to") == invite.header("from")


def test_not_found(sipp: SippFleet, tmp_path: Path) -> None:
    port = free_port()
    peer = sipp.start_uas("uas_not_found.xml", "NOBODY", port, calls=1)
    result = sipp.run_uac(
        "uac_expect_404.xml", port,
        injection_file=inf(tmp_path, [("22225555", "0301", "+4791100009")]), calls=1,
    )  # fmt: skip
    assert (result.returncode, result.successful_calls) == (0, 1)
    assert peer.wait(10) == 0
