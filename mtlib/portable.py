"""Portable training arithmetic (`train.common.portable_math`): one code path on every x86-64 CPU.

Why: the features are the same bytes on every machine (float64, rounded: `mtlib.features`), but
training's float32 sums are not. PyTorch's CPU kernels pick their code path from the CPU they run
on: oneDNN (convolutions) chooses its kernels and blocking from the instruction set and the cache
sizes, MKL (matrix products: linear layers, LSTMs) dispatches per CPU family and vendor, and
ATen's own vectorised kernels use the widest vector unit there is. Each path orders long sums
differently, and training turns those last-bit differences into another model (BENCHMARKS R19,
R22: an Intel Xeon and an AMD EPYC, both AVX-512, trained different models from the same bytes).

With `portable_math` on, training runs on paths that do not depend on the CPU:
- oneDNN off (`torch.backends.mkldnn.enabled = False`) and NNPACK off
  (`torch.backends.nnpack.set_flags(False)`): convolutions go through ATen's im2col and MKL's
  matrix product instead. With oneDNN alone off, PyTorch hands a batch of 16 or more to NNPACK,
  which blocks its sums over input channels by the L1/L2/L3 sizes it reads from the CPU
  (`nnp_hwinfo.blocking`): an AMD EPYC with 1 MB of L2 per core and an Intel Xeon with 2 MB sum
  in another order (BENCHMARKS.md, R24: without this, the two hosts trained different weights);
- MKL's conditional numerical reproducibility on its SSE2 branch (`MKL_CBWR=COMPATIBLE`), which
  Intel documents as the branch that gives the same results on non-Intel CPUs too (the AVX2
  branch falls back to MKL's automatic dispatch on them);
- ATen's AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2`) on every CPU that has AVX2, whatever wider
  units it also has (a CPU without AVX2 is refused: its kernels would round differently);
- a fixed thread count (`train.common.threads` > 0): MKL and ATen split sums by thread.

MKL and ATen read their settings once, when the library loads, so they are environment
variables that must be set before the process starts: `relaunch` runs the train stage again in
a child process that has them. The price is speed: a CTC step on the default params takes 2.3x
(AMD EPYC) to 4x (Intel Xeon) as long on 2 cores (BENCHMARKS.md, R23, R24;
`benchmarks/portable_math.py`). CUDA training is not
affected (another GPU's kernels round differently anyway).

Written here rather than taken from a library: no package sets these switches (they belong to
three libraries inside the torch wheel), and which ones matter was measured on this project's
model (`benchmarks/portable_math.py`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

# Read by MKL and ATen when they load: the process must start with them.
ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


def active() -> bool:
    """True when this process started with the portable environment."""
    return all(os.environ.get(k) == v for k, v in ENV.items())


def relaunch(module: str, argv: Sequence[str]) -> bool:
    """Run `python -m module argv` again with `ENV` added and wait for it, unless this process
    already has it. True when it ran (the caller is done), False when the caller should go on
    itself. A failed child is an error."""
    if active():
        return False
    env = {**os.environ, **ENV}
    cmd = [sys.executable, "-m", module, *argv]
    settings = " ".join(f"{k}={v}" for k, v in ENV.items())
    print(f"[train] portable_math: running again under {settings}", flush=True)
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{module} under {settings} failed (exit {done.returncode})")
    return True


def check(threads: int) -> None:
    """Refuse to train with portable_math where the arithmetic would not be portable."""
    import torch

    if not active():
        missing = ", ".join(f"{k}={v}" for k, v in ENV.items() if os.environ.get(k) != v)
        raise RuntimeError(
            f"train.common.portable_math needs {missing} in the environment before the process "
            "starts (MKL and ATen read them once, when they load); the train stages relaunch "
            "themselves with them (mtlib.portable.relaunch)"
        )
    if threads <= 0:
        raise ValueError(
            "train.common.portable_math needs a fixed thread count (train.common.threads > 0): "
            "MKL and ATen split their sums by thread"
        )
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise RuntimeError(
            f"train.common.portable_math: ATen runs its {capability} kernels, not AVX2 (a CPU "
            "without AVX2?): the arithmetic would not be the other machines'. Train without it."
        )


@contextlib.contextmanager
def arithmetic(enabled: bool, threads: int) -> Iterator[None]:
    """Within: oneDNN and NNPACK off when `enabled` (after `check`); the previous settings come
    back after."""
    import torch

    if not enabled:
        yield
        return
    check(threads)
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    (nnpack_before,) = torch.backends.nnpack.set_flags(False)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
        torch.backends.nnpack.set_flags(nnpack_before)
