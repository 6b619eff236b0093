"""Portable training arithmetic (`train.common.portable_math`, mtlib/portable.py): what it costs,
and a fingerprint of the weights it trains, to compare across machines.

Trains `--steps` optimizer steps of the default params' model (built, seeded and fed as the
train stage does: `mtlib.train.fresh_model`, `segment_loaders`, `TrainRun.train_epoch`, epoch
1's first batches) in a fresh process per run, four ways:
  default           this CPU's fastest kernels (portable_math false)
  default, capped   the same under ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2: what an
                    AVX2-only CPU would run by default
  portable          portable_math true (oneDNN and NNPACK off, MKL_CBWR=COMPATIBLE, ATen's AVX2 kernels)
  portable, capped  the same under the caps above
and prints, per way, the SHA-256 of the weights after the steps (the same in every run of a way,
or the script says so) and the median seconds per step over `--runs` runs (ways interleaved).
Portable's two hashes must agree with each other, and with the hash another machine prints for
the same commit and params: BENCHMARKS.md records this host's, so a session on another vendor's
CPU checks it by running the same command.

    .venv/bin/python -m benchmarks.portable_math --kind ctc --steps 8 --runs 3   # after `dvc repro manifest`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

from mtlib import portable

CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
WAYS = {
    "default": {},
    "default, capped": CAPS,
    "portable": portable.ENV,
    "portable, capped": {**portable.ENV, **CAPS},
}


def worker(kind: str, steps: int, params_path: str, data: str) -> dict:
    """In this process: `steps` train steps as the train stage takes them; hash and timing."""
    import pandas as pd
    import torch

    from mtlib.dataset import SegmentDataset, feature_stats_path
    from mtlib.params import load_params
    from mtlib.pipeline import augment_config, load_vocab, model_config, train_config
    from mtlib.segments import read_feature_config
    from mtlib.train import (
        TrainRun,
        augment_geometry,
        fresh_model,
        seed_everything,
        segment_loaders,
    )

    params = load_params(params_path)
    cfg = train_config(params, kind)
    cfg.portable_math = portable.active()
    torch.set_num_threads(cfg.threads)
    feature_cfg, _ = read_feature_config(f"{data}/features")
    vocab = load_vocab(f"{data}/tokens")
    manifest_path = f"{data}/manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    train_set, val_set = SegmentDataset(manifest, "train"), SegmentDataset(manifest, "val")
    model, _ = fresh_model(
        kind, cfg, model_config(params, kind), feature_cfg, vocab, feature_stats_path(manifest_path)
    )
    loader_fn, _ = segment_loaders(
        kind, train_set, val_set, vocab, cfg, augment_config(params), augment_geometry(feature_cfg)
    )
    with portable.arithmetic(cfg.portable_math, cfg.threads):
        seed_everything(cfg.seed)
        loader = loader_fn(1)
        run = TrainRun(model, cfg, torch.device("cpu"), len(loader))
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == steps:
                break
        start = time.perf_counter()
        run.train_epoch(batches, "steps", show=False)
        seconds = (time.perf_counter() - start) / len(batches)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return {"hash": digest.hexdigest(), "s_per_step": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", choices=["ctc", "seq2seq"], default="ctc", help="which model")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per way (timing: their median)")
    ap.add_argument("--params", default="params.yaml", help="params file")
    ap.add_argument("--data", default="data", help="folder with features/, tokens/, manifest")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.kind, args.steps, args.params, args.data)))
        return
    import torch

    print(
        f"CPU kernels: ATen {torch.backends.cpu.get_cpu_capability()}; {args.kind}, "
        f"{args.steps} steps, {args.runs} runs per way"
    )
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    strip = {*portable.ENV, *CAPS}
    for _ in range(args.runs):
        for way, extra in WAYS.items():
            env = {k: v for k, v in os.environ.items() if k not in strip} | extra
            cmd = [sys.executable, "-m", "benchmarks.portable_math", "--worker"]
            cmd += ["--kind", args.kind, "--steps", str(args.steps)]
            cmd += ["--params", args.params, "--data", args.data]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{way}: worker failed\n{done.stderr[-3000:]}")
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            results[way].append(json.loads(line[len("RESULT ") :]))
    base = statistics.median(r["s_per_step"] for r in results["default"])
    for way, runs in results.items():
        hashes = {r["hash"] for r in runs}
        median = statistics.median(r["s_per_step"] for r in runs)
        same = "" if len(hashes) == 1 else f"  (NOT the same in every run: {len(hashes)} hashes)"
        print(
            f"{way:17s} {sorted(hashes)[0][:16]}  {median:.3f} s/step  {median / base:.2f}x{same}"
        )
    agree = {r["hash"] for way in ("portable", "portable, capped") for r in results[way]}
    print("portable weights the same under the caps:", "yes" if len(agree) == 1 else "NO")


if __name__ == "__main__":
    main()
