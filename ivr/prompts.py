"""Prompts: 8 kHz mono 16-bit WAV files pre-encoded into 20 ms G.711 frames at load time.

The catalogue is loaded once at start (file I/O off the call path) and keyed by
(language, name); ``frames(codec)`` hands the engine ready 160-octet payloads.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .codec import alaw_encode, ulaw_encode

__all__ = [
    "DEFAULT_PROMPT_DIR",
    "FRAME_BYTES",
    "PROMPT_TEXTS",
    "Prompt",
    "PromptCatalogue",
    "PromptError",
    "load_prompt",
]

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES  # one G.711 octet per sample
DEFAULT_PROMPT_DIR = Path(__file__).parent / "prompts"

# The shipped prompt set: the text `nodrute prompts build` speaks, by language and name.
PROMPT_TEXTS: Mapping[str, Mapping[str, str]] = {
    "nb": {
        "greeting_116117": "Du har ringt legevakt. Ved livstruende situasjoner, "
                           "legg på og ring 1 1 3.",
        "press1_for_113": "Hvis det gjelder liv og helse, trykk 1. "
                          "Ellers, vent, så blir du satt over til legevakten.",
        "please_wait_113": "Du har ringt medisinsk nødtelefon. Vent, vi setter deg over.",
        "all_busy": "Alle linjer er opptatt. Vennligst vent.",
        "no_centre": "Vi får ikke satt deg over akkurat nå. Legg på og ring igjen. "
                     "Ved livstruende situasjoner, ring 1 1 2.",
    },
    "en": {
        "greeting_116117": "You have called the out of hours medical service. "
                           "If it is life threatening, hang up and call 1 1 3.",
        "press1_for_113": "If it is life threatening, press 1. "
                          "Otherwise, please hold for the out of hours service.",
        "please_wait_113": "You have called the medical emergency number. "
                           "Please hold, you are being connected.",
        "all_busy": "All lines are busy. Please hold.",
        "no_centre": "We cannot connect your call right now. Please hang up and call again. "
                     "If it is life threatening, call 1 1 2.",
    },
}


class PromptError(ValueError):
    """A prompt file that is missing or not 8 kHz mono 16-bit PCM WAV."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt, pre-encoded."""

    language: str
    name: str
    pcma: tuple[bytes, ...]
    """160-octet A-law frames (the last one padded with silence)."""
    pcmu: tuple[bytes, ...]
    """160-octet µ-law frames."""

    @property
    def duration_s(self) -> float:
        return len(self.pcma) * FRAME_SAMPLES / SAMPLE_RATE

    def frames(self, codec_name: str) -> tuple[bytes, ...]:
        """Frames for ``PCMA`` or ``PCMU`` (case-insensitive)."""
        name = codec_name.upper()
        if name == "PCMA":
            return self.pcma
        if name == "PCMU":
            return self.pcmu
        raise PromptError(f"no frames for codec {codec_name}")


def read_pcm(path: Path) -> bytes:
    """16-bit little-endian samples of an 8 kHz mono WAV file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise PromptError(
                    f"{path}: need 8000 Hz mono 16-bit, got {wav.getframerate()} Hz, "
                    f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit")
            return wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as err:
        raise PromptError(f"{path}: {err}") from err


def _split(codes: bytes, silence: int) -> tuple[bytes, ...]:
    if len(codes) % FRAME_BYTES:
        codes += bytes([silence]) * (FRAME_BYTES - len(codes) % FRAME_BYTES)
    return tuple(codes[i:i + FRAME_BYTES] for i in range(0, len(codes), FRAME_BYTES))


def load_prompt(path: Path, language: str, name: str) -> Prompt:
    pcm = read_pcm(path)
    if not pcm:
        raise PromptError(f"{path}: no audio")
    return Prompt(language, name, _split(alaw_encode(pcm), 0xD5), _split(ulaw_encode(pcm), 0xFF))


class PromptCatalogue:
    """All prompts under ``<root>/<language>/<name>.wav``, loaded and encoded up front."""

    def __init__(self, prompts: Iterable[Prompt]) -> None:
        self._prompts = {(p.language, p.name): p for p in prompts}

    @classmethod
    def load(cls, root: Path = DEFAULT_PROMPT_DIR) -> PromptCatalogue:
        return cls(load_prompt(path, path.parent.name, path.stem)
                   for path in sorted(root.glob("*/*.wav")))

    def get(self, language: str, name: str, fallback_language: str | None = "en") -> Prompt:
        """The prompt, in ``fallback_language`` when missing in ``language``; KeyError if none."""
        found = self._prompts.get((language, name))
        if found is None and fallback_language is not None:
            found = self._prompts.get((fallback_language, name))
        if found is None:
            raise KeyError(f"no prompt {name!r} in {language!r}")
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._prompts

    def keys(self) -> list[tuple[str, str]]:
        return sorted(self._prompts)
