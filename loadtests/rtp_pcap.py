"""RTP pcap files for the media bench: SIPp's ``play_pcap_audio`` replays them as captured.

``write_talk_pcap`` writes one continuous G.711 A-law stream in 20 ms frames (Ethernet/IPv4/UDP
framing, consecutive sequence numbers and timestamps) from the speech in Debian's
``/usr/share/sip-tester/g711a.pcap`` (30 ms packets, 7 s), re-framed and looped to any length.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

DEBIAN_SPEECH = Path("/usr/share/sip-tester/g711a.pcap")


def speech_frames(pcap: Path = DEBIAN_SPEECH) -> list[bytes]:
    """The A-law payload of an RTP pcap (Ethernet/IPv4/UDP), cut into 160-octet 20 ms frames."""
    data = pcap.read_bytes()
    offset, audio = 24, bytearray()
    while offset + 16 <= len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        packet = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = packet[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        if len(rtp) > 12 and rtp[1] & 0x7F == 8:
            audio += rtp[12 + 4 * (rtp[0] & 0x0F) :]
    return [bytes(audio[i : i + 160]) for i in range(0, len(audio) - 159, 160)]


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_talk_pcap(path: Path, seconds: float, frames: Sequence[bytes]) -> Path:
    """A pcap of one continuous RTP stream: PCMA every 20 ms for ``seconds``, the frames looped,
    consecutive sequence numbers and timestamps (SIPp rewrites addresses and ports)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    loopback = bytes([127, 0, 0, 1])
    for i in range(int(seconds * 50)):
        rtp = struct.pack("!BBHII", 0x80, 8 | (0x80 if i == 0 else 0), (1000 + i) & 0xFFFF,
                          160 * i, 0x4E4F4452) + frames[i % len(frames)]  # fmt: skip
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         loopback, loopback)  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = bytes(12) + b"\x08\x00" + ip + udp
        at = i * 0.020
        out += struct.pack("<IIII", int(at), round((at % 1) * 1e6), len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return path
