"""``[media] enabled = true`` with real SIPp peers: a 113 call through the router with media
anchored on it. The caller and the centre each see only the router's RTP address, the caller
gets the announcement's 183 before the 200, and both carry the same SDP answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from expected_routing import load_centres
from router_process import RunningRouter, running_router
from sipp_harness import REPO, SippFleet

pytestmark = pytest.mark.e2e

DATA = REPO / "loadtests" / "data"
RTP_FIRST, RTP_LAST = 47000, 47099


@pytest.fixture
def media_router(tmp_path: Path) -> Iterator[RunningRouter]:
    extra = (f'\n[media]\nenabled = true\naddress = "127.0.0.1"\n'
             f"rtp_port_first = {RTP_FIRST}\nrtp_port_last = {RTP_LAST}\n")
    with running_router(tmp_path / "router", extra_config=extra) as running:
        yield running


def audio_endpoint(body: str) -> tuple[str, int]:
    lines = body.replace("\r\n", "\n").split("\n")
    [address] = [line.split()[-1] for line in lines if line.startswith("c=")]
    [port] = [int(line.split()[1]) for line in lines if line.startswith("m=audio")]
    return address, port


def test_113_with_anchored_media_answers_with_the_routers_sdp(
        media_router: RunningRouter, sipp: SippFleet) -> None:
    centre = sipp.start_uas("uas_centre.xml", "AMK-OSLO", load_centres()["AMK-OSLO"].port,
                            calls=1, extra_args=["-d", "500"])
    caller = sipp.run_uac("uac_emergency.xml", media_router.port,
                          injection_file=DATA / "calls_one.csv", calls=1)
    assert (caller.returncode, caller.successful_calls) == (0, 1), caller.summary()
    assert centre.wait(timeout_s=15) == 0

    received = [m for m in caller.messages() if m.direction == "received" and m.status]
    statuses = [m.status for m in received]
    assert 183 in statuses and statuses.index(183) < statuses.index(200), statuses
    early = next(m for m in received if m.status == 183)
    ok = next(m for m in received if m.status == 200 and m.body)
    assert early.body == ok.body  # one answer for the early and the final response
    caller_leg = audio_endpoint(ok.body)
    assert caller_leg[0] == "127.0.0.1" and RTP_FIRST <= caller_leg[1] <= RTP_LAST

    [invite] = [m for m in centre.messages()
                if m.direction == "received" and m.method == "INVITE"]
    centre_leg = audio_endpoint(invite.body)
    assert centre_leg[0] == "127.0.0.1" and RTP_FIRST <= centre_leg[1] <= RTP_LAST
    assert centre_leg != caller_leg
