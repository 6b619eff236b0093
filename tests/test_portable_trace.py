"""benchmarks/portable_math.py --trace: a fingerprint of every step of a training run, so that two
machines that train different weights can see where their arithmetic first parts. A difference
is planted here on one machine and the trace must name where it is."""

from __future__ import annotations

import torch
from test_models import SEGMENTS, make_batch, small_model

from benchmarks.portable_math import digest, first_difference, trace_steps
from mtlib.train import TrainConfig, TrainRun


def trace(perturb=None, batch_seed: int = 1) -> list[list[str]]:
    """Three steps of a small CTC model; `perturb(model)` runs on the model before training."""
    model = small_model("ctc", seed=0)
    if perturb is not None:
        perturb(model)
    cfg = TrainConfig(device="cpu", seed=0, batch_size=2, lr=3e-3, warmup_steps=1, epochs=1)
    batches = [
        make_batch(SEGMENTS[:2], seed=0),
        make_batch(SEGMENTS[2:], seed=batch_seed),
        make_batch(SEGMENTS[1:3], seed=2),
    ]
    torch.manual_seed(0)
    return trace_steps(model, TrainRun(model, cfg, torch.device("cpu"), len(batches)), batches)


def test_the_same_run_gives_the_same_trace_and_it_covers_every_step():
    a, b = trace(), trace()
    assert first_difference(a, b) is None
    labels = [label for label, _ in a]
    assert labels[0] == "batches"
    assert any(x.startswith("init/") for x in labels)
    assert "forward/encoder.lstm#1" in labels
    assert any(x.startswith("loss/") for x in labels) and any(x.startswith("grad/") for x in labels)
    assert labels[-2:] == ["step 2", "step 3"]
    # the first forward pass is recorded in call order: the CNN before the LSTM before the heads
    assert labels.index("forward/encoder.blocks.0#1") < labels.index("forward/encoder.lstm#1")
    assert labels.index("forward/encoder.lstm#1") < labels.index("forward/encoder.onset_head#1")


def test_other_data_parts_at_the_batches():
    assert first_difference(trace(), trace(batch_seed=5)).startswith("batches:")


def test_another_initial_weight_parts_at_that_weight():
    def bump(model):
        with torch.no_grad():
            model.encoder.proj.weight[0, 0] += 1e-3

    diff = first_difference(trace(), trace(bump))
    assert diff.startswith("init/encoder.proj.weight:")


def test_a_kernel_that_rounds_differently_parts_at_its_module():
    """The last bit of the LSTM's output changed, as another CPU's kernel might round it: the
    first difference is that module's output, not anything before it."""

    def last_bit(model):
        def on_tensor(_module, _inputs, output):
            out, state = output  # the encoder packs its batch: out is a PackedSequence
            data = torch.nextafter(out.data, torch.full_like(out.data, torch.inf))
            return out._replace(data=data), state

        model.encoder.lstm.register_forward_hook(on_tensor)

    diff = first_difference(trace(), trace(last_bit))
    assert diff.startswith("forward/encoder.lstm#1:"), diff


def test_first_difference_names_entries_only_one_trace_has():
    a = [["batches", "1"], ["step 2", "2"]]
    assert first_difference(a, a[:1]) == "'step 2': only one trace has it (and those after)"
    assert "did not compute the same things" in first_difference(a, [["batches", "1"], ["x", "2"]])


def test_digest_sees_dtype_shape_and_values():
    x = torch.arange(6, dtype=torch.float32)
    assert digest(x) == digest(x.clone())
    assert digest(x) != digest(x.double())
    assert digest(x) != digest(x.reshape(2, 3))
    assert digest(x) != digest(torch.nextafter(x, x + 1))
    assert digest((x, None, "text")) == digest([x]) != digest([x, x])
    assert digest({"a": x, "b": 1}) == digest([x])
    assert digest("not a tensor") is None and digest([None]) is None
