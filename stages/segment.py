"""segment stage: features per track (log-mel or log-CQT, `audio.features`; float16 .npy) and the segment index."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(
        Path("params.yaml"), help="Params file (reads data.root, data.labels, audio.*, segment.*)."
    ),
    out: Path = typer.Option(
        Path("data/features"), help="Output folder: <track>.npy, tracks.parquet, segments.parquet."
    ),
) -> None:
    """Featurize every MusicNet track under data.root and index its segments (written atomically)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from mtlib.features import FeatureConfig
    from mtlib.io import atomic_dir
    from mtlib.musicnet import list_tracks, read_track
    from mtlib.params import config_from, load_params, section
    from mtlib.segments import SegmentConfig, featurize_tracks, write_feature_config, write_index

    p = load_params(params)
    root = Path(section(p, "data.root"))
    cfg = config_from(FeatureConfig, section(p, "audio"), "audio")
    seg = config_from(SegmentConfig, section(p, "segment"), "segment")
    labels = section(p, "data").get("labels", "original")  # params files from before data.labels
    tracks = list_tracks(root, labels=labels)
    if not tracks:
        raise typer.BadParameter(f"{root}: no tracks found", param_hint="data.root")
    for track in tracks:  # fail fast on a bad label file, before any audio is decoded
        read_track(track)
    console = Console(stderr=True)
    columns = (TextColumn("segment"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with atomic_dir(out) as tmp, Progress(*columns, console=console) as progress:
        task = progress.add_task("tracks", total=len(tracks))
        results = featurize_tracks(
            tracks, tmp, cfg, seg, out, on_done=lambda _: progress.advance(task)
        )
        write_index(results, tmp)
        write_feature_config(tmp / "config.json", cfg, seg)
    seconds = sum(r.duration for r in results)
    n_segments = sum(len(r.starts) for r in results)
    console.print(
        f"{len(results)} tracks, {seconds / 60:.1f} min of audio, {n_segments} segments → {out}"
    )


if __name__ == "__main__":
    import typer

    run(main)
