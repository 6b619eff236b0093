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

Where two machines disagree, `--trace FILE` finds where: it trains the portable way once with a
fingerprint of every step of the way (the batches, the initial weights, the output of every
module in the first forward pass in call order, the first step's losses, gradients and weights,
then the weights after each step) and writes it to FILE; `--against REF` then prints the first
entry that differs from another machine's trace. BENCHMARKS.md names the trace committed here
(`benchmarks/portable_trace_intel.json`, from an Intel Xeon host):

    .venv/bin/python -m benchmarks.portable_math --trace /tmp/trace.json \\
        --against benchmarks/portable_trace_intel.json   # --kind ctc --steps 8, as the trace
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
from pathlib import Path

from mtlib import portable

CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
WAYS = {
    "default": {},
    "default, capped": CAPS,
    "portable": portable.ENV,
    "portable, capped": {**portable.ENV, **CAPS},
}


def worker(kind: str, steps: int, params_path: str, data: str, trace: bool = False) -> dict:
    """In this process: `steps` train steps as the train stage takes them; hash and timing, and
    with `trace` the fingerprints of `trace_steps` under "trace"."""
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
        if trace:
            entries = trace_steps(model, run, batches)
        else:
            run.train_epoch(batches, "steps", show=False)
        seconds = (time.perf_counter() - start) / len(batches)
    weights = hashlib.sha256()
    for name, value in model.state_dict().items():
        weights.update(name.encode())
        weights.update(value.detach().contiguous().numpy().tobytes())
    out = {"hash": weights.hexdigest(), "s_per_step": seconds}
    out["aten"] = torch.backends.cpu.get_cpu_capability()
    if trace:
        out["trace"] = [*entries, ["final", weights.hexdigest()[:16]]]
    return out


def digest(value) -> str | None:
    """The first 16 hex digits of the SHA-256 of a tensor's dtype, shape and bytes, or of the
    tensors in a tuple, list or dict in order (a PackedSequence: its data); None without any."""
    import torch

    if isinstance(value, torch.nn.utils.rnn.PackedSequence):
        value = value.data
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]
    if not isinstance(value, (tuple, list, dict)):
        return None
    parts = value.values() if isinstance(value, dict) else value
    found = [d for d in (digest(v) for v in parts) if d is not None]
    return hashlib.sha256(" ".join(found).encode()).hexdigest()[:16] if found else None


def trace_steps(model, run, batches) -> list[list[str]]:
    """Train on `batches` as `run.train_epoch` does, one call for the first batch and one for the
    rest (the same steps in the same order), and return [label, fingerprint] in the order they
    happen: "batches"; "init/<param>"; "forward/<module>#<call>" for every module's output in the
    first forward pass; "loss/<name>" (the first step's, as float.hex: exact); "grad/<param>" as
    the optimiser used it (clipped); "step 1/<param>"; "step <k>" (all weights) after each later
    step. Two machines' traces part at the first computation they do differently."""
    entries: list[list[str]] = [["batches", digest(list(batches))]]
    entries += [[f"init/{k}", digest(v)] for k, v in model.state_dict().items()]
    calls: dict[str, int] = {}

    def record(name):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            d = digest(output)
            if d is not None:
                entries.append([f"forward/{name or 'model'}#{calls[name]}", d])

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()]
    try:
        row = run.train_epoch(batches[:1], "steps", show=False)
    finally:
        for h in handles:
            h.remove()
    entries += [[f"loss/{k}", float(v).hex()] for k, v in row.items() if k.startswith("train/")]
    entries += [
        [f"grad/{n}", digest(p.grad)] for n, p in model.named_parameters() if p.grad is not None
    ]
    entries += [[f"step 1/{k}", digest(v)] for k, v in model.state_dict().items()]
    for k, batch in enumerate(batches[1:], start=2):
        run.train_epoch([batch], "steps", show=False)
        entries.append([f"step {k}", digest(list(model.state_dict().values()))])
    return entries


def first_difference(ours: list, theirs: list) -> str | None:
    """The first entry where two traces differ ("<label>: <ours> here, <theirs> there", or the
    label only one trace has), or None when they agree entry for entry."""
    for (label, a), (other, b) in zip(ours, theirs):
        if label != other:
            return (
                f"entry {label!r} here, {other!r} there: the runs did not compute the same things"
            )
        if a != b:
            return f"{label}: {a} here, {b} there"
    if len(ours) != len(theirs):
        longer = ours if len(ours) > len(theirs) else theirs
        return (
            f"{longer[min(len(ours), len(theirs))][0]!r}: only one trace has it (and those after)"
        )
    return None


def run_worker(args, extra: dict, way: str = "portable", trace: bool = False) -> dict:
    """`worker` in a fresh process whose environment is this one's without the portable and cap
    settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in {*portable.ENV, *CAPS}} | extra
    cmd = [sys.executable, "-m", "benchmarks.portable_math", "--worker"]
    cmd += ["--kind", args.kind, "--steps", str(args.steps)]
    cmd += ["--params", args.params, "--data", args.data]
    cmd += ["--trace", "-"] if trace else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{way}: worker failed\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def git_commit() -> str:
    """The repository's commit (its params and code made the trace), or "unknown"."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", choices=["ctc", "seq2seq"], default="ctc", help="which model")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per way (timing: their median)")
    ap.add_argument("--params", default="params.yaml", help="params file")
    ap.add_argument("--data", default="data", help="folder with features/, tokens/, manifest")
    ap.add_argument(
        "--trace",
        type=Path,
        help="instead: train the portable way once with a fingerprint of every step of the way "
        "and write it to this JSON file",
    )
    ap.add_argument(
        "--against",
        type=Path,
        help="with --trace: print the first entry where this machine's trace and this file differ",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        result = worker(args.kind, args.steps, args.params, args.data, args.trace is not None)
        print("RESULT " + json.dumps(result))
        return
    import torch

    if args.against and not args.trace:
        ap.error("--against needs --trace (where to write this machine's trace)")
    if args.against and not args.against.is_file():
        ap.error(f"--against {args.against}: no such file")
    if args.trace:
        result = run_worker(args, WAYS["portable"], trace=True)
        meta = {"kind": args.kind, "steps": args.steps, "hash": result["hash"]}
        meta |= {"cpu": cpu_name(), "aten": result["aten"], "torch": torch.__version__}
        meta["commit"] = git_commit()
        head = json.dumps(meta)[:-1]  # one trace entry a line: a diff of two files reads well
        lines = ",\n".join(json.dumps(entry) for entry in result["trace"])
        tmp = args.trace.with_name(args.trace.name + ".tmp")
        tmp.write_text(f'{head}, "trace": [\n{lines}\n]}}\n')
        tmp.replace(args.trace)
        print(
            f"portable weights after {args.steps} steps: {result['hash'][:16]}; trace: {args.trace}"
        )
        if args.against:
            ref = json.loads(args.against.read_text())
            if (ref["kind"], ref["steps"]) != (args.kind, args.steps):
                sys.exit(
                    f"{args.against}: a trace of {ref['kind']}, {ref['steps']} steps, not this one"
                )
            diff = first_difference(result["trace"], ref["trace"])
            where = f"{args.against} ({ref.get('cpu', '?')})"
            print(
                f"the same as {where} at every entry"
                if diff is None
                else f"first difference from {where}: {diff}"
            )
        return

    print(
        f"CPU kernels: ATen {torch.backends.cpu.get_cpu_capability()}; {args.kind}, "
        f"{args.steps} steps, {args.runs} runs per way"
    )
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(args.runs):
        for way, extra in WAYS.items():
            results[way].append(run_worker(args, extra, way=way))
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
