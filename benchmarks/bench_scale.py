"""Scale benchmark (issue 15, point 7): a MusicNet-sized corpus through segment, tokenize and
manifest, then one pass of the training data loader; wall time, peak memory and disk at 1x, 10x
and 40x the demo's audio, to see how each grows on the way to real MusicNet (330 tracks, ~34 h).

The corpus is synthetic, built from the demo data (`dvc repro demo_data` first):

* 1x: every demo track (train, test and test_unseen: 87 tracks, ~61 min) concatenated, in id
  order, into tracks of about MusicNet's mean length (~6 min; `--base-minutes`), with their label
  CSVs joined at the same sample offsets. So the per-track costs are those of real MusicNet
  files, not of the demo's ~42 s pieces.
* k x: k copies of the 1x tracks under new ids, as hard links (no new disk: 40x of 44.1 kHz
  16-bit audio is ~13 GB). Every stage reads, featurises and tokenizes each copy in full; no
  stage caches by content. One track in ten goes to test_data/ (MusicNet: 10 of 330).

Each stage runs as the DVC stage command does (`python -m stages.<name>`, the repo's params.yaml
with `data.root` pointing at the corpus), in a child process. Peak memory is measured two ways:
the largest resident set of any one process (getrusage of the waited-for children: the stage
and each of its pool workers) and the largest sum over the stage's process tree (psutil, sampled
every 0.2 s), the latter also without file-backed pages ("anon": resident memory less the
memory-mapped feature files and libraries, which the kernel can drop and read again). Disk is
the size of what the stage wrote.

Usage: .venv/bin/python -m benchmarks.bench_scale --scales 1,10,40 --work /tmp/scale --out scale.json
(--work is emptied; the page cache holds the 1x audio after its first read, as it would hold
all of real MusicNet on a 24 GiB machine after one epoch.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import typer
import yaml

REPO = Path(__file__).resolve().parents[1]


def build_base(demo_root: Path, out: Path, base_minutes: float) -> list[tuple[Path, Path]]:
    """The 1x corpus: every demo track (all splits, in `list_tracks` order) concatenated into
    ~base_minutes tracks (audio + joined labels)."""
    from mtlib.musicnet import list_tracks

    out.mkdir(parents=True)
    groups, current, seconds = [], [], 0.0
    for track in list_tracks(demo_root):
        current.append((track.audio, track.labels))
        seconds += sf.info(track.audio).duration
        if seconds >= base_minutes * 60:
            groups.append(current)
            current, seconds = [], 0.0
    if current:
        groups.append(current)
    base = []
    for k, group in enumerate(groups):
        audio, labels, offset, beats = [], [], 0, 0.0
        for wav, csv in group:
            samples, rate = sf.read(wav, dtype="int16")
            df = pd.read_csv(csv)
            df[["start_time", "end_time"]] += offset
            df[["start_beat", "end_beat"]] += beats
            audio.append(samples)
            labels.append(df)
            offset += len(samples)
            beats = float(df["end_beat"].max()) + 1.0 if len(df) else beats
        wav_out, csv_out = out / f"{k}.wav", out / f"{k}.csv"
        sf.write(wav_out, np.concatenate(audio), rate, subtype="PCM_16")
        pd.concat(labels).sort_values(["start_time", "note"]).to_csv(csv_out, index=False)
        base.append((wav_out, csv_out))
    return base


def build_corpus(base: list[tuple[Path, Path]], root: Path, scale: int) -> dict:
    """`scale` copies of the base tracks (hard links) in MusicNet's layout under `root`."""
    for split in ("train", "test"):
        (root / f"{split}_data").mkdir(parents=True)
        (root / f"{split}_labels").mkdir(parents=True)
    n = 0
    for _ in range(scale):
        for wav, csv in base:
            split = "test" if n % 10 == 9 else "train"
            os.link(wav, root / f"{split}_data" / f"{n + 1}.wav")
            os.link(csv, root / f"{split}_labels" / f"{n + 1}.csv")
            n += 1
    seconds = scale * sum(sf.info(wav).duration for wav, _ in base)
    return {"tracks": n, "hours": seconds / 3600}


def measure(cmd: list[str], cwd: Path) -> dict:
    """Run `cmd` in a child process: wall seconds, the largest single-process RSS (MB), and the
    largest process-tree RSS (MB) while it ran, with and without file-backed pages. Exits on a
    failure, with its output."""
    import psutil

    wrapper = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, *cmd],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    tree_peak, done = [0, 0], threading.Event()  # (resident, resident less file-backed)

    def sample():
        root = psutil.Process(proc.pid)
        while not done.wait(0.2):
            try:
                mem = [p.memory_info() for p in [root, *root.children(recursive=True)]]
                tree_peak[0] = max(tree_peak[0], sum(m.rss for m in mem))
                tree_peak[1] = max(tree_peak[1], sum(m.rss - m.shared for m in mem))
            except psutil.Error:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr}")
    peak_kb = int(stderr.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "peak_process_mb": peak_kb / 1024,
        "peak_tree_mb": tree_peak[0] / 2**20,
        "peak_tree_anon_mb": tree_peak[1] / 2**20,
    }


