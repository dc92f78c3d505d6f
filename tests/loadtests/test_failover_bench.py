"""loadtests/failover_bench.py's arithmetic: per-call answer times from a SIPp message trace,
and failover times against the direct baseline (no SIPp, no router)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtests"))

from failover_bench import TypeResult, add_failover_times, answer_times_ms

SEP = "----------------------------------------------- 2026-11-23 06:00:{:09.6f}"


def traced(stamp_s: float, direction: str, start_line: str, call_id: str, cseq: str, *,
           call_id_name: str = "Call-ID") -> str:
    return (f"{SEP.format(stamp_s)}\nUDP message {direction} [300] bytes :\n\n{start_line}\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\n{call_id_name}: {call_id}\n"
            f"CSeq: {cseq}\nContent-Length: 0\n\n")


def test_answer_time_is_first_invite_sent_to_first_200_for_it(tmp_path: Path) -> None:
    log = tmp_path / "messages.log"
    log.write_text("".join([
        traced(1.0, "sent", "INVITE sip:113@127.0.0.1 SIP/2.0", "a", "1 INVITE"),
        traced(1.001, "received", "SIP/2.0 100 Trying", "a", "1 INVITE"),
        traced(1.5, "sent", "INVITE sip:113@127.0.0.1 SIP/2.0", "a", "1 INVITE"),  # retrans.
        traced(2.0025, "received", "SIP/2.0 200 OK", "a", "1 INVITE"),
        traced(2.01, "received", "SIP/2.0 200 OK", "a", "1 INVITE"),  # retransmitted 200
        traced(2.02, "received", "SIP/2.0 200 OK", "a", "2 BYE"),  # not the answer
        traced(3.0, "sent", "INVITE sip:113@127.0.0.1 SIP/2.0", "b", "1 INVITE"),
        traced(3.004, "received", "SIP/2.0 200 OK", "b", "1 INVITE", call_id_name="i"),
        traced(4.0, "sent", "INVITE sip:113@127.0.0.1 SIP/2.0", "never", "1 INVITE"),
    ]), encoding="utf-8")

    times = answer_times_ms(log)

    assert [round(t, 3) for t in times] == [4.0, 1002.5]


def result(kind: str, answers: list[float], failovers: int, knob_s: float = 0.0) -> TypeResult:
    return TypeResult(type=kind, knob="-", knob_s=knob_s, calls=len(answers),
                      successful=len(answers), failed=0, failovers=failovers, reasons={},
                      answer_ms={"p50": sorted(answers)[len(answers) // 2]},
                      raw_answer_ms=sorted(answers))


def test_failover_time_is_the_slowest_k_calls_minus_the_direct_median() -> None:
    direct = result("direct", [6.0, 8.0, 10.0], 0)
    killed = result("killed", [7.0, 9.0, 2009.0, 2011.0], 2, knob_s=2.0)

    baseline = add_failover_times([direct, killed])

    assert baseline == 8.0
    assert killed.failover_ms == {"p50": 2001.0, "p99": 2003.0, "max": 2003.0}
    assert killed.overhead_ms == 1.0
    assert direct.failover_ms == {}
