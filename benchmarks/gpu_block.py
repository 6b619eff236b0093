"""README's GPU block through the pipeline's own stage commands on a slice of the demo data
(issue 15, point 5): AMP training of both models, the decode sweep, evaluation, and training
throughput, on a GPU machine, against the CPU.

    .venv/bin/python -m benchmarks.gpu_block prepare --dir .gpu        # here, after `dvc repro demo_data`
    python -m benchmarks.gpu_block run --dir .gpu --out OUT            # on the GPU machine
    .venv/bin/python -m benchmarks.gpu_block run --dir .gpu --out OUT --device cpu --ctc-epochs 1 \\
        --seq2seq-epochs 1 --steps 2                                   # a dry run of `run` on the CPU

prepare  merges the README's "Real MusicNet on one GPU" yaml block into params.yaml key by key
         (as `dvc exp run -S` would set them) into DIR/params.yaml; builds DIR/root, a MusicNet
         root holding the first train tracks by id up to --train-minutes of audio and test
         tracks up to --test-minutes (train audio linked to the demo's, test audio copied as
         FLAC, labels and metadata copied); and runs segment,
         tokenize and manifest into DIR with their `python -m stages.*` commands. A slice, because
         what travels to the lent GPU machine is capped at 64 MiB and the block's features (229
         log-mel bins at hop 256, float16) take 103 MB per audio hour, and evaluate needs the test audio.
run      writes DIR/run.yaml (DIR/params.yaml with this run's device, epochs, worker count and
         seq2seq.init_encoder) and runs train_ctc, train_seq2seq, decode_sweep and evaluate as
         `dvc repro` would (the commands of dvc.yaml, pointed at DIR), timing each and keeping the
         tail of any failure; then `benchmarks.bench_train` on the same data (steps/s of the
         train stage's own step, AMP on CUDA). Writes OUT/gpu_block.json, OUT/<model>.json
         (evaluate's metrics) and OUT/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def readme_block() -> dict:
    """The yaml block under README's "Real MusicNet on one GPU" heading."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Real MusicNet on one GPU") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    if not match:
        raise SystemExit("README.md: no ```yaml block under 'Real MusicNet on one GPU'")
    return yaml.safe_load(match.group(1))


