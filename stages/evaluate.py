"""evaluate stage: both models on whole test tracks; metrics/ctc.json and metrics/seq2seq.json."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(Path("params.yaml"), help="Params file (reads eval.*)."),
    models: Path = typer.Option(Path("data/models"), help="Folder with ctc.pt and seq2seq.pt."),
    sweep: Path = typer.Option(
        Path("data/sweep"), help="Folder with the decode_sweep stage's best_<model>.json."
    ),
    manifest: Path = typer.Option(
        Path("data/manifest.parquet"), help="Manifest (its test split is evaluated)."
    ),
    features: Path = typer.Option(
        Path("data/features"), help="Feature folder of the segment stage (track table)."
    ),
    out: Path = typer.Option(
        Path("data/predictions"),
        help="Predictions: <model>/<track>.mid and .csv (MusicNet format).",
    ),
    metrics: Path = typer.Option(
        Path("metrics"),
        help="Folder for <model>.json, per_track_<model>.csv, onset_errors_<model>.csv.",
    ),
    plots: Path = typer.Option(
        Path("plots/pianorolls"), help="Folder for piano-roll PNGs (reference vs prediction)."
    ),
) -> None:
    """Evaluate both models on whole test tracks with mir_eval and write predictions and plots."""
    from mtlib.evaluate import evaluate_stage

    evaluate_stage(params, models, sweep, manifest, features, out, metrics, plots)


if __name__ == "__main__":
    run(main)
