"""pjsua2 test endpoints (a caller, a centre) for the end-to-end audio tests.

Each endpoint is a child process (``python pjsua2_endpoint.py '<json config>'``) driven over
its stdin/stdout with JSON lines: commands in, events out. pjsua2 runs there in poll mode on
the process's only thread (``../shared/PJSUA2_NOTES.md``: worker threads deadlock against the
GIL, at most 4 call legs per process), so one process per endpoint keeps each within its limits
and a crash of the library cannot take pytest down.

The ``pjsua2-pybind11`` binding lacks ``AudioMediaPlayer``/``AudioMediaRecorder`` and the
account's media config, so the child calls the wheel's bundled ``libpjsua`` through ctypes for
WAV players and recorders on the conference bridge and to pin the RTP sockets and the SDP
address to 127.0.0.1 (otherwise pjsua advertises the machine's external address).

Commands (``{"cmd": ...}``) and the events they cause:

* ``call`` uri, headers -> ``calling`` call, then ``sdp``/``state``/``media`` as it goes;
* ``play`` call, wav (looped into the call) -> ``playing`` call, wav;
* ``record`` call, wav (what the call receives; if its audio is not up yet, from the moment it
  is) -> ``recording`` call, wav;
* ``stop_record`` call -> ``recorded`` call, wav (the WAV file is complete);
* ``dtmf`` call, digits (RFC 4733 telephone-events) -> ``dtmf_sent`` call, digits;
* ``hangup`` call -> ``state`` ... DISCONNECTED;
* ``quit`` -> ``bye``, then the process exits.

Unprompted events: ``ready`` sip_port; ``incoming`` call, request_uri, headers, sdp_audio;
``state`` call, state, status, reason; ``media`` call, active, slot; ``sdp`` call, address;
``error`` message. Each event carries ``t`` (``time.monotonic()``, shared by processes here).

A centre is configured to answer by itself (``answer_after_s``) and then play and record
(``play_on_answer``, ``record_dir``), so its reaction does not wait for the test process.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import math
import os
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
SAMPLE_RATE = 8000
PJSUA2_MISSING = ("pjsua2 is not installed (PyPI pjsua2-pybind11, in the test extra: "
                  "`.venv/bin/pip install -e '.[test]'`)")
PJSUA_DESTROY_NO_NETWORK = 3  # pjsua.h: NO_RX_MSG | NO_TX_MSG


def pjsua2_available() -> bool:
    return importlib.util.find_spec("pjsua2") is not None


# --- WAV helpers (stdlib only) ----------------------------------------------------------------


def write_tone_wav(path: Path, frequency_hz: float, *, seconds: float = 1.0,
                   amplitude: float = 0.3) -> Path:
    """An 8 kHz mono 16-bit sine; a whole number of periods, so it loops without a click."""
    n = int(SAMPLE_RATE * seconds)
    samples = (int(amplitude * 32767 * math.sin(2 * math.pi * frequency_hz * i / SAMPLE_RATE))
               for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


def read_wav(path: Path) -> tuple[int, list[int]]:
    """(sample rate, samples) of a mono 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2), f"{path}: not mono 16-bit"
        data = w.readframes(w.getnframes())
        return w.getframerate(), list(struct.unpack(f"<{len(data) // 2}h", data))


# --- the parent side ---------------------------------------------------------------------------


