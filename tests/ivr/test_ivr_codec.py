"""G.711 against reference values (ITU-T G.711 / Sun reference) and round-trip error bounds."""

import struct
from collections.abc import Callable

import pytest

from ivr import codec

Codec = Callable[[bytes], bytes]


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


@pytest.mark.parametrize(("sample", "alaw", "ulaw"), [
    (0, 0xD5, 0xFF),          # silence
    (-1, 0x55, 0x7E),
    (32767, 0xAA, 0x80),      # positive full scale
    (-32768, 0x2A, 0x00),     # negative full scale
    (1000, 0xFA, 0xCE),
    (-1000, 0x7A, 0x4E),
])
def test_known_codes(sample: int, alaw: int, ulaw: int) -> None:
    assert codec.linear_to_alaw(sample) == alaw
    assert codec.linear_to_ulaw(sample) == ulaw
    assert codec.alaw_encode(pcm(sample)) == bytes([alaw])
    assert codec.ulaw_encode(pcm(sample)) == bytes([ulaw])


def test_decode_known_values() -> None:
    assert codec.alaw_to_linear(0xD5) == 8
    assert codec.alaw_to_linear(0xAA) == 32256
    assert codec.alaw_to_linear(0x2A) == -32256
    assert codec.ulaw_to_linear(0xFF) == 0
    assert codec.ulaw_to_linear(0x80) == 32124
    assert codec.ulaw_to_linear(0x00) == -32124


@pytest.mark.parametrize(("encode", "decode", "name"), [
    (codec.alaw_encode, codec.alaw_decode, "alaw"),
    (codec.ulaw_encode, codec.ulaw_decode, "ulaw"),
])
def test_round_trip_error_is_within_the_segment_step(
    encode: Codec, decode: Codec, name: str,
) -> None:
    samples = list(range(-32768, 32768, 7))
    decoded = struct.unpack(f"<{len(samples)}h", decode(encode(pcm(*samples))))
    for original, back in zip(samples, decoded, strict=True):
        # G.711 keeps 4 mantissa bits per segment and decodes to the middle of the step: A-law
        # is off by at most half a step (1/32 of the magnitude); µ-law's biased segments allow
        # about 1/20. Small signals: the lowest segment's step. Above 32124 µ-law clips.
        if name == "alaw":
            bound = max(8, abs(original) / 32)
        else:
            bound = max(11, abs(original) * 0.051) + max(0, abs(original) - 32124)
        assert abs(original - back) <= bound, (original, back)


def test_every_code_decodes_and_reencodes_to_itself() -> None:
    for code in range(256):
        assert codec.linear_to_alaw(codec.alaw_to_linear(code)) == code
        if code not in (0x7F, 0xFF) or codec.ulaw_to_linear(code) != 0:
            # µ-law has two zeros (+0 0xFF, -0 0x7F); both decode to 0, which encodes as 0xFF
            expected = 0xFF if codec.ulaw_to_linear(code) == 0 else code
            assert codec.linear_to_ulaw(codec.ulaw_to_linear(code)) == expected


def test_odd_length_pcm_is_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        codec.alaw_encode(b"\x00\x01\x02")
