"""How far more training goes on the demo data: the CTC model trained by the train stage's own
code (`mtlib.train.train_stage`) on a GPU, for the default epochs and for 3x as many, with a
larger encoder and with stronger augmentation, several runs side by side on one GPU. The 2-core
CPU budget is what caps the default epochs, and BENCHMARKS.md says the models are still
improving when their epochs end; this measures what the epochs the CPU budget leaves out are worth.
CONFIGS holds two sets: R16_CONFIGS (e20, e60...; run on R16's 45 minutes of music, BENCHMARKS.md)
and R17_CONFIGS (e10, e30...; the same optimiser steps on R17+'s 90 minutes, the default of `run`).

    .venv/bin/python -m benchmarks.gpu_scale prepare --dir .gpuscale --parts 2   # here, after `dvc repro`
    # on the GPU machine, two device calls: the first carries .gpuscale/part1 and leaves it there
    # (an ignored path stays between calls on a warm machine), the second carries .gpuscale/part2
    python3 -m benchmarks.gpu_scale run --dir .gpuscale --out OUT
    .venv/bin/python -m benchmarks.gpu_scale score --ckpt OUT/e30.pt --work DIR   # here, per run

prepare  copies what training reads, and nothing else, into DIR/data (the train and val
         features, the manifest, feature stats, the vocabulary, their label CSVs), or with
         --parts N into DIR/part1/data ... DIR/partN/data, split by size. At R16's 45 minutes of
         music that was 50 MB, what the device tool's 64 MiB transfer holds; R17's 90 minutes
         make 100 MB: two parts of 50 MB. Test features and audio stay here.
run      copies DIR/data, or every DIR/part*/data, into ./data (refused where ./data holds
         features, unless --replace-data; a missing part is refused by its feature count), writes
         one params file per configuration (params.yaml with that configuration's keys set,
         device cuda) and trains them all at once, one process each, checkpoints to
         OUT/<name>.pt, logs to OUT/logs.txt, times to OUT/gpu_scale.json. Each run has a
         max_minutes guard (--guard-minutes) so that all finish inside the device call; a run it
         stops says so in the log and in the JSON (stopped_early). The larger encoder's
         checkpoint is 16.6 MB, over the device tool's 16 MB per returned file: `run` cuts a
         larger file into <name>.pt.part0, .part1 and `score` joins them.
score    here, in a clone at DIR (made on first use, its data/ inputs linked to this checkout's): the
         checkpoint is copied to DIR/data/models/ctc.pt and `benchmarks.ablate_ctc` sweeps its
         decoding on val and scores test, test_unseen and test_recorded as evaluate does, writing
         the checkpoint's path with .json for .pt.
"""

from __future__ import annotations

import argparse
import copy
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

# name -> params keys over params.yaml (dotted paths). Every run trains the CTC model only: the
# Seq2Seq decoder steps one token at a time and a GPU speeds it ~10x less (BENCHMARKS.md).
BIG = {"model.encoder.cnn_channels": [16, 32], "model.encoder.lstm_hidden": 256}
AUG = {
    "train.augment.reverb_probability": 0.8,
    "train.augment.detune_cents": 20.0,
    "train.augment.mix_probability": 0.5,
}
E60 = {"train.ctc.epochs": 60, "train.ctc.val_every": 4}
# R17+'s 90 minutes of music: the default is 10 epochs, so 30 is E60's optimiser steps on R16's 45
E30 = {"train.ctc.epochs": 30, "train.ctc.val_every": 3}
CONFIGS: dict[str, dict[str, object]] = {
    "e20": {},
    "e60": E60,
    "e60_big": {**E60, **BIG},
    "e60_big_aug": {**E60, **BIG, **AUG},
    "e10": {},
    "e30": E30,
    "e30_big": {**E30, **BIG},
    "e30_big_aug": {**E30, **BIG, **AUG},
}
R16_CONFIGS = ["e20", "e60", "e60_big", "e60_big_aug"]  # run on R16's 45 minutes (BENCHMARKS.md)
R17_CONFIGS = ["e10", "e30", "e30_big", "e30_big_aug"]  # run on R17+'s 90 minutes


def set_key(params: dict, dotted: str, value) -> None:
    """params.yaml's key at `dotted` set to `value`; a key it does not have is refused."""
    from mtlib.params import section

    parent, _, last = dotted.rpartition(".")
    node = section(params, parent)
    if last not in node:
        raise SystemExit(f"params.yaml has no {dotted}")
    node[last] = value


