"""Stage demo_data: render the built-in demo dataset (music21 scores → SoundFont audio) in the
MusicNet layout."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run


def main(
    params: Path = typer.Option(
        Path("params.yaml"), "--params", help="Params file; this stage reads its `demo:` section."
    ),
    out: Path = typer.Option(
        Path("data/musicnet_demo"), "--out", help="Folder to write (replaced whole, atomically)."
    ),
) -> None:
    """Build the demo dataset: Bach chorales, string quartets and piano pieces from the music21
    corpus (with demo.extra_pools, training also gets Renaissance polyphony, accompanied solos
    and more piano pieces), played by a sampled grand piano and General MIDI SoundFonts through a random room,
    EQ, noise and level, into MusicNet's layout; plus `test_unseen`, the test pieces in a timbre
    and a room that training never hears, and `test_recorded`, the test pieces played on
    recordings of a real piano, strings and reeds that training never hears."""
    import time
    import warnings

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mtlib.demo import DemoConfig, DemoWarning, build_demo, check_sources, composition
    from mtlib.io import atomic_dir
    from mtlib.params import config_from, load_params, section

    cfg = config_from(DemoConfig, section(load_params(params), "demo"), "demo")
    check_sources(cfg)  # fail before any work if a SoundFont or the piano samples are missing
    console = Console(stderr=True)
    started = time.perf_counter()
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.1f}/{task.total:.1f} min"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
        atomic_dir(out) as tmp,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("always", DemoWarning)
        total = cfg.train_minutes + cfg.test_minutes * (
            1 + bool(cfg.unseen_soundfont) + bool(cfg.recorded_test)
        )
        task = progress.add_task("demo data", total=total)
        tracks = build_demo(
            tmp,
            cfg,
            lambda t: progress.update(
                task, advance=t.seconds / 60.0, description=f"{t.split} {t.path}"
            ),
        )
    console.print(f"wrote {len(tracks)} tracks to {out} in {time.perf_counter() - started:.1f} s")
    for split, rows in sorted(composition(tracks).items()):
        for ensemble, row in sorted(rows.items()):
            console.print(
                f"  {split:5s} {ensemble:15s} {int(row['pieces']):3d} pieces {row['minutes']:6.1f} min"
            )


if __name__ == "__main__":
    import typer

    run(main)
