"""`mt score REF PRED`: mir_eval note, note-with-offset and frame scores of MusicNet-format label CSVs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stages import run

KINDS = {
    "note": "note",
    "note_offset": "note + offset",
    "frame": "frame",
}  # metric prefix → row label


def main(
    ref: Path = typer.Argument(..., help="Reference label CSV, or a folder of them."),
    pred: Path = typer.Argument(
        ...,
        help="Predicted label CSV, or a folder holding one CSV per reference (same file names).",
    ),
    rate: int = typer.Option(
        44100,
        help="Rate of a CSV's sample indices when nothing says it: a CSV in the MusicNet layout "
        "is read at its WAV's rate, one written by `mt transcribe` at the rate in the <name>.json "
        "beside it, any other at this rate.",
    ),
    ref_rate: Optional[int] = typer.Option(
        None, help="Read every reference CSV at this rate, whatever else says otherwise."
    ),
    est_rate: Optional[int] = typer.Option(
        None, help="Read every predicted CSV at this rate, whatever else says otherwise."
    ),
    onset_tolerance: float = typer.Option(
        0.05, help="Onset tolerance in seconds (mir_eval's default 50 ms)."
    ),
    offset_ratio: float = typer.Option(
        0.2, help="Offset tolerance as a fraction of the reference note's duration."
    ),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the per-file and mean scores to this JSON file."
    ),
) -> None:
    """Score predicted against reference MusicNet label CSVs: note, note+offset and frame P/R/F1, per file and mean."""
    from rich.console import Console
    from rich.table import Table

    from mtlib.errors import MusicNetFormatError
    from mtlib.io import write_json
    from mtlib.metrics import mean_metrics, pair_label_files, score_label_files

    for name, value, ok, rule in (
        ("--rate", rate, rate > 0, "> 0"),
        ("--ref-rate", ref_rate, ref_rate is None or ref_rate > 0, "> 0"),
        ("--est-rate", est_rate, est_rate is None or est_rate > 0, "> 0"),
        ("--onset-tolerance", onset_tolerance, onset_tolerance > 0, "> 0"),
        ("--offset-ratio", offset_ratio, offset_ratio >= 0, ">= 0"),
    ):
        if not ok or value != value:  # NaN compares unequal to itself
            typer.echo(f"Error: {name} {value}: must be {rule}", err=True)
            raise typer.Exit(code=2)
    if json_out is not None and json_out.is_dir():
        typer.echo(f"Error: --json {json_out}: is a folder; give a file name", err=True)
        raise typer.Exit(code=2)
    problems = (FileNotFoundError, ValueError, MusicNetFormatError)
    try:
        pairs = pair_label_files(ref, pred)
    except problems as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    scores, failed = {}, []
    for r, p in pairs:  # one bad file never stops the others: it is listed at the end
        try:
            scores[r.stem] = score_label_files(
                r, p, rate, onset_tolerance, offset_ratio, ref_rate, est_rate
            )
        except problems as exc:
            failed.append(str(exc))
    if not scores:
        typer.echo("\n".join(f"Error: {why}" for why in failed), err=True)
        raise typer.Exit(code=1)
    mean = mean_metrics(list(scores.values()))

    table = Table("file", "metric", "precision", "recall", "F1", title=f"{pred} vs {ref}")
    for name, row in [*scores.items(), ("mean", mean)]:
        _add_rows(table, name, row, style="bold" if name == "mean" and len(scores) > 1 else None)
    Console().print(table)
    if json_out is not None:
        write_json(json_out, {"files": scores, "mean": mean, "failed": failed})
    if failed:
        typer.echo(
            f"Error: {len(failed)} of {len(pairs)} file pairs not scored (the mean is over the "
            "others):\n" + "\n".join(f"  {why}" for why in failed),
            err=True,
        )
        raise typer.Exit(code=1)


def _add_rows(table, name: str, scores: dict[str, float], style: str | None) -> None:
    """One table section per file: a row of P/R/F1 for each metric kind."""
    for i, (prefix, label) in enumerate(KINDS.items()):
        cells = [f"{scores[f'{prefix}/{m}']:.3f}" for m in ("precision", "recall", "f1")]
        table.add_row(
            name if i == 0 else "", label, *cells, style=style, end_section=i == len(KINDS) - 1
        )


if __name__ == "__main__":
    import typer

    run(main)
