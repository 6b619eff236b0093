"""`mt transcribe PATH...`: audio files → `<name>.mid`, `<name>.csv` (MusicNet labels), `<name>.png`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from stages import run


class Kind(str, Enum):
    ctc = "ctc"
    seq2seq = "seq2seq"


class Decoder(str, Enum):
    greedy = "greedy"
    constrained = "constrained"
    beam = "beam"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def main(
    paths: List[Path] = typer.Argument(
        ...,
        help="Audio files (anything libsndfile reads: WAV, FLAC, OGG, ...; any rate and "
        "channel count, any length) or folders searched recursively for them.",
    ),
    model: Kind = typer.Option(Kind.ctc, "--model", help="Which trained model to use."),
    checkpoint: Optional[Path] = typer.Option(
        None, help="Checkpoint file (default: data/models/<model>.pt from `dvc repro`)."
    ),
    out: Path = typer.Option(
        Path("transcriptions"),
        help="Output folder; a folder input keeps its sub-folder layout here.",
    ),
    decoder: Optional[Decoder] = typer.Option(
        None,
        help="Override the decoder the sweep chose: greedy or beam for ctc; constrained "
        "(greedy under the token grammar), greedy (unconstrained) or beam for seq2seq. "
        "Default, and every other decoding setting: the config decode_sweep chose for "
        "this checkpoint (<checkpoint>.decode.json beside it, checked by SHA-256), "
        "else the decoding the checkpoint was validated with (a warning says so).",
    ),
    device: Device = typer.Option(Device.auto, help="auto uses CUDA when present."),
    batch_size: Optional[int] = typer.Option(
        None, min=1, help="Segments per model batch (default: decode.batch_size)."
    ),
    roll_seconds: Optional[float] = typer.Option(
        None, help="Draw only the first this many seconds in the PNG piano roll (default: all)."
    ),
    sonify: bool = typer.Option(
        False,
        "--sonify",
        help="Also write <name>.sonified.wav (the notes played on the sampled grand, other "
        "instruments via TimGM6mb, at the input's rate and length) and <name>.ab.wav (stereo: "
        "the recording left, the transcription right, level-matched) for listening.",
    ),
) -> None:
    """Transcribe audio files to MIDI, MusicNet-format label CSV (sample indices at the input's own rate), a piano-roll PNG and a JSON record (the CSV's rate, which `mt score` reads; model and decoding).

    A file's four outputs appear together or not at all. Files that cannot be read or whose outputs cannot be written are reported and skipped; the others are still done, and the exit code is 1."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # whole paths on one line, for logs and grep
    if roll_seconds is not None and not 0 < roll_seconds < float("inf"):
        # checked before any model runs: inf/NaN used to leave .mid and .csv without their .png
        typer.echo(f"Error: --roll-seconds {roll_seconds}: must be a finite number > 0", err=True)
        raise typer.Exit(code=2)
    if out.exists() and not out.is_dir():  # checked before the model loads, like the above
        typer.echo(f"Error: --out {out}: is a file; give a folder", err=True)
        raise typer.Exit(code=2)
    checkpoint = checkpoint or Path("data/models") / f"{model.value}.pt"
    transcriber = load_transcriber(checkpoint, model.value, device.value, console)
    changes = {} if batch_size is None else {"batch_size": batch_size}
    try:
        transcriber = transcriber.with_decoding(**changes)
        if decoder is not None:
            transcriber = transcriber.with_decoder(decoder.value)
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    chosen = ([f"decoder={decoder.value}"] if decoder else []) + [
        f"{k}={v}" for k, v in changes.items()
    ]
    console.print(
        f"[bold]{transcriber.kind}[/] from {checkpoint} on {transcriber.device}; decoding from "
        f"{transcriber.decoding_source}" + (f" with {', '.join(chosen)}" if chosen else "")
    )
    failed, done = transcribe_all(transcriber, paths, out, roll_seconds, console, sonify)
    if failed:
        console.print(f"[red]{failed} input(s) failed[/]; {done} transcribed")
        raise typer.Exit(code=1)


def load_transcriber(checkpoint: Path, kind: str, device: str, console):
    """The checkpoint's Transcriber, its warnings printed; exit 2 naming the problem if it cannot
    be loaded or holds another kind of model."""
    import warnings

    from mtlib.transcriber import Transcriber

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transcriber = Transcriber.load(checkpoint, device=device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        hint = "" if checkpoint.exists() else " (train it with `dvc repro`, or pass --checkpoint)"
        typer.echo(f"Error: {exc}{hint}", err=True)
        raise typer.Exit(code=2) from None
    for w in caught:
        console.print(f"[yellow]Warning:[/] {w.message}")
    if transcriber.kind != kind:
        typer.echo(f"Error: {checkpoint} holds a {transcriber.kind} model, not {kind}", err=True)
        raise typer.Exit(code=2)
    return transcriber


def transcribe_all(
    transcriber, paths, out: Path, roll_seconds, console, sonify: bool = False
) -> tuple[int, int]:
    """Every audio input found under `paths` → its files in `out`, with progress bars;
    (inputs that failed, inputs transcribed)."""
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mtlib.transcribe_files import find_audio, transcribe_file

    inputs, problems = find_audio(paths)
    for p, why in problems:
        console.print(f"[red]Error:[/] {p}: {why}")
    failed, done = len(problems), 0
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(TextColumn("{task.description}"), *columns, console=console, disable=None) as bar:
        files = bar.add_task("files", total=len(inputs))
        segs = bar.add_task("segments", total=None, visible=False)
        for path, stem in inputs:
            bar.update(segs, description=f"  {path.name}", completed=0, total=None, visible=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = transcribe_file(
                    transcriber,
                    path,
                    out / stem,
                    on_start=lambda n: bar.update(segs, total=n),
                    on_batch=lambda n: bar.advance(segs, n),
                    roll_seconds=roll_seconds,
                    sonify=sonify,
                )
            for w in caught:
                bar.console.print(f"[yellow]Warning:[/] {w.message}")
            if result.error:
                failed += 1
                bar.console.print(f"[red]Error:[/] {result.error}")
            else:
                done += 1
                speed = result.audio_seconds / max(result.wall_seconds, 1e-9)
                # the suffixes after the stem (a stem may hold dots: "take.2")
                written = ",".join(o.name[len(stem.name) + 1 :] for o in result.outputs)
                bar.console.print(
                    f"{path} → {out / stem}.{{{written}}}: {result.notes} notes, "
                    f"{result.audio_seconds:.1f} s of audio at {speed:.0f}x real time"
                )
            bar.advance(files)
        bar.update(segs, visible=False)
    return failed, done


if __name__ == "__main__":
    run(main)