def merge(base: dict, over: dict) -> dict:
    """`over`'s keys set into `base` one by one (nested mappings merged, everything else replaced)."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merge(base[key], value) if nested else value
    return out


def stage(name: str, *args: str | Path, params: Path) -> list[str]:
    return [sys.executable, "-m", f"stages.{name}", "--params", str(params), *map(str, args)]


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd` from the repo root, its output to `log`: {seconds, rc, tail}."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    tail = log.read_text(errors="replace")[-1500:]
    print(f"{' '.join(cmd[2:4])}: rc {rc}, {seconds:.1f} s", flush=True)
    if rc:
        print(tail, flush=True)
    return {"seconds": round(seconds, 2), "rc": rc, "tail": tail if rc else ""}


def slice_root(demo: Path, root: Path, minutes: dict[str, float]) -> dict[str, float]:
    """DIR/root: per split, the first tracks by id up to `minutes[split]` of audio. Train audio
    is linked (only its features travel); test audio is copied as FLAC (lossless for the demo's
    16-bit PCM, half the bytes), since evaluate transcribes the test tracks from their audio."""
    import soundfile as sf

    shutil.rmtree(root, ignore_errors=True)
    taken = dict.fromkeys(minutes, 0.0)
    for split, limit in minutes.items():
        (root / f"{split}_data").mkdir(parents=True)
        (root / f"{split}_labels").mkdir(parents=True)
        for wav in sorted((demo / f"{split}_data").glob("*.wav"), key=lambda p: int(p.stem)):
            length = sf.info(wav).duration / 60
            if taken[split] + length > limit:
                continue
            taken[split] += length
            if split == "train":
                (root / f"{split}_data" / wav.name).symlink_to(wav.resolve())
            else:
                data, rate = sf.read(wav, dtype="int16")
                sf.write(root / f"{split}_data" / f"{wav.stem}.flac", data, rate, subtype="PCM_16")
            label = demo / f"{split}_labels" / f"{wav.stem}.csv"
            shutil.copy(label, root / f"{split}_labels" / label.name)
    if (demo / "musicnet_metadata.csv").exists():
        shutil.copy(demo / "musicnet_metadata.csv", root / "musicnet_metadata.csv")
    return taken


def prepare(args) -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = merge(base, readme_block())
    demo = REPO / base["data"]["root"]
    root = args.dir / "root"
    params["data"]["root"] = str(root)
    params["segment"]["workers"] = args.workers
    args.dir.mkdir(parents=True, exist_ok=True)
    taken = slice_root(demo, root, {"train": args.train_minutes, "test": args.test_minutes})
    print(f"{root}: " + ", ".join(f"{split} {m:.1f} min" for split, m in taken.items()))
    p = args.dir / "params.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    feats, tokens = args.dir / "features", args.dir / "tokens"
    for cmd in (
        stage("segment", "--out", feats, params=p),
        stage("tokenize", "--features", feats, "--out", tokens, params=p),
        stage(
            "manifest",
            *("--features", feats, "--tokens", tokens, "--out", args.dir / "manifest.parquet"),
            params=p,
        ),
    ):
        if subprocess.run(cmd, cwd=REPO).returncode:
            raise SystemExit(f"failed: {' '.join(cmd)}")


def run_params(args, models: Path) -> Path:
    """DIR/run.yaml: this run's device, epochs and workers; Seq2Seq starts from this run's CTC."""
    params = yaml.safe_load((args.dir / "params.yaml").read_text())
    common = params["train"]["common"]
    common["device"] = args.device
    if args.device == "cpu":
        common.update(threads=2, num_workers=0)
    params["train"]["ctc"]["epochs"] = args.ctc_epochs
    params["train"]["seq2seq"]["epochs"] = args.seq2seq_epochs
    params["train"]["seq2seq"]["init_encoder"] = str(models / "ctc.pt")
    p = args.dir / "run.yaml"
    p.write_text(yaml.safe_dump(params, sort_keys=False))
    return p


def environment() -> dict:
    import torch

    env = {"torch": torch.__version__, "python": sys.version.split()[0], "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def run(args) -> int:
    d, out = args.dir, args.out
    out.mkdir(parents=True, exist_ok=True)
    work = d / "run"
    shutil.rmtree(work, ignore_errors=True)
    models = work / "models"
    p = run_params(args, models)
    data = ("--manifest", d / "manifest.parquet", "--features", d / "features")
    summary: dict = {"env": environment(), "device": args.device, "stages": {}}
    summary["epochs"] = {"ctc": args.ctc_epochs, "seq2seq": args.seq2seq_epochs}
    commands = {
        f"train_{kind}": stage(
            f"train_{kind}",
            *data,
            *("--tokens", d / "tokens", "--out", models / f"{kind}.pt"),
            *("--live", work / "dvclive" / kind, "--resume", work / "resume" / f"{kind}.pt"),
            params=p,
        )
        for kind in ("ctc", "seq2seq")
    }
    commands["decode_sweep"] = stage(
        "decode_sweep",
        *("--models", models, *data, "--out", work / "sweep", "--plots", work / "plots"),
        params=p,
    )
    commands["evaluate"] = stage(
        "evaluate",
        *("--models", models, "--sweep", work / "sweep", *data),
        *("--out", work / "predictions", "--metrics", work / "metrics"),
        *("--plots", work / "pianorolls"),
        params=p,
    )
    report = out / "gpu_block.json"  # rewritten after each stage: a run cut short keeps its part
    for name, cmd in commands.items():
        summary["stages"][name] = timed(cmd, out / f"{name}.log")
        report.write_text(json.dumps(summary, indent=2) + "\n")
        if summary["stages"][name]["rc"]:
            break
    for kind in ("ctc", "seq2seq"):
        metrics = work / "metrics" / f"{kind}.json"
        if metrics.exists():
            shutil.copy(metrics, out / f"{kind}.json")
        history = work / "dvclive" / kind / "metrics.json"
        if history.exists():
            summary[f"{kind}_dvclive"] = json.loads(history.read_text())
    bench = [sys.executable, "-m", "benchmarks.bench_train", "--params", str(p), "--data", str(d)]
    bench += ["--steps", str(args.steps), "--runs", str(args.runs), "--json"]
    summary["stages"]["bench_train"] = timed(
        [*bench, str(out / "bench_train.json")], out / "bench_train.log"
    )
    report.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(s["rc"] for s in summary["stages"].values()) else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("prepare", help="params, the data slice and its features (CPU)")
    pre.add_argument("--dir", type=Path, default=Path(".gpu"), help="folder to prepare")
    pre.add_argument(
        "--train-minutes", type=float, default=14.0, help="train audio in the slice (minutes)"
    )
    pre.add_argument(
        "--test-minutes", type=float, default=3.5, help="test audio in the slice (minutes)"
    )
    pre.add_argument("--workers", type=int, default=2, help="segment.workers for this machine")
    go = sub.add_parser("run", help="train, sweep, evaluate and bench on the prepared folder")
    go.add_argument("--dir", type=Path, default=Path(".gpu"), help="folder `prepare` wrote")
    go.add_argument("--out", type=Path, required=True, help="where results and logs go")
    go.add_argument("--device", default="cuda", help="train.common.device for this run")
    go.add_argument("--ctc-epochs", type=int, default=20, help="train.ctc.epochs for this run")
    go.add_argument(
        "--seq2seq-epochs", type=int, default=12, help="train.seq2seq.epochs for this run"
    )
    go.add_argument("--steps", type=int, default=20, help="bench_train: steps per timed run")
    go.add_argument("--runs", type=int, default=3, help="bench_train: timed runs (median)")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
