"""train_ctc stage: train the CTC model on the manifest's train split."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(
        Path("params.yaml"),
        help="Params file (reads model.encoder, model.ctc, train.common, train.ctc, train.augment).",
    ),
    manifest: Path = typer.Option(
        Path("data/manifest.parquet"), help="Manifest written by the manifest stage."
    ),
    features: Path = typer.Option(
        Path("data/features"), help="Feature folder written by the segment stage."
    ),
    tokens: Path = typer.Option(
        Path("data/tokens"), help="Token folder written by the tokenize stage (for its vocabulary)."
    ),
    out: Path = typer.Option(
        Path("data/models/ctc.pt"), help="Where the best checkpoint (by val note F1) is written."
    ),
    live: Path = typer.Option(Path("dvclive/ctc"), help="dvclive folder for per-epoch curves."),
    resume: Path = typer.Option(
        Path("data/resume/ctc.pt"),
        help="Last-epoch state, picked up after an interruption; removed when training ends.",
    ),
) -> None:
    """Train the CTC model; keep the best checkpoint by val note F1."""
    from mtlib.train import train_stage

    train_stage("ctc", params, manifest, features, tokens, out, live, resume)


if __name__ == "__main__":
    run(main)
