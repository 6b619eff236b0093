"""`mt`: every DVC stage (and the user-facing commands) as one Typer app.

Stage modules keep heavy imports (torch, librosa) inside their commands, so `mt --help` is quick."""

from __future__ import annotations

import importlib
import os

import typer

from stages import named_errors

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

app = typer.Typer(
    help="mtlib: polyphonic music transcription on MusicNet (CTC vs Seq2Seq). "
    "Each pipeline stage is a subcommand; `dvc repro` runs them in order.",
    no_args_is_help=True,
    add_completion=False,
)

# (command name, module under stages/) in pipeline order; a module missing here is skipped so
# the CLI works while the pipeline grows.
COMMANDS = [
    ("demo-data", "demo_data"),
    ("segment", "segment"),
    ("tokenize", "tokenize"),
    ("manifest", "manifest"),
    ("train-ctc", "train_ctc"),
    ("train-seq2seq", "train_seq2seq"),
    ("decode-sweep", "decode_sweep"),
    ("evaluate", "evaluate"),
    ("report", "report"),
    ("transcribe", "transcribe"),
    ("score", "score"),
]

for name, module in COMMANDS:
    try:
        mod = importlib.import_module(f"stages.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"stages.{module}":
            raise
        continue
    app.command(name, help=(mod.main.__doc__ or "").strip())(named_errors(mod.main))


if __name__ == "__main__":
    app()
