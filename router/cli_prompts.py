"""``nodrute prompts build``: the shipped prompt WAVs from text, reproducibly (espeak-ng + sox)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ivr.prompts import DEFAULT_PROMPT_DIR, PROMPT_TEXTS

prompts_app = typer.Typer(help="Prompt files for the IVR.", no_args_is_help=True)

# espeak-ng voices per prompt language; fixed speed/pitch so a rebuild gives the same audio.
VOICES = {"nb": "nb", "en": "en"}
ESPEAK_ARGS = ("-s", "150", "-p", "50", "-a", "120")


def build_prompt(text: str, voice: str, target: Path) -> None:
    """Speak ``text`` with espeak-ng and convert it with sox to 8 kHz mono 16-bit WAV."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, *ESPEAK_ARGS, "-w", str(raw), text],
                       check=True, capture_output=True)
        # -D: no dither, so the output is byte-for-byte reproducible; a 0.2 s lead-in of silence.
        subprocess.run(["sox", "-D", str(raw), "-r", "8000", "-c", "1", "-b", "16",
                        "-e", "signed-integer", str(target), "pad", "0.2", "0.3",
                        "norm", "-3"], check=True, capture_output=True)


@prompts_app.command("build")
def build(
    out: Annotated[Path, typer.Option(help="Prompt root: <out>/<lang>/<name>.wav.")]
    = DEFAULT_PROMPT_DIR,
    language: Annotated[list[str] | None, typer.Option(help="Only these languages.")] = None,
) -> None:
    """Generate every shipped prompt with espeak-ng (voice nb / en) and sox."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        typer.echo(f"missing {', '.join(missing)}: apt-get install espeak-ng sox", err=True)
        raise typer.Exit(2)
    for lang, texts in PROMPT_TEXTS.items():
        if language and lang not in language:
            continue
        for name, text in texts.items():
            target = out / lang / f"{name}.wav"
            build_prompt(text, VOICES[lang], target)
            typer.echo(str(target))
