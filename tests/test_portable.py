"""train.common.portable_math (mtlib.portable): training takes one code path whatever kernels the
CPU offers, so another machine trains the same weights. Another CPU is imitated here by capping
the instruction sets oneDNN and MKL may use, which changes the default arithmetic's weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtlib import portable
from mtlib.train import TrainConfig, train

TESTS = Path(__file__).parent

# Trains a small CTC model (tests/test_models.py) two epochs through mtlib.train.train and prints
# a hash of its weights.
SCRIPT = """
import hashlib, sys
import torch
from test_models import SEGMENTS, make_batch, small_model
from mtlib.train import TrainConfig, train

batches = [make_batch(SEGMENTS[:2], seed=0), make_batch(SEGMENTS[2:], seed=1)]
cfg = TrainConfig(device="cpu", seed=3, batch_size=2, lr=3e-3, warmup_steps=2, epochs=2,
                  threads=2, portable_math=sys.argv[2] == "1")
model = small_model("ctc", seed=0, cnn_channels=[16, 16], lstm_hidden=64)
train("ctc", model, cfg, lambda epoch: batches, batches, lambda m: {"val/note_f1": 0.5},
      sys.argv[1] + "/best.pt", sys.argv[1] + "/resume.pt", "sig", {})
h = hashlib.sha256()
for k, v in model.state_dict().items():
    h.update(v.detach().contiguous().numpy().tobytes())
print("HASH", h.hexdigest())
"""

# What a host with narrower vector units would run by default (an AVX2-only CPU).
OTHER_CPU = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def weights_hash(tmp_path: Path, name: str, portable_math: bool, extra_env: dict) -> str:
    script = tmp_path / "train_small.py"
    script.write_text(SCRIPT)
    out = tmp_path / name
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (*portable.ENV, *OTHER_CPU)}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra_env)
    if portable_math:
        env.update(portable.ENV)
    done = subprocess.run(
        [sys.executable, str(script), str(out), "1" if portable_math else "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("HASH"))


def needs_wider_than_avx2():
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("imitating another CPU needs a CPU with kernels wider than AVX2")


def test_portable_math_trains_the_same_weights_on_other_kernels(tmp_path):
    needs_wider_than_avx2()
    here = weights_hash(tmp_path, "here", True, {})
    other = weights_hash(tmp_path, "other", True, OTHER_CPU)
    assert here == other


def test_without_portable_math_other_kernels_train_other_weights(tmp_path):
    """The imitation is a real one: the default arithmetic changes under it (so the test above
    could fail)."""
    needs_wider_than_avx2()
    here = weights_hash(tmp_path, "here", False, {})
    other = weights_hash(tmp_path, "other", False, OTHER_CPU)
    assert here != other


def test_portable_math_is_refused_without_its_environment(tmp_path, monkeypatch):
    for key in portable.ENV:
        monkeypatch.delenv(key, raising=False)
    cfg = TrainConfig(device="cpu", epochs=1, threads=1, portable_math=True)
    with pytest.raises(RuntimeError, match="MKL_CBWR=COMPATIBLE.*before the process starts"):
        train("ctc", None, cfg, None, None, None, tmp_path / "b.pt", tmp_path / "r.pt", "s", {})
    assert torch.backends.mkldnn.enabled, "a refused run leaves oneDNN as it was"


def test_portable_math_needs_a_fixed_thread_count(monkeypatch):
    for key, value in portable.ENV.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="train.common.threads > 0"):
        portable.check(threads=0)


def test_relaunch_runs_the_module_again_with_the_environment(tmp_path, monkeypatch):
    (tmp_path / "print_env.py").write_text(
        "import os, sys\n"
        "open(sys.argv[1], 'w').write(os.environ['MKL_CBWR'] + ' ' + os.environ['ATEN_CPU_CAPABILITY'])\n"
    )
    for key in portable.ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = tmp_path / "env.txt"
    assert portable.relaunch("print_env", [str(out)]) is True
    assert out.read_text() == "COMPATIBLE avx2"
    # inside the relaunched process nothing runs a third time
    for key, value in portable.ENV.items():
        monkeypatch.setenv(key, value)
    assert portable.relaunch("print_env", [str(tmp_path / "again.txt")]) is False
    assert not (tmp_path / "again.txt").exists()


def test_a_failed_relaunch_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "fail.py").write_text("raise SystemExit(3)\n")
    for key in portable.ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="fail under MKL_CBWR=COMPATIBLE.*exit 3"):
        portable.relaunch("fail", [])


# Runs a convolution on a batch of 16 (forward and backward) under the profiler, with the
# portable arithmetic or with oneDNN alone off, and prints the ATen ops it called.
CONV_SCRIPT = """
import sys
import torch
from torch.profiler import ProfilerActivity, profile
from mtlib import portable

torch.manual_seed(0)
x = torch.randn(16, 1, 32, 24, requires_grad=True)
conv = torch.nn.Conv2d(1, 8, 3, padding=1)
if sys.argv[1] == "portable":
    context = portable.arithmetic(True, 2)
else:
    torch.backends.mkldnn.enabled = False
    context = torch.backends.nnpack.flags(enabled=True)
with context, profile(activities=[ProfilerActivity.CPU]) as prof:
    conv(x).square().sum().backward()
print("NNPACK_AFTER", torch._C._get_nnpack_enabled())
print("OPS", " ".join(sorted({e.name for e in prof.events()})))
"""


def conv_ops(tmp_path: Path, how: str) -> tuple[set[str], str]:
    script = tmp_path / "conv_ops.py"
    script.write_text(CONV_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in portable.ENV}
    env.update(portable.ENV)
    done = subprocess.run(
        [sys.executable, str(script), how], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return set(lines["OPS"].split()), lines["NNPACK_AFTER"]


def test_portable_math_keeps_convolutions_off_cache_blocked_libraries(tmp_path):
    """NNPACK blocks its sums by the CPU's cache sizes, oneDNN by its ISA and caches: neither may
    run under portable_math (R24: an AMD and an Intel host trained different weights while NNPACK
    ran), and the flags come back afterwards."""
    ops, nnpack_after = conv_ops(tmp_path, "portable")
    assert "aten::convolution_backward" in ops, "the profiler saw the convolution"
    assert not {op for op in ops if "nnpack" in op or "mkldnn" in op}, sorted(ops)
    assert nnpack_after == "True"


def test_with_onednn_alone_off_a_batch_of_16_goes_to_nnpack(tmp_path):
    """The check above can fail: without portable_math's NNPACK switch this convolution runs
    in NNPACK (where the wheel has it)."""
    if not torch.backends.nnpack.is_available():
        pytest.skip("this PyTorch build has no NNPACK")
    ops, _ = conv_ops(tmp_path, "onednn-off")
    assert "aten::_nnpack_spatial_convolution" in ops
