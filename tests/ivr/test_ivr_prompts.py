"""The committed prompt set, WAV loading/encoding, and `nodrute prompts build`."""

from __future__ import annotations

import shutil
import struct
import wave
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ivr.codec import alaw_decode, alaw_encode, ulaw_encode
from ivr.config import IvrSettings, PlayStep
from ivr.prompts import (
    DEFAULT_PROMPT_DIR,
    FRAME_BYTES,
    PROMPT_TEXTS,
    PromptCatalogue,
    PromptError,
    load_prompt,
)
from router.cli import app


def write_wav(path: Path, samples: list[int], rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def test_the_committed_set_has_every_prompt_in_both_languages() -> None:
    catalogue = PromptCatalogue.load()
    expected = {(lang, name) for lang, texts in PROMPT_TEXTS.items() for name in texts}
    assert set(catalogue.keys()) == expected
    for key in expected:
        prompt = catalogue.get(*key)
        assert 1.0 < prompt.duration_s < 15.0
        assert all(len(f) == FRAME_BYTES for f in prompt.pcma + prompt.pcmu)
        # speech, not silence: a good part of the frames carry energy
        loud = sum(1 for f in prompt.pcma
                   if max(abs(s) for s in struct.unpack("<160h", alaw_decode(f))) > 2000)
        assert loud > len(prompt.pcma) // 4


def test_every_prompt_a_default_flow_plays_exists() -> None:
    catalogue = PromptCatalogue.load()
    settings = IvrSettings()
    for flow in settings.flows.values():
        for step in flow.steps:
            name = step.prompt if isinstance(step, PlayStep) else getattr(step, "prompt", None)
            if name is not None:
                assert ("nb", name) in catalogue and ("en", name) in catalogue


def test_frames_are_the_encoded_samples_padded_with_silence(tmp_path: Path) -> None:
    samples = [(i * 37) % 20000 - 10000 for i in range(400)]  # 2.5 frames
    write_wav(tmp_path / "x.wav", samples)
    prompt = load_prompt(tmp_path / "x.wav", "en", "x")
    raw = struct.pack("<400h", *samples)
    assert len(prompt.pcma) == 3
    assert b"".join(prompt.pcma) == alaw_encode(raw) + b"\xd5" * 80
    assert b"".join(prompt.pcmu) == ulaw_encode(raw) + b"\xff" * 80
    assert prompt.frames("pcmu") is prompt.pcmu
    with pytest.raises(PromptError):
        prompt.frames("G729")


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (8000, 2)])
def test_wrong_wav_format_is_refused(tmp_path: Path, rate: int, channels: int) -> None:
    write_wav(tmp_path / "bad.wav", [0] * 320, rate, channels)
    with pytest.raises(PromptError, match="8000 Hz mono"):
        load_prompt(tmp_path / "bad.wav", "nb", "bad")
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(PromptError):
        load_prompt(tmp_path / "junk.wav", "nb", "junk")


def test_catalogue_falls_back_to_english(tmp_path: Path) -> None:
    for lang in ("nb", "en"):
        (tmp_path / lang).mkdir()
    write_wav(tmp_path / "en" / "only_en.wav", [100] * 160)
    write_wav(tmp_path / "nb" / "both.wav", [100] * 160)
    write_wav(tmp_path / "en" / "both.wav", [200] * 160)
    catalogue = PromptCatalogue.load(tmp_path)
    assert catalogue.get("nb", "only_en").language == "en"
    assert catalogue.get("nb", "both").language == "nb"
    with pytest.raises(KeyError):
        catalogue.get("nb", "only_en", fallback_language=None)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="`nodrute prompts build` needs espeak-ng and sox "
                           "(apt-get install espeak-ng sox)")
def test_prompts_build_reproduces_the_committed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prompts", "build", "--out", str(tmp_path),
                                      "--language", "nb"])
    assert result.exit_code == 0, result.output
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.wav"))
    assert built == sorted(Path("nb") / f"{name}.wav" for name in PROMPT_TEXTS["nb"])
    for rel in built:
        assert (tmp_path / rel).read_bytes() == (DEFAULT_PROMPT_DIR / rel).read_bytes(), rel