RETURN_LIMIT = 15_000_000  # bytes per file the device tool returns (16 MB), with a margin


def split_file(path: Path, limit: int = RETURN_LIMIT) -> list[Path]:
    """`path` itself if it is at most `limit` bytes, else cut into path.part0, path.part1, ...
    (each at most `limit`) and removed: the larger encoder's checkpoint is 16.6 MB."""
    if path.stat().st_size <= limit:
        return [path]
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(limit):
            parts.append(path.with_name(f"{path.name}.part{len(parts)}"))
            parts[-1].write_bytes(chunk)
    path.unlink()
    return parts


def joined(path: Path) -> Path:
    """`path`, rebuilt from path.part0, path.part1, ... (split_file's output) if it is missing."""
    parts = sorted(path.parent.glob(path.name + ".part*"), key=lambda p: int(p.suffix[5:]))
    if not path.exists() and parts:
        with open(path, "wb") as f:
            for part in parts:
                f.write(part.read_bytes())
    if not path.exists():
        raise SystemExit(f"{path}: no such checkpoint, nor {path.name}.part0 ...")
    return path


def prepare(work: Path, parts: int = 1) -> None:
    """What training reads, in DIR/data, or split by size into DIR/part1/data ... DIR/partN/data
    so that each part fits one device call's transfer (R17+'s ~100 MB: two calls, the first
    leaving its part on the machine; `run` merges them)."""
    import pandas as pd

    for old in [work / "data", *work.glob("part*")]:
        shutil.rmtree(old, ignore_errors=True)
    roots = (
        [work / "data"] if parts == 1 else [work / f"part{i + 1}" / "data" for i in range(parts)]
    )
    for root in roots:
        (root / "features").mkdir(parents=True)
    data = roots[0]
    tracks = pd.read_parquet(REPO / "data/features/tracks.parquet")
    keep = tracks[tracks.split.isin(["train", "val"])]
    for name in ("config.json", "segments.parquet", "tracks.parquet"):
        shutil.copy2(REPO / "data/features" / name, data / "features" / name)
    shutil.copy2(REPO / "data/manifest.parquet", data / "manifest.parquet")
    shutil.copy2(REPO / "data/feature_stats.npz", data / "feature_stats.npz")
    shutil.copytree(REPO / "data/tokens", data / "tokens")

    def size(root: Path) -> int:
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())

    sizes = [size(root) for root in roots]
    by_size = sorted(keep.itertuples(), key=lambda r: -(REPO / r.features).stat().st_size)
    for row in by_size:  # features and labels (validation reads them) to the emptiest part
        i = sizes.index(min(sizes))
        for rel in (row.features, row.labels):
            target = roots[i] / rel.removeprefix("data/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
            sizes[i] += target.stat().st_size
    for root, n in zip(roots, sizes, strict=True):
        print(f"{root}: {n / 1e6:.1f} MB")
    print(f"{len(keep)} train/val tracks in {len(roots)} part(s)")


def run(
    work: Path, out: Path, names: list[str], device: str, guard: float, epochs: int, replace: bool
) -> None:
    import pandas as pd

    target = REPO / "data"
    if (target / "features").exists() and not replace:
        raise SystemExit(
            f"{target}: holds a pipeline's data already; `run` replaces it with {work / 'data'} "
            "(meant for the bare GPU machine): run it in a clone, or pass --replace-data"
        )
    out.mkdir(parents=True, exist_ok=True)
    target.mkdir(exist_ok=True)
    roots = [work / "data"] if (work / "data").is_dir() else sorted(work.glob("part*/data"))
    if not roots:
        raise SystemExit(f"{work}: no data/ or part*/data/ (run `prepare` here first)")
    expected = len(
        pd.read_parquet(roots[0] / "features/tracks.parquet").query("split in ['train', 'val']")
    )
    for root in roots:
        for item in root.iterdir():
            dest = target / item.name
            if item.is_dir():
                shutil.copytree(item, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(item, dest)
    found = len(list((target / "features").glob("*.npy")))
    if found != expected:
        raise SystemExit(
            f"{target / 'features'}: {found} feature files, {expected} expected (a part missing?)"
        )
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    procs = {}
    t0 = time.time()
    for name in names:
        params = copy.deepcopy(base)
        for key, value in CONFIGS[name].items():
            set_key(params, key, value)
        set_key(params, "train.common.device", device)
        set_key(params, "train.common.threads", 2)
        set_key(params, "train.ctc.max_minutes", guard)
        if epochs:
            set_key(params, "train.ctc.epochs", epochs)
        run_dir = work / "runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        code = (
            "from pathlib import Path; from mtlib.train import train_stage; "
            f"train_stage('ctc', Path({str(run_dir / 'params.yaml')!r}), "
            "Path('data/manifest.parquet'), Path('data/features'), Path('data/tokens'), "
            f"Path({str(out / (name + '.pt'))!r}), None, Path({str(run_dir / 'resume.pt')!r}))"
        )
        log = open(run_dir / "log.txt", "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs[name] = (
            subprocess.Popen(
                [sys.executable, "-c", code], cwd=REPO, stdout=log, stderr=log, env=env
            ),
            log,
            time.time(),
        )
    result = {"device": device, "guard_minutes": guard, "configs": {}}
    for name, (proc, log, started) in procs.items():
        rc = proc.wait()
        log.close()
        text = (work / "runs" / name / "log.txt").read_text()
        # the train stage's own clock (its last epoch line), else the time to this wait
        clock = re.findall(r"\bminutes=([0-9.]+)", text)  # not max_minutes=
        result["configs"][name] = {
            "changes": CONFIGS[name],
            "rc": rc,
            "minutes": round(float(clock[-1]) if clock else (time.time() - started) / 60, 2),
            "stopped_early": "TRAINING STOPPED EARLY" in text,
        }
        best = re.search(r"best val note F1 ([0-9.]+) at epoch (\d+) of (\d+)", text)
        if best:
            result["configs"][name].update(
                best_val_f1=float(best[1]), best_epoch=int(best[2]), epochs_run=int(best[3])
            )
    result["wall_minutes"] = round((time.time() - t0) / 60, 2)
    for name in names:
        if (out / f"{name}.pt").exists():
            result["configs"][name]["files"] = [p.name for p in split_file(out / f"{name}.pt")]
    try:
        import torch

        result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        result["torch"] = torch.__version__
    except Exception as e:  # noqa: BLE001 - the figures matter more than the label
        result["gpu"] = repr(e)
    with open(out / "logs.txt", "w") as f:
        for name in names:
            f.write(f"===== {name}\n{(work / 'runs' / name / 'log.txt').read_text()}\n")
    (out / "gpu_scale.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def score(ckpt: Path, work: Path, changes: list[str]) -> None:
    if not work.exists():
        # a clone of this commit whose data/ links to this checkout's (the default run's
        # features, manifest, labels), with its own data/models for the checkpoint under test
        subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
        (work / ".venv").symlink_to(REPO / ".venv")
        for name in (
            "features",
            "manifest.parquet",
            "feature_stats.npz",
            "tokens",
            "musicnet_demo",
        ):
            (work / "data" / name).symlink_to(REPO / "data" / name)
    models = work / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ckpt, models / "ctc.pt")
    (models / "ctc.decode.json").unlink(missing_ok=True)
    out = ckpt.with_suffix(".json")
    subprocess.run(
        [sys.executable, "-m", "benchmarks.ablate_ctc", "--out", str(out), *changes],
        cwd=work,
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="Copy what training reads into DIR/data.")
    p.add_argument("--dir", type=Path, default=Path(".gpuscale"))
    p.add_argument(
        "--parts",
        type=int,
        default=1,
        help="Split the data into DIR/part1..N (one per device call).",
    )
    r = sub.add_parser("run", help="Train every configuration at once (on the GPU machine).")
    r.add_argument("--dir", type=Path, default=Path(".gpuscale"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--configs", nargs="+", default=R17_CONFIGS, choices=list(CONFIGS))
    r.add_argument("--device", default="cuda")
    r.add_argument("--guard-minutes", type=float, default=7.5, help="Each run's max_minutes.")
    r.add_argument("--epochs", type=int, default=0, help="Override every run's epochs (dry runs).")
    r.add_argument(
        "--replace-data", action="store_true", help="Replace ./data even if it holds features."
    )
    s = sub.add_parser("score", help="Sweep and score one returned checkpoint in a fresh clone.")
    s.add_argument("--ckpt", type=Path, required=True)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("changes", nargs="*")
    args = parser.parse_args()
    if args.cmd == "prepare":
        prepare(args.dir, args.parts)
    elif args.cmd == "run":
        run(
            args.dir.resolve(),
            args.out.resolve(),
            args.configs,
            args.device,
            args.guard_minutes,
            args.epochs,
            args.replace_data,
        )
    else:
        score(joined(args.ckpt.resolve()), args.work.resolve(), args.changes)


if __name__ == "__main__":
    main()
