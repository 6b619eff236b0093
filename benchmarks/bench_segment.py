"""Segment stage throughput: seconds of audio featurized per wall second, against the floor.

Writes synthetic 60 s, 44.1 kHz mono tracks (decaying sines, MusicNet layout) to a temporary
folder, then times, as the median of several runs after one warm-up:
  read            soundfile read alone (mtlib.audio.load_audio at the file's rate)
  read+resample   the floor: read and resample to audio.sample_rate
  per-track path  mtlib.segments.featurize_track: read, resample, log-mel, float16 .npy save
  W warm workers  the same two over a started pool of W spawned processes (what the stage's
                  workers do once running): the floor and mtlib.segments.featurize_track_job
  stage end to end  mtlib.segments.featurize_tracks, pool start-up included
  start-up        spawning W workers and their first job (imports of torch + librosa, warm-up)

    .venv/bin/python -m benchmarks.bench_segment --tracks 16 --stage-tracks 64 --runs 5   # from the repo root
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_tracks(root: Path, n_tracks: int, seconds: float, rate: int, distinct: int = 8):
    """N MusicNet-layout tracks of random decaying sine notes; returns their Track records.

    Only `distinct` signals are synthesised (slow in numpy); further tracks are file copies."""
    import shutil

    from mtlib.audio import write_wav
    from mtlib.musicnet import list_tracks, write_labels
    from mtlib.notes import Note

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n_tracks):
        if i >= distinct:
            for folder, suffix in (("train_data", ".wav"), ("train_labels", ".csv")):
                shutil.copy(
                    root / folder / f"{i % distinct}{suffix}", root / folder / f"{i}{suffix}"
                )
            continue
        notes = [
            Note(float(on), float(on) + 0.5, int(p), 1)
            for on, p in zip(np.sort(rng.uniform(0, seconds - 1, 200)), rng.integers(40, 90, 200))
        ]
        audio = np.zeros(t.size, dtype=np.float32)
        for n in notes:
            m = (t >= n.onset) & (t < n.offset)
            audio[m] += (
                0.1
                * np.sin(2 * np.pi * 440 * 2 ** ((n.pitch - 69) / 12) * (t[m] - n.onset))
                * np.exp(-4 * (t[m] - n.onset))
            )
        write_wav(root / "train_data" / f"{i}.wav", audio, rate)
        write_labels(root / "train_labels" / f"{i}.csv", notes, rate)
    (root / "test_data").mkdir()
    (root / "test_labels").mkdir()
    return list_tracks(root)


def median_seconds(fn, runs: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()  # imports, numba caches, mel filter bank
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_and_resample(path: Path, rate: int) -> int:
    """The floor inside a worker: decode + resample, returning only the length (no transfer)."""
    from mtlib.audio import load_audio

    return len(load_audio(path, rate)[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracks", type=int, default=16, help="tracks for the single-process rows")
    parser.add_argument(
        "--stage-tracks", type=int, default=64, help="tracks for the worker-pool rows"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each track")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--hop", type=int, default=512, help="audio.hop_length")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (segment.workers)")
    args = parser.parse_args()

    import concurrent.futures as cf
    import multiprocessing

    import torch

    from mtlib.audio import load_audio
    from mtlib.features import FeatureConfig
    from mtlib.segments import (
        SegmentConfig,
        featurize_track,
        featurize_track_job,
        featurize_tracks,
        init_worker,
    )

    torch.set_num_threads(1)  # what each stage worker uses
    cfg = FeatureConfig(hop_length=args.hop)
    seg = SegmentConfig(4.0, 2.0, workers=args.workers)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        tracks = make_tracks(Path(tmp) / "musicnet", args.stage_tracks, args.seconds, 44100)
        tiny = make_tracks(Path(tmp) / "tiny", args.workers, 1.0, 44100)
        out = str(Path(tmp) / "features")
        few = tracks[: args.tracks]
        results = [
            (name, len(timed), median_seconds(fn, args.runs))
            for name, timed, fn in [
                ("read", few, lambda: [load_audio(t.audio) for t in few]),
                (
                    "read+resample (floor)",
                    few,
                    lambda: [load_audio(t.audio, cfg.sample_rate) for t in few],
                ),
                ("per-track path", few, lambda: [featurize_track(t, out, cfg, seg) for t in few]),
            ]
        ]

        def pool_start() -> (
            None
        ):  # spawn W workers and run the first job on each (imports, warm-up)
            with cf.ProcessPoolExecutor(
                args.workers, mp_context=spawn, initializer=init_worker
            ) as pool:
                list(
                    pool.map(
                        featurize_track_job,
                        tiny,
                        [out] * len(tiny),
                        [cfg] * len(tiny),
                        [seg] * len(tiny),
                        [out] * len(tiny),
                    )
                )

        n = len(tracks)
        with cf.ProcessPoolExecutor(
            args.workers, mp_context=spawn, initializer=init_worker
        ) as pool:
            results += [
                (name, n, median_seconds(fn, args.runs))
                for name, fn in [
                    (
                        f"{args.workers} warm workers: floor",
                        lambda: list(
                            pool.map(
                                read_and_resample, [t.audio for t in tracks], [cfg.sample_rate] * n
                            )
                        ),
                    ),
                    (
                        f"{args.workers} warm workers: per-track",
                        lambda: list(
                            pool.map(
                                featurize_track_job,
                                tracks,
                                [out] * n,
                                [cfg] * n,
                                [seg] * n,
                                [out] * n,
                            )
                        ),
                    ),
                ]
            ]
        results.append(
            (
                f"stage end to end, {args.workers} procs",
                n,
                median_seconds(
                    lambda: featurize_tracks(tracks, out, cfg, seg, out), args.runs, warm_up=False
                ),
            )
        )
        startup = median_seconds(pool_start, args.runs, warm_up=False)
    floor = results[1][2] / results[1][1]  # seconds per track, one process
    print(
        f"tracks of {args.seconds:.0f} s at 44.1 kHz -> {cfg.sample_rate} Hz, hop {cfg.hop_length}, "
        f"{cfg.n_mels} mels; median of {args.runs} runs; torch threads 1 per process"
    )
    print(
        f"{'path':<34}{'tracks':>7}{'wall s':>9}{'audio s / wall s':>18}{'ms per 60 s':>13}{'x floor time':>14}"
    )
    for name, n_tracks, seconds in results:
        audio_seconds = n_tracks * args.seconds
        print(
            f"{name:<34}{n_tracks:>7}{seconds:>9.3f}{audio_seconds / seconds:>18.0f}"
            f"{1000 * seconds / audio_seconds * 60:>13.1f}{seconds / n_tracks / floor:>14.2f}"
        )
    print(
        f"worker pool start-up (spawn + imports + first job, fixed per stage run): {startup:.2f} s"
    )


if __name__ == "__main__":
    main()
