"""Transcription speed and memory: real-time factor per model and decoder, peak memory on an hour.

rtf: every test track of the manifest transcribed from its audio file (features included, as
     `mt transcribe` does it) with each decoder, on the CPU with `--threads` threads; seconds of
     audio per wall second, median of `--runs`.
memory: `mt transcribe` run as a child process on a generated file (`--hours` of 44.1 kHz stereo
     16-bit WAV: the demo test tracks concatenated and repeated) and on a 10 s excerpt; peak RSS of
     each from getrusage. The difference is what grows with the input; compare it with the hour's
     features (T x n_bins float32) the transcriber must hold.

    .venv/bin/python -m benchmarks.bench_transcribe --runs 3          # from the repo root, after `dvc repro`
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DECODERS = {
    "ctc": [{"ctc_decoder": "greedy"}, {"ctc_decoder": "beam"}],
    "seq2seq": [{"s2s_decoder": "constrained"}, {"s2s_decoder": "greedy"}, {"s2s_decoder": "beam"}],
}


def rtf_rows(runs: int, threads: int) -> list[str]:
    import torch

    from mtlib.pipeline import load_tracks
    from mtlib.transcriber import Transcriber

    torch.set_num_threads(threads)
    tracks = load_tracks("data/manifest.parquet", "data/features", "test")
    audio_s = sum(t.duration for t in tracks)
    rows = []
    for kind, variants in DECODERS.items():
        base = Transcriber.load(f"data/models/{kind}.pt", device="cpu")
        for change in variants:
            transcriber = base.with_decoding(**change)

            def once(transcriber) -> float:
                t0 = time.perf_counter()
                for t in tracks:
                    transcriber(t.audio)
                return time.perf_counter() - t0

            wall = statistics.median(once(transcriber) for _ in range(runs))
            name = next(iter(change.values()))
            rows.append(
                f"| {kind} | {name} | {audio_s / 60:.1f} min | {wall:.1f} s | {audio_s / wall:.1f}x |"
            )
            print(rows[-1], flush=True)
    return rows


def make_long_wav(path: Path, hours: float) -> float:
    """Concatenate the demo test tracks (stereo, 44.1 kHz, 16-bit) until `hours` long; streamed."""
    import soundfile as sf

    from mtlib.pipeline import load_tracks

    tracks = load_tracks("data/manifest.parquet", "data/features", "test")
    target = int(hours * 3600 * 44100)
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=44100, channels=2, subtype="PCM_16") as out:
        while written < target:
            for t in tracks:
                audio, rate = sf.read(t.audio, dtype="float32", always_2d=True)
                assert rate == 44100, t.audio
                audio = audio[: target - written]
                out.write(np.repeat(audio[:, :1], 2, axis=1))
                written += len(audio)
                if written >= target:
                    break
    return written / 44100


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of a child process (run one at a time: RUSAGE_CHILDREN is a max)."""
    t0 = time.perf_counter()
    pid = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def memory_rows(hours: float, models: list[str]) -> list[str]:
    import soundfile as sf

    from mtlib.transcriber import Transcriber

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seconds = make_long_wav(tmp / "long.wav", hours)
        data, rate = sf.read(str(tmp / "long.wav"), frames=10 * 44100, dtype="int16")
        sf.write(str(tmp / "short.wav"), data, rate, subtype="PCM_16")
        mt = str(Path(sys.executable).with_name("mt"))
        for kind in models:
            fcfg = Transcriber.load(f"data/models/{kind}.pt", device="cpu").features
            feat_mb = (seconds * fcfg.sample_rate / fcfg.hop_length + 1) * fcfg.n_bins * 4 / 2**20
            short, _ = peak_rss_mb(
                [
                    mt,
                    "transcribe",
                    str(tmp / "short.wav"),
                    "--model",
                    kind,
                    "--out",
                    str(tmp / "o"),
                    "--device",
                    "cpu",
                ]
            )
            long, wall = peak_rss_mb(
                [
                    mt,
                    "transcribe",
                    str(tmp / "long.wav"),
                    "--model",
                    kind,
                    "--out",
                    str(tmp / "o"),
                    "--device",
                    "cpu",
                ]
            )
            rows.append(
                f"| {kind} | {seconds / 3600:.2f} h ({(tmp / 'long.wav').stat().st_size / 2**20:.0f} MB WAV) | "
                f"{short:.0f} MB | {long:.0f} MB | {long - short:.0f} MB | {feat_mb:.0f} MB | "
                f"{(long - short) / feat_mb:.1f} | {wall:.0f} s |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--skip-rtf", action="store_true")
    ap.add_argument("--memory-models", nargs="*", default=["ctc", "seq2seq"])
    args = ap.parse_args()
    if not args.skip_rtf:
        print(
            "| model | decoder | audio | wall (median) | real-time factor |\n|---|---|---|---|---|"
        )
        rtf_rows(args.runs, args.threads)
    if args.memory_models:
        print(
            "\n| model | input | peak RSS, 10 s input | peak RSS, long input | growth | its features | growth / features | wall |"
        )
        print("|---|---|---|---|---|---|---|---|")
        memory_rows(args.hours, args.memory_models)


if __name__ == "__main__":
    main()