@dataclass
class Pjsua2Agent:
    """A running pjsua2 endpoint child process, seen from the test."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    """pjsua's own log (SIP messages included)."""
    stderr_path: Path
    sip_port: int
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every event received so far, in order."""
    _inbox: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    _taken: set[int] = field(default_factory=set)
    _quit_sent: bool = False

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{LOOPBACK}:{self.sip_port}"

    def command(self, cmd: str, **args: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.process.stdin.flush()

    def wait_for(self, event: str, timeout_s: float = 10.0, **match: Any) -> dict[str, Any]:
        """The earliest event named ``event`` whose fields equal ``match`` that no earlier
        ``wait_for`` returned, waiting for it if need be; AssertionError (with the log) when
        none comes within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for n, found in enumerate(self.events):
                if n not in self._taken and found.get("event") == event \
                        and all(found.get(k) == v for k, v in match.items()):
                    self._taken.add(n)
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._pump(remaining):
                raise AssertionError(
                    f"{self.name}: no {event} {match or ''} within {timeout_s} s; events: "
                    f"{[e.get('event') for e in self.events]}\n{self.failure_report()}")

    def drain(self) -> list[dict[str, Any]]:
        """Take in whatever events have arrived, without waiting."""
        while self._pump(0.0):
            pass
        return self.events

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.drain() if e.get("event") == event]

    def _pump(self, timeout_s: float) -> bool:
        try:
            item = self._inbox.get(timeout=timeout_s) if timeout_s > 0 else \
                self._inbox.get_nowait()
        except queue.Empty:
            return False
        if item is None:  # the child's stdout closed
            self._inbox.put(None)
            return False
        self.events.append(item)
        if item.get("event") == "error":
            print(f"{self.name}: {item}", file=sys.stderr)
        return True

    def request_quit(self) -> None:
        """Ask the child to hang up, shut pjsua down and exit (once; see ``close``)."""
        if not self._quit_sent and self.process.poll() is None:
            self._quit_sent = True
            with contextlib.suppress(OSError):  # it is already gone
                self.command("quit")

    def close(self, timeout_s: float = 5.0) -> None:
        """Quit and wait for the exit; killed if it takes longer than ``timeout_s``."""
        self.request_quit()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def failure_report(self) -> str:
        return (f"--- pjsua2 {self.name} on {LOOPBACK}:{self.sip_port}, exit "
                f"{self.process.poll()}\nstderr (last lines):\n{_tail(self.stderr_path, 20)}\n"
                f"pjsua log {self.log_path} (last lines):\n{_tail(self.log_path, 80)}")


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def close_agents(agents: Iterable[Pjsua2Agent]) -> None:
    """Close several endpoints at once (each takes a moment to shut down)."""
    agents = list(agents)
    for agent in agents:
        agent.request_quit()
    for agent in agents:
        agent.close()


