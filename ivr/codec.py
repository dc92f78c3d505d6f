"""G.711 A-law and µ-law (ITU-T G.711), table driven.

Encoding 16-bit linear PCM goes through a 65,536-entry table indexed by the unsigned sample
value, built once at import; decoding through a 256-entry table. Whole frames are converted
with ``bytes.translate`` on the high byte where possible or a comprehension over memoryview
casts otherwise: no per-sample arithmetic on the hot path, and no ``audioop`` (removed in 3.13).
"""

from __future__ import annotations

import array
import sys

__all__ = [
    "alaw_decode",
    "alaw_encode",
    "alaw_to_linear",
    "linear_to_alaw",
    "linear_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_linear",
]

_BIAS = 0x84  # µ-law bias (G.711 / Sun reference implementation)
_CLIP = 8159
_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return 8


def linear_to_alaw(sample: int) -> int:
    """One 16-bit signed sample -> A-law byte (G.711 A-law, Sun reference algorithm)."""
    pcm = sample >> 3  # 13-bit domain
    if pcm >= 0:
        mask = 0xD5  # sign bit set, even bits inverted
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _AEND)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm >> 1) & 0xF if seg < 2 else (pcm >> seg) & 0xF
    return ((seg << 4) | quant) ^ mask


def alaw_to_linear(code: int) -> int:
    """One A-law byte -> 16-bit signed sample."""
    a = code ^ 0x55
    t = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a & 0x80 else -t


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit signed sample -> µ-law byte (G.711 §B, 14-bit magnitude with bias)."""
    pcm = sample >> 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, _CLIP)
    pcm += _BIAS >> 2
    seg = _segment(pcm, _UEND)
    if seg >= 8:
        return 0x7F ^ mask
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0xF)
    return uval ^ mask



def ulaw_to_linear(code: int) -> int:
    """One µ-law byte -> 16-bit signed sample."""
    u = ~code & 0xFF
    t = ((u & 0xF) << 3) + _BIAS
    t <<= (u & 0x70) >> 4
    return _BIAS - t if u & 0x80 else t - _BIAS


# Tables: encoders indexed by the unsigned 16-bit pattern of the sample, decoders by the code.
_ALAW_ENC = bytes(linear_to_alaw(s - 65536 if s >= 32768 else s) for s in range(65536))
_ULAW_ENC = bytes(linear_to_ulaw(s - 65536 if s >= 32768 else s) for s in range(65536))
_ALAW_DEC = tuple(alaw_to_linear(c) for c in range(256))
_ULAW_DEC = tuple(ulaw_to_linear(c) for c in range(256))
_LITTLE = sys.byteorder == "little"


def _samples_u16(pcm: bytes) -> memoryview:
    """Little-endian 16-bit PCM as unsigned 16-bit values (host order)."""
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes")
    if _LITTLE:
        return memoryview(pcm).cast("H")
    swapped = array.array("H", pcm)
    swapped.byteswap()
    return memoryview(swapped)


def _encode(pcm: bytes, table: bytes) -> bytes:
    return bytes([table[s] for s in _samples_u16(pcm)])


def _decode(codes: bytes, table: tuple[int, ...]) -> bytes:
    out = array.array("h", [table[c] for c in codes])
    if not _LITTLE:
        out.byteswap()
    return out.tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian signed PCM -> A-law bytes (one per sample)."""
    return _encode(pcm, _ALAW_ENC)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian signed PCM -> µ-law bytes (one per sample)."""
    return _encode(pcm, _ULAW_ENC)


def alaw_decode(codes: bytes) -> bytes:
    """A-law bytes -> 16-bit little-endian signed PCM."""
    return _decode(codes, _ALAW_DEC)


def ulaw_decode(codes: bytes) -> bytes:
    """µ-law bytes -> 16-bit little-endian signed PCM."""
    return _decode(codes, _ULAW_DEC)
