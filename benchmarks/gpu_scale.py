"""How far more training goes on the demo data: the CTC model trained by the train stage's own
code (`mtlib.train.train_stage`) on a GPU, for the default 20 epochs and for 3x as many, with a
larger encoder and with stronger augmentation, several runs side by side on one GPU. The 2-core
CPU default trains 20 epochs in ~12 minutes, and BENCHMARKS.md says the models are still
improving when their epochs end; this measures what the epochs the CPU budget leaves out are worth.

    .venv/bin/python -m benchmarks.gpu_scale prepare --dir .gpuscale     # here, after `dvc repro`
    python3 -m benchmarks.gpu_scale run --dir .gpuscale --out OUT       # on the GPU machine
    .venv/bin/python -m benchmarks.gpu_scale score --ckpt OUT/e60.pt --work DIR   # here, per run

prepare  copies what training reads, and nothing else, into DIR/data (the train and val
         features, the manifest, feature stats, the vocabulary, their label CSVs). At R16's 45
         minutes of music that was 50 MB, what the device tool's 64 MiB transfer holds; R17's 90
         minutes make ~100 MB, which it does not. Test features and audio stay here.
run      copies DIR/data into ./data (refused where ./data holds features, unless --replace-data), writes one params file per configuration (params.yaml with
         that configuration's keys set, device cuda) and trains them all at once, one process
         each, checkpoints to OUT/<name>.pt, logs to OUT/logs.txt, times to OUT/gpu_scale.json.
         Each run has a max_minutes guard (--guard-minutes) so that all finish inside the device
         call; a run it stops says so in the log and in the JSON (stopped_early).
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
CONFIGS: dict[str, dict[str, object]] = {
    "e20": {},
    "e60": {"train.ctc.epochs": 60, "train.ctc.val_every": 4},
    "e60_big": {
        "train.ctc.epochs": 60,
        "train.ctc.val_every": 4,
        "model.encoder.cnn_channels": [16, 32],
        "model.encoder.lstm_hidden": 256,
    },
    "e60_big_aug": {
        "train.ctc.epochs": 60,
        "train.ctc.val_every": 4,
        "model.encoder.cnn_channels": [16, 32],
        "model.encoder.lstm_hidden": 256,
        "train.augment.reverb_probability": 0.8,
        "train.augment.detune_cents": 20.0,
        "train.augment.mix_probability": 0.5,
    },
}


def set_key(params: dict, dotted: str, value) -> None:
    """params.yaml's key at `dotted` set to `value`; a key it does not have is refused."""
    from mtlib.params import section

    parent, _, last = dotted.rpartition(".")
    node = section(params, parent)
    if last not in node:
        raise SystemExit(f"params.yaml has no {dotted}")
    node[last] = value


def prepare(work: Path) -> None:
    import pandas as pd

    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    (data / "features").mkdir(parents=True)
    tracks = pd.read_parquet(REPO / "data/features/tracks.parquet")
    keep = tracks[tracks.split.isin(["train", "val"])]
    for name in ("config.json", "segments.parquet", "tracks.parquet"):
        shutil.copy2(REPO / "data/features" / name, data / "features" / name)
    for row in keep.itertuples():  # features, and labels (validation reads them; 1.2 MB in all)
        shutil.copy2(REPO / row.features, data / row.features.removeprefix("data/"))
        target = data / row.labels.removeprefix("data/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / row.labels, target)
    shutil.copy2(REPO / "data/manifest.parquet", data / "manifest.parquet")
    shutil.copy2(REPO / "data/feature_stats.npz", data / "feature_stats.npz")
    shutil.copytree(REPO / "data/tokens", data / "tokens")
    size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    print(f"{data}: {len(keep)} train/val tracks, {size / 1e6:.1f} MB")


def run(
    work: Path, out: Path, names: list[str], device: str, guard: float, epochs: int, replace: bool
) -> None:
    target = REPO / "data"
    if (target / "features").exists() and not replace:
        raise SystemExit(
            f"{target}: holds a pipeline's data already; `run` replaces it with {work / 'data'} "
            "(meant for the bare GPU machine): run it in a clone, or pass --replace-data"
        )
    out.mkdir(parents=True, exist_ok=True)
    target.mkdir(exist_ok=True)
    for item in (work / "data").iterdir():
        dest = target / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)
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
    r = sub.add_parser("run", help="Train every configuration at once (on the GPU machine).")
    r.add_argument("--dir", type=Path, default=Path(".gpuscale"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
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
        prepare(args.dir)
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
        score(args.ckpt.resolve(), args.work.resolve(), args.changes)


if __name__ == "__main__":
    main()
