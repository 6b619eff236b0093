"""Training throughput per model: the real data path against the same batches held in memory.

For each model (built from params.yaml exactly as the train stages build it), times `--steps`
optimizer steps two ways, median of `--runs` after a warm-up. A step is the train stage's own:
`mtlib.train.TrainRun.step` (AdamW, its schedule, gradient clipping) under the same autocast, so
on CUDA (`train.common.device`) it runs with AMP (float16 autocast, GradScaler) as training does:
  data path   batches drawn through the train stage's DataLoader: BucketBatchSampler over the
              manifest, SegmentDataset reading the memory-mapped float16 features and the token
              Parquet, collate (padding, masks, onset roll)
  in memory   the very same batches, materialized once beforehand: the model alone
Throughput is feature frames per wall second (padding excluded). The data path's cost is
1 - (data path / in memory); the target is under 20%. Content does not change the speed of
these models, so real batches stand in for random tensors (and keep every CTC alignment feasible).

    .venv/bin/python -m benchmarks.bench_train --steps 20 --runs 3     # from the repo root, after `dvc repro manifest`

`--data DIR` reads DIR/features, DIR/tokens, DIR/manifest.parquet and DIR/feature_stats.npz
instead of data/ (benchmarks/gpu_block.py prepares such a folder with the README's GPU block).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path


def build(kind: str, params_path: str = "params.yaml", data: str = "data"):
    import pandas as pd
    import torch

    from mtlib.dataset import BucketBatchSampler, SegmentDataset, collate, load_feature_stats
    from mtlib.models import build_model, feature_keys
    from mtlib.params import load_params
    from mtlib.pipeline import load_vocab, model_config, train_config
    from mtlib.segments import read_feature_config

    params = load_params(params_path)
    cfg = train_config(params, kind)
    fcfg, _ = read_feature_config(f"{data}/features")
    vocab = load_vocab(f"{data}/tokens")
    mean, std = load_feature_stats(f"{data}/feature_stats.npz")
    manifest = pd.read_parquet(f"{data}/manifest.parquet")
    train_set = SegmentDataset(manifest, "train")
    model = build_model(kind, {**model_config(params, kind), **feature_keys(fcfg)}, vocab)
    model.set_feature_stats(torch.as_tensor(mean), torch.as_tensor(std))
    length_key = "n_tokens" if kind == "seq2seq" else "n_frames"
    sampler = BucketBatchSampler(
        train_set.lengths(length_key), cfg.batch_size, shuffle=True, seed=cfg.seed
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=functools.partial(collate, vocab=vocab),
    )
    return model, loader, cfg


def step_fn(kind: str, model, cfg, steps: int):
    """One training step as `mtlib.train.TrainRun.train_epoch` takes it, on the run's device, and
    a synchronise for timing (CUDA runs asynchronously)."""
    import torch

    from mtlib.train import TrainRun, move, resolve_device

    device = resolve_device(cfg.device)
    model.to(device)
    run = TrainRun(model, cfg, device, steps)

    def step(batch):
        batch = move(batch, device)
        kwargs = {"ss_prob": 0.1} if kind == "seq2seq" else {}
        with torch.autocast(device.type, dtype=torch.float16, enabled=run.use_amp):
            _, losses = model(batch, **kwargs)
        run.step(sum(losses.values()))

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return step, sync, device


def frames(batch) -> int:
    return int(batch["feature_lengths"].sum())


def bench(
    kind: str, steps: int, runs: int, params: str = "params.yaml", data: str = "data"
) -> dict:
    import torch

    model, loader, cfg = build(kind, params, data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model.train()
    step, sync, device = step_fn(kind, model, cfg, steps)
    it = iter(loader)
    held = [next(it) for _ in range(steps)]  # the first `steps` batches of the epoch, materialized
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for batch in held[:3]:  # warm-up (CUDA: kernels chosen, the allocator's pool filled)
        step(batch)
    sync()

    def data_path() -> float:
        t0 = time.perf_counter()
        for i, batch in enumerate(loader):
            if i == steps:
                break
            step(batch)
        sync()
        return time.perf_counter() - t0

    def in_memory() -> float:
        t0 = time.perf_counter()
        for batch in held:
            step(batch)
        sync()
        return time.perf_counter() - t0

    def load_only() -> float:
        t0 = time.perf_counter()
        for i, _ in enumerate(loader):
            if i == steps:
                break
        return time.perf_counter() - t0

    n = sum(frames(b) for b in held)  # the loader restarts its epoch each time: the same batches
    dp = statistics.median(data_path() for _ in range(runs))
    mem = statistics.median(in_memory() for _ in range(runs))
    load = statistics.median(load_only() for _ in range(runs))
    return {
        "kind": kind,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": cfg.batch_size,
        "steps_per_s": steps / mem,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
        "params": sum(p.numel() for p in model.parameters()),
        "frames": n,
        "data_path_fps": n / dp,
        "in_memory_fps": n / mem,
        "load_only_fps": n / load,
        "data_cost": 1 - mem / dp,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per timed run")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per path (median reported)")
    ap.add_argument("--models", nargs="+", default=["ctc", "seq2seq"])
    ap.add_argument("--params", default="params.yaml", help="params file (train.common.device too)")
    ap.add_argument(
        "--data", default="data", help="folder with features/, tokens/, manifest.parquet"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    print(
        "| model | device | parameters | steps/s (in memory) | data path frames/s | in memory frames/s "
        "| loading alone frames/s | data path cost |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for kind in args.models:
        r = bench(kind, args.steps, args.runs, args.params, args.data)
        results.append(r)
        print(
            f"| {kind} | {r['device']} | {r['params'] / 1e6:.2f} M | {r['steps_per_s']:.2f} "
            f"| {r['data_path_fps']:,.0f} | {r['in_memory_fps']:,.0f} | "
            f"{r['load_only_fps']:,.0f} | {100 * r['data_cost']:.1f}% |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
