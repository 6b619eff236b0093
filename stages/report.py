"""report stage: one offline page per run, both models side by side, with A/B audio."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(
        Path("params.yaml"), help="Params file (reads report.* and eval.splits)."
    ),
    metrics: Path = typer.Option(
        Path("metrics"), help="The evaluate stage's <model>[_unseen].json and per-track CSVs."
    ),
    sweep_plots: Path = typer.Option(
        Path("plots"), help="Folder with decode_sweep's sweep_<model>.csv tables."
    ),
    sweep: Path = typer.Option(
        Path("data/sweep"), help="Folder with best_<model>.json (marks the chosen setting)."
    ),
    live: Path = typer.Option(
        Path("dvclive"), help="dvclive folder of the train stages (<model>/plots/metrics)."
    ),
    pianorolls: Path = typer.Option(
        Path("plots/pianorolls"), help="The evaluate stage's piano-roll PNGs."
    ),
    predictions: Path = typer.Option(
        Path("data/predictions"), help="The evaluate stage's <model>/<track>.csv predictions."
    ),
    manifest: Path = typer.Option(
        Path("data/manifest.parquet"), help="Manifest (which tracks each split holds)."
    ),
    features: Path = typer.Option(
        Path("data/features"), help="Feature folder of the segment stage (where each recording is)."
    ),
    out: Path = typer.Option(
        Path("plots/report"), help="Output folder: index.html and audio/<model>_<track>.ab.flac."
    ),
) -> None:
    """Write the run's report page: metrics per test split, training curves, the decode sweep,
    per-track note F1, piano rolls and A/B audio (recording left, transcription right) of the
    first test tracks. Scripts are inlined: the page opens in a browser with no network."""
    from mtlib.report import RunFiles, write_report

    files = RunFiles(metrics, sweep_plots, sweep, live, pianorolls, predictions, manifest, features)
    write_report(params, files, out)


if __name__ == "__main__":
    run(main)
