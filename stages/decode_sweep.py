"""decode_sweep stage: a grid over decoding params, scored by note F1 on whole val tracks."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(
        Path("params.yaml"),
        help="Params file (reads decode.* as the base config and sweep.<model> as the grid).",
    ),
    models: Path = typer.Option(Path("data/models"), help="Folder with ctc.pt and seq2seq.pt."),
    manifest: Path = typer.Option(
        Path("data/manifest.parquet"), help="Manifest (its val split is swept)."
    ),
    features: Path = typer.Option(
        Path("data/features"), help="Feature folder of the segment stage."
    ),
    out: Path = typer.Option(
        Path("data/sweep"), help="Output folder: best_ctc.json and best_seq2seq.json."
    ),
    plots: Path = typer.Option(
        Path("plots"), help="Folder for the sweep tables sweep_<model>.csv (dvc plots)."
    ),
) -> None:
    """Score every decoding config of the sweep grid on the val split; keep the best per model."""
    from mtlib.sweep import sweep_stage

    sweep_stage(params, models, manifest, features, out, plots)


if __name__ == "__main__":
    run(main)