def disk_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return total / 2**20


def run_scale(base, work: Path, scale: int) -> dict:
    """One scale: corpus, the three stages and the loader pass, each measured."""
    root = work / f"x{scale}"
    corpus = build_corpus(base, root / "musicnet", scale)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(root / "musicnet")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    py = sys.executable
    stages = {
        "segment": [py, "-m", "stages.segment", "--out", "features"],
        "tokenize": [py, "-m", "stages.tokenize", "--features", "features", "--out", "tokens"],
        "manifest": [py, "-m", "stages.manifest", "--features", "features", "--tokens", "tokens"]
        + ["--out", "manifest.parquet"],
        "loader": [py, "-m", "benchmarks.bench_scale", "loader", "manifest.parquet", "tokens"],
    }
    outputs = {
        "segment": ["features"],
        "tokenize": ["tokens"],
        "manifest": ["manifest.parquet", "feature_stats.npz"],
        "loader": [],
    }
    result = {"scale": scale, **corpus, "stages": {}}
    for name, cmd in stages.items():
        row = measure(cmd, root)
        row["disk_mb"] = disk_mb(*(root / p for p in outputs[name]))
        result["stages"][name] = row
        print(f"x{scale} {name}: {json.dumps(row)}", flush=True)
    return result


app = typer.Typer(add_completion=False, help=__doc__)


@app.command("run")
def run(
    scales: str = typer.Option("1,10,40", help="Multiples of the demo's audio, comma-separated."),
    work: Path = typer.Option(Path("/tmp/bench_scale"), help="Scratch folder (emptied first)."),
    demo: Path = typer.Option(REPO / "data/musicnet_demo", help="The demo data (MusicNet layout)."),
    base_minutes: float = typer.Option(6.0, help="Length of each concatenated 1x track."),
    keep: bool = typer.Option(False, help="Keep each scale's outputs (else deleted after it)."),
    out: Path = typer.Option(Path("bench_scale.json"), help="JSON results."),
) -> None:
    """Build the corpus at each scale and measure segment, tokenize, manifest and a loader pass."""
    shutil.rmtree(work, ignore_errors=True)
    base = build_base(demo, work / "base", base_minutes)
    results = []
    for scale in (int(x) for x in scales.split(",")):
        results.append(run_scale(base, work, scale))
        out.write_text(json.dumps({"machine": machine(), "runs": results}, indent=2))
        if not keep:
            shutil.rmtree(work / f"x{scale}")
    print(table(results))


@app.command("loader")
def loader(manifest: Path, tokens: Path) -> None:
    """One pass of the CTC training loader (train split, default train.augment, batch 16)."""
    import functools

    import torch

    from mtlib.augment import AugmentConfig, AugmentedDataset
    from mtlib.dataset import BucketBatchSampler, SegmentDataset, collate
    from mtlib.pipeline import load_vocab

    vocab = load_vocab(tokens)
    train = SegmentDataset(pd.read_parquet(manifest), "train")
    aug = AugmentedDataset(train, AugmentConfig(), 0, vocab)
    aug.set_epoch(1)
    sampler = BucketBatchSampler(train.lengths("n_frames"), 16, shuffle=True, seed=0)
    sampler.set_epoch(1)
    col = functools.partial(collate, vocab=vocab)
    frames = 0
    for batch in torch.utils.data.DataLoader(aug, batch_sampler=sampler, collate_fn=col):
        frames += int(batch["feature_lengths"].sum())
    print(f"{len(train)} segments, {frames} frames", file=sys.stderr)


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(results: list[dict]) -> str:
    """Markdown: one row per (stage, scale), with time and memory relative to the first scale."""
    first = {name: row for name, row in results[0]["stages"].items()}
    lines = [
        "| stage | scale | tracks | audio h | wall s | x first | peak process MB | peak tree MB "
        "| peak tree anon MB | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in first:
        for r in results:
            row = r["stages"][name]
            ratio = row["wall_s"] / max(first[name]["wall_s"], 1e-9)
            lines.append(
                f"| {name} | {r['scale']}x | {r['tracks']} | {r['hours']:.1f} | {row['wall_s']:.1f} | "
                f"{ratio:.1f} | {row['peak_process_mb']:.0f} | {row['peak_tree_mb']:.0f} | "
                f"{row['peak_tree_anon_mb']:.0f} | {row['disk_mb']:.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    app()
