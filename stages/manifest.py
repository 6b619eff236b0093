"""manifest stage: one row per segment with its split, features path and targets; feature stats."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(Path("params.yaml"), help="Params file (reads split.*)."),
    features: Path = typer.Option(
        Path("data/features"), help="Segment stage output (tracks.parquet, segments.parquet)."
    ),
    tokens: Path = typer.Option(
        Path("data/tokens"), help="Tokenize stage output folder (tokens.parquet)."
    ),
    out: Path = typer.Option(
        Path("data/manifest.parquet"),
        help="Manifest to write; the per-bin feature mean/std over the train split go beside it "
        "as feature_stats.npz, where training reads them.",
    ),
) -> None:
    """Split tracks (val = train tracks held out by split.seed), join segments with tokens, save feature stats."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from mtlib.dataset import (
        SplitConfig,
        build_manifest,
        feature_stats,
        feature_stats_path,
        save_feature_stats,
        split_summary,
        write_manifest,
    )
    from mtlib.params import config_from, load_params, section

    cfg = config_from(SplitConfig, section(load_params(params), "split"), "split")
    manifest = build_manifest(features, tokens / "tokens.parquet", cfg)
    train_paths = manifest.loc[manifest.split == "train", "features"].unique().tolist()
    mean, std = feature_stats(train_paths)
    write_manifest(manifest, out)
    save_feature_stats(feature_stats_path(out), mean, std)
    summary = split_summary(manifest, pd.read_parquet(features / "tracks.parquet"))
    table = Table("split", "tracks", "segments", "minutes", title=str(out))
    for row in summary.itertuples():
        table.add_row(row.split, str(row.tracks), str(row.segments), f"{row.minutes:.1f}")
    Console().print(table)


if __name__ == "__main__":
    import typer

    run(main)
