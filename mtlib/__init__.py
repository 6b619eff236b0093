"""mtlib: polyphonic music transcription on MusicNet (CTC and Seq2Seq on one audio encoder).

Transcribe a file with a trained model (nothing is written to disk):

    import mtlib
    result = mtlib.transcribe("song.wav", model="data/models/ctc.pt")
    result.midi().write("song.mid")      # result.notes: list of mtlib.Note in seconds

`mtlib.Transcriber.load(checkpoint)` keeps the model loaded for many files. The library holds
every decision; `stages/` only wires it into DVC (docs/README.md). Heavy modules (torch) are
imported on first use, so `import mtlib` stays cheap.
"""

from __future__ import annotations

from mtlib.notes import Note

__all__ = ["Note", "Transcriber", "Transcription", "transcribe"]

_LAZY = {"Transcriber": "mtlib.transcriber", "Transcription": "mtlib.transcriber"}


def transcribe(
    audio, model="data/models/ctc.pt", sample_rate: int | None = None, device: str = "auto"
):
    """Transcribe `audio` (a file path, or an array with its `sample_rate`) with `model` (a
    checkpoint path or a loaded `Transcriber`) → `Transcription`; see `mtlib.transcriber.transcribe`."""
    from mtlib.transcriber import transcribe as run

    return run(audio, model, sample_rate, device)


def __getattr__(name: str):
    """`mtlib.Transcriber` and friends, imported from their module on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtlib' has no attribute {name!r}")
