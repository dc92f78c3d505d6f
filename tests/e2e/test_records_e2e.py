"""Call records end to end: SIPp calls through ``nodrute serve``, then ``nodrute stats``.

Three 113 calls from Oslo answered by AMK-OSLO after 1.5 s of ringing, two 116117 calls from
Oslo answered by LVS-0301 after 0.5 s, one 113 call from Bergen the caller gives up while
AMK-BERGEN rings. The router stops (records flushed), then ``nodrute stats --format json`` on
the same config must tell what SIPp saw: the calls per centre, answered and abandoned, and
answer times that match SIPp's INVITE -> 200 times.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from expected_routing import load_centres
from router_process import running_router
from sipp_harness import REPO, SippFleet, write_injection_file

pytestmark = pytest.mark.e2e


def nodrute_stats(config: Path, *args: str) -> dict[str, Any]:
    script = Path(sys.executable).with_name("nodrute")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "router"]
    done = subprocess.run([*command, "stats", "--config", str(config), "--format", "json",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_stats_from_the_call_records_agree_with_sipp(tmp_path: Path, sipp: SippFleet) -> None:
    centres = load_centres()
    workdir = tmp_path / "router"
    spill = workdir / "records-spill.jsonl"
    began = datetime.now(UTC)
    oslo = sipp.start_uas("uas_centre.xml", "AMK-OSLO", centres["AMK-OSLO"].port, calls=3,
                          extra_args=["-d", "1500"])
    lvs = sipp.start_uas("uas_centre.xml", "LVS-0301", centres["LVS-0301"].port, calls=2,
                         extra_args=["-d", "500"])
    bergen = sipp.start_uas("uas_ring_long.xml", "AMK-BERGEN", centres["AMK-BERGEN"].port,
                            calls=1)
    calls_113 = write_injection_file(tmp_path / "oslo113.csv", [
        ("113", "0301", f"+479100000{n}") for n in range(1, 4)])
    calls_116117 = write_injection_file(tmp_path / "oslo116117.csv", [
        ("116117", "0301", f"+479200000{n}") for n in range(1, 3)])
    call_bergen = write_injection_file(tmp_path / "bergen.csv", [("113", "4601", "+4793000001")])
    with running_router(workdir, extra_config=f'[records]\nspill_path = "{spill.as_posix()}"\n'
                        ) as router:
        amk = sipp.run_uac("uac_emergency.xml", router.port, injection_file=calls_113, calls=3,
                           rate_per_s=10)
        legevakt = sipp.run_uac("uac_emergency.xml", router.port, injection_file=calls_116117,
                                calls=2, rate_per_s=10)
        abandoned = sipp.run_uac("uac_cancel.xml", router.port, injection_file=call_bergen,
                                 calls=1, extra_args=["-d", "300"])
        config = router.config_path
    for uac in (amk, legevakt, abandoned):
        assert (uac.returncode, uac.failed_calls) == (0, 0), uac.summary()
    assert amk.successful_calls == 3 and legevakt.successful_calls == 2
    for uas in (oslo, lvs, bergen):
        assert uas.wait(timeout_s=15) == 0

    rows = {(r["service"], r["centre"]): r for r in nodrute_stats(config)["rows"]}
    assert set(rows) == {("113", "AMK-BERGEN"), ("113", "AMK-OSLO"), ("113", "ALL"),
                         ("116117", "LVS-0301"), ("116117", "ALL")}
    amk_oslo = rows["113", "AMK-OSLO"]
    assert (amk_oslo["calls"], amk_oslo["answered"], amk_oslo["abandoned"],
            amk_oslo["failed"]) == (3, 3, 0, 0)
    assert amk_oslo["share_within_target"] == 1.0  # 1.5 s against a 10 s target
    sipp_answer_s = [ms / 1000 for ms in amk.response_times_ms["answer"]]
    assert len(sipp_answer_s) == 3
    # The router times from the INVITE's arrival to the centre's 200; SIPp from sending the
    # INVITE to receiving the relayed 200: the same wait, give or take the loopback hops.
    assert amk_oslo["median_answer_s"] == pytest.approx(statistics.median(sipp_answer_s),
                                                        abs=0.25)
    assert amk_oslo["median_answer_s"] >= 1.5
    lvs_row = rows["116117", "LVS-0301"]
    assert (lvs_row["calls"], lvs_row["answered"], lvs_row["share_within_target"]) == (2, 2, 1.0)
    assert lvs_row["median_answer_s"] == pytest.approx(
        statistics.median(ms / 1000 for ms in legevakt.response_times_ms["answer"]), abs=0.25)
    assert (rows["113", "AMK-BERGEN"]["calls"], rows["113", "AMK-BERGEN"]["abandoned"],
            rows["113", "AMK-BERGEN"]["answered"]) == (1, 1, 0)
    assert rows["113", "ALL"]["calls"] == 4
    assert not spill.exists()  # the database was up: nothing spilled

    only = nodrute_stats(config, "--service", "116117", "--since", began.isoformat())
    assert [(r["service"], r["centre"], r["calls"]) for r in only["rows"]] == [
        ("116117", "LVS-0301", 2), ("116117", "ALL", 2)]