def start_agent(name: str, workdir: Path, sip_port: int, *, rtp_port: int,
                answer_after_s: float | None = None, play_on_answer: Path | None = None,
                record_dir: Path | None = None, start_timeout_s: float = 10.0) -> Pjsua2Agent:
    """Start an endpoint named ``name`` (its URI user) on 127.0.0.1:``sip_port``.

    ``rtp_port``: where pjsua starts looking for RTP/RTCP port pairs (on 127.0.0.1).
    ``answer_after_s``: answer incoming calls (180 at once, 200 after this long); None: never.
    ``play_on_answer`` / ``record_dir``: once a call it answered is confirmed, loop that WAV
    to the caller / record what it receives to ``record_dir/<name>-call<id>.wav``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "name": name, "sip_port": sip_port, "rtp_port": rtp_port,
        "answer_after_s": answer_after_s,
        "play_on_answer": str(play_on_answer) if play_on_answer else None,
        "record_dir": str(record_dir) if record_dir else None,
        "log_file": str(workdir / f"{name}.pjsua.log"),
    }
    stderr_path = workdir / f"{name}.stderr.log"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=workdir,
        )  # fmt: skip
    agent = Pjsua2Agent(name, process, Path(config["log_file"]), stderr_path, sip_port)
    threading.Thread(target=_read_events, args=(process, agent._inbox), daemon=True).start()
    try:
        agent.wait_for("ready", timeout_s=start_timeout_s)
    except AssertionError:
        agent.close()
        raise
    return agent


def _read_events(process: subprocess.Popen[bytes], inbox: queue.Queue[Any]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        try:
            inbox.put(json.loads(line))
        except ValueError:
            inbox.put({"event": "error", "message": f"not JSON: {line!r}"})
    inbox.put(None)


# --- the child side: ctypes on the wheel's bundled libpjsua -------------------------------------


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


def _pj_str(text: str) -> tuple[_PjStr, bytes]:
    raw = text.encode()
    return _PjStr(raw, len(raw)), raw


def _load_libpjsua() -> ctypes.CDLL:
    import pjsua2

    libs = Path(pjsua2.__file__).parent / "pjsua2_pybind11.libs"
    [path] = sorted(libs.glob("libpjsua-*.so*"))  # libpjsua, not libpjsua2
    lib = ctypes.CDLL(str(path))
    lib.pjsua_pool_create.restype = ctypes.c_void_p
    lib.pjsua_pool_create.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.pjsua_acc_get_config.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.pjsua_acc_modify.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.pj_pool_release.argtypes = [ctypes.c_void_p]
    lib.pjsua_recorder_create.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p,
                                          ctypes.c_ssize_t, ctypes.c_uint, ctypes.c_void_p]
    return lib


def _struct_size(init: Callable[[Any], Any], limit: int = 1 << 16) -> tuple[bytes, int]:
    """A struct as its ``*_default()`` function fills it, and its size: the function zeroes the
    whole struct first, so the size is where the 0xAA filler starts again."""
    buf = ctypes.create_string_buffer(b"\xaa" * limit, limit)
    init(buf)
    raw = buf.raw
    end = limit
    while end and raw[end - 1] == 0xAA:
        end -= 1
    return raw, end


def _rtp_cfg_offset(lib: ctypes.CDLL) -> tuple[int, int]:
    """(offset of ``rtp_cfg`` in ``pjsua_acc_config``, size of that struct).

    Found, not hard-coded: ``pjsua_acc_config_default`` fills ``rtp_cfg`` with
    ``pjsua_transport_config_default`` and then port 4000; that image occurs exactly once."""
    transport, transport_size = _struct_size(lib.pjsua_transport_config_default)
    account, account_size = _struct_size(lib.pjsua_acc_config_default)
    image = bytearray(transport[:transport_size])
    image[0:4] = struct.pack("<I", 4000)
    hits = [o for o in range(0, account_size - transport_size + 1, 8)
            if account[o:o + transport_size] == image]
    if len(hits) != 1:
        raise RuntimeError(f"cannot find rtp_cfg in pjsua_acc_config ({len(hits)} candidates)")
    return hits[0], account_size


class _Child:
    """The pjsua2 endpoint inside the child process."""

    def __init__(self, config: dict[str, Any], emit: Callable[..., None]) -> None:
        import pjsua2 as pj

        self.pj = pj
        self.config = config
        self.emit = emit
        self.lib = _load_libpjsua()
        self.calls: dict[int, Any] = {}
        """Every Call object, kept until its own DISCONNECTED callback (PJSUA2_NOTES.md)."""
        self.slots: dict[int, int] = {}
        self.players: dict[int, list[int]] = {}
        self.recorders: dict[int, tuple[int, str]] = {}
        self.pending_records: dict[int, str] = {}
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self._keep: list[Any] = []  # ctypes buffers the library may still point at
        self._pools: list[int] = []
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # poll mode: callbacks run inside handle_events()
        cfg.uaConfig.maxCalls = 4
        cfg.logConfig.level = 4  # SIP messages included
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.filename = config["log_file"]
        cfg.medConfig.clockRate = SAMPLE_RATE  # the bridge, players and recorders at 8 kHz
        cfg.medConfig.sndClockRate = SAMPLE_RATE
        cfg.medConfig.noVad = True
        self.ep.libInit(cfg)
        transport = pj.TransportConfig()
        transport.port = config["sip_port"]
        transport.boundAddress = LOOPBACK
        transport.publicAddress = LOOPBACK
        self.ep.transportCreate(pj.TransportType.UDP, transport)
        self.ep.libStart()
        self.ep.audDevManager.setNullDev()
        self.call_class = _make_call_class(pj, self)
        self.account = _make_account_class(pj, self)()
        acc_cfg = pj.AccountConfig()
        acc_cfg.idUri = f"sip:{config['name']}@{LOOPBACK}:{config['sip_port']}"
        self.account.create(acc_cfg)
        self._pin_rtp(self.account.id, config["rtp_port"])

    def _pin_rtp(self, acc_id: int, port: int) -> None:
        """RTP/RTCP sockets bound to 127.0.0.1, which is also the address in our SDP."""
        offset, size = _rtp_cfg_offset(self.lib)
        pool = self.lib.pjsua_pool_create(b"pin-rtp", 4096, 4096)
        buf = ctypes.create_string_buffer(size + 4096)
        if self.lib.pjsua_acc_get_config(acc_id, pool, buf) != 0:
            raise RuntimeError("pjsua_acc_get_config failed")
        address, raw = _pj_str(LOOPBACK)
        self._pools.append(pool)
        self._keep += [raw, address]
        base = ctypes.addressof(buf) + offset
        ctypes.memmove(base, struct.pack("<I", port), 4)  # rtp_cfg.port
        ctypes.memmove(base + 16, ctypes.byref(address), ctypes.sizeof(address))  # public_addr
        ctypes.memmove(base + 32, ctypes.byref(address), ctypes.sizeof(address))  # bound_addr
        if self.lib.pjsua_acc_modify(acc_id, buf) != 0:
            raise RuntimeError("pjsua_acc_modify failed")
        check = ctypes.create_string_buffer(size + 4096)
        self.lib.pjsua_acc_get_config(acc_id, pool, check)
        pointer, length = struct.unpack_from("Pn", check.raw, offset + 32)  # bound_addr
        if (struct.unpack_from("<I", check.raw, offset)[0], ctypes.string_at(pointer, length)) \
                != (port, LOOPBACK.encode()):
            raise RuntimeError("could not pin RTP to 127.0.0.1 (pjsua_acc_config layout?)")

    # -- commands ----------------------------------------------------------------------------

    def handle(self, command: dict[str, Any]) -> bool:
        """Carry out one command; False after ``quit``."""
        kind = command.get("cmd")
        call_id = command.get("call")
        if kind == "quit":
            return False
        if kind == "call":
            self.make_call(command["uri"], command.get("headers") or {})
        elif kind == "play":
            self.play(call_id, command["wav"])
        elif kind == "record":
            self.record(call_id, command["wav"])
        elif kind == "stop_record":
            self.stop_record(call_id)
        elif kind == "dtmf":
            param = self.pj.CallSendDtmfParam()
            param.digits = command["digits"]
            param.method = self.pj.DtmfMethod.RFC2833
            param.duration = int(command.get("duration_ms", 160))
            self.calls[call_id].sendDtmf(param)
            self.emit("dtmf_sent", call=call_id, digits=command["digits"])
        elif kind == "hangup":
            if call_id in self.calls:
                self.calls[call_id].hangup(self.pj.CallOpParam())
        else:
            self.emit("error", message=f"unknown command {command!r}")
        return True

    def make_call(self, uri: str, headers: dict[str, str]) -> None:
        pj = self.pj
        call = self.call_class(self.account)
        param = pj.CallOpParam(True)
        for name, value in headers.items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            param.txOption.headers.append(header)
        call.makeCall(uri, param)
        self.calls[call.id] = call
        self.emit("calling", call=call.id, uri=uri)

    def play(self, call_id: int, path: str) -> None:
        player = ctypes.c_int()
        name, raw = _pj_str(path)
        if self.lib.pjsua_player_create(ctypes.byref(name), 0, ctypes.byref(player)) != 0:
            raise RuntimeError(f"pjsua_player_create({path}) failed")
        self._keep.append(raw)
        self.players.setdefault(call_id, []).append(player.value)
        source = self.lib.pjsua_player_get_conf_port(player.value)
        self._connect(source, self.slots[call_id])
        self.emit("playing", call=call_id, wav=path)

    def record(self, call_id: int, path: str) -> None:
        """Record what the call receives; before its audio is up, from the moment it is."""
        if call_id not in self.slots:
            self.pending_records[call_id] = path
            return
        self.stop_record(call_id, quiet=True)
        recorder = ctypes.c_int()
        name, raw = _pj_str(path)
        if self.lib.pjsua_recorder_create(ctypes.byref(name), 0, None, -1, 0,
                                          ctypes.byref(recorder)) != 0:
            raise RuntimeError(f"pjsua_recorder_create({path}) failed")
        self._keep.append(raw)
        self.recorders[call_id] = (recorder.value, path)
        self._connect(self.slots[call_id], self.lib.pjsua_recorder_get_conf_port(recorder.value))
        self.emit("recording", call=call_id, wav=path)

    def stop_record(self, call_id: int, *, quiet: bool = False) -> None:
        """Destroying the recorder writes the WAV header: the file is complete after this."""
        self.pending_records.pop(call_id, None)
        recorder = self.recorders.pop(call_id, None)
        if recorder is not None:
            self.lib.pjsua_recorder_destroy(recorder[0])
            if not quiet:
                self.emit("recorded", call=call_id, wav=recorder[1])

    def _connect(self, source: int, sink: int) -> None:
        if self.lib.pjsua_conf_connect(source, sink) != 0:
            raise RuntimeError(f"pjsua_conf_connect({source}, {sink}) failed")

    # -- callbacks (from _make_*_class; exceptions are caught there) -------------------------

    def on_incoming(self, call: Any, whole_msg: str) -> None:
        self.calls[call.id] = call
        head_text, _, body = whole_msg.replace("\r\n", "\n").partition("\n\n")
        head = head_text.split("\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        request_uri = head[0].split(" ")[1] if " " in head[0] else ""
        self.emit("incoming", call=call.id, request_uri=request_uri, headers=headers,
                  sdp_audio=_audio_endpoint(body))
        delay = self.config.get("answer_after_s")
        if delay is None:
            return
        self._answer(call.id, self.pj.StatusCode.RINGING)
        self.timers.append((time.monotonic() + delay,
                            lambda: self._answer(call.id, self.pj.StatusCode.OK)))

    def _answer(self, call_id: int, status: Any) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            param = self.pj.CallOpParam()
            param.statusCode = status
            call.answer(param)

    def on_state(self, call: Any) -> None:
        info = call.info
        state = info.state.name
        self.emit("state", call=info.id, state=state, status=int(info.lastStatusCode),
                  reason=info.lastReason)
        if info.state == self.pj.InvState.CONFIRMED and info.role == self.pj.Role.UAS:
            self._on_answered(info.id)
        if info.state == self.pj.InvState.DISCONNECTED:
            self.stop_record(info.id)
            for player in self.players.pop(info.id, []):
                self.lib.pjsua_player_destroy(player)
            self.slots.pop(info.id, None)
            self.calls.pop(info.id, None)  # drop the object here and nowhere else

    def _on_answered(self, call_id: int) -> None:
        if call_id not in self.slots:
            self.emit("error", message=f"call {call_id} confirmed without active audio")
            return
        if self.config.get("record_dir"):
            path = Path(self.config["record_dir"]) / f"{self.config['name']}-call{call_id}.wav"
            self.record(call_id, str(path))
        if self.config.get("play_on_answer"):
            self.play(call_id, self.config["play_on_answer"])

    def on_media(self, call: Any) -> None:
        info = call.info
        pj = self.pj
        slot = next((m.audioConfSlot for m in info.media
                     if m.type == pj.MediaType.AUDIO and m.status == pj.CallMediaStatus.ACTIVE),
                    None)
        if slot is None or slot < 0:
            self.slots.pop(info.id, None)
        else:
            self.slots[info.id] = slot
        self.emit("media", call=info.id, active=slot is not None and slot >= 0, slot=slot)
        if info.id in self.slots and info.id in self.pending_records:
            self.record(info.id, self.pending_records.pop(info.id))

    def on_sdp(self, call: Any, sdp: str) -> None:
        lines = sdp.replace("\r\n", "\n").split("\n")
        addresses = sorted({line.split()[-1] for line in lines if line.startswith("c=")})
        self.emit("sdp", call=call.id, address=addresses)

    # -- the loop ----------------------------------------------------------------------------

    def run_timers(self) -> None:
        now = time.monotonic()
        due = [t for t in self.timers if t[0] <= now]
        self.timers = [t for t in self.timers if t[0] > now]
        for _, action in due:
            self.guarded(action)

    def guarded(self, action: Callable[[], None]) -> None:
        """Run ``action``; an exception becomes an ``error`` event (one escaping a pjsua2
        callback would abort the process)."""
        try:
            action()
        except Exception as err:
            self.emit("error", message=f"{type(err).__name__}: {err}")

    def shutdown(self) -> None:
        self.timers.clear()
        if self.calls:
            self.guarded(self.ep.hangupAllCalls)
            deadline = time.monotonic() + 3.0
            while self.calls and time.monotonic() < deadline:
                self.lib.pjsua_handle_events(10)
        for call_id in list(self.recorders):
            self.stop_record(call_id, quiet=True)
        for players in self.players.values():
            for player in players:
                self.lib.pjsua_player_destroy(player)
        self.players.clear()
        self.calls.clear()
        for pool in self._pools:
            self.lib.pj_pool_release(pool)
        # The calls are gone: skip pjsua's one-second wait for network goodbyes.
        self.ep.libDestroy(PJSUA_DESTROY_NO_NETWORK)


def _audio_endpoint(sdp: str) -> list[Any] | None:
    """[address, port] of the audio stream an SDP offers (session-level c= line)."""
    lines = sdp.split("\n")
    address = next((ln.split()[-1] for ln in lines if ln.startswith("c=")), None)
    port = next((int(ln.split()[1]) for ln in lines if ln.startswith("m=audio")), None)
    return [address, port] if address and port else None


def _make_account_class(pj: Any, child: _Child) -> type:
    class Account(pj.Account):  # type: ignore[misc, name-defined]
        def onIncomingCall(self, prm: Any) -> None:
            def incoming() -> None:
                call = child.call_class(self, prm.callId)
                child.on_incoming(call, prm.rdata.wholeMsg)
            child.guarded(incoming)

    return Account


def _make_call_class(pj: Any, child: _Child) -> type:
    class Call(pj.Call):  # type: ignore[misc, name-defined]
        def onCallState(self, prm: Any) -> None:
            child.guarded(lambda: child.on_state(self))

        def onCallMediaState(self, prm: Any) -> None:
            child.guarded(lambda: child.on_media(self))

        def onCallSdpCreated(self, prm: Any) -> None:
            child.guarded(lambda: child.on_sdp(self, prm.sdp.wholeSdp))

    return Call


def _child_main(config: dict[str, Any]) -> int:
    # Events go to the original stdout; pjsua (and anything else) may print, so fd 1 becomes
    # stderr before the library is loaded.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)

    def emit(event: str, **fields: Any) -> None:
        out.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")

    child = _Child(config, emit)
    emit("ready", sip_port=config["sip_port"])
    pending = b""
    running = True
    while running:
        child.lib.pjsua_handle_events(10)
        child.run_timers()
        while running and select.select([0], [], [], 0)[0]:
            chunk = os.read(0, 65536)
            if not chunk:  # the test went away
                running = False
                break
            pending += chunk
            while running and b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                try:
                    running = child.handle(json.loads(line))
                except Exception as err:
                    emit("error", message=f"{line!r}: {type(err).__name__}: {err}")
    child.shutdown()
    emit("bye")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
