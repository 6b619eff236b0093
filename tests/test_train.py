"""The shared training loop: an interrupted run resumes at the saved epoch and ends exactly where
an uninterrupted run ends (same weights, optimizer state and RNG stream), on CPU."""

from __future__ import annotations

import pytest
import torch
from test_models import SEGMENTS, make_batch, small_model

from mtlib.train import TrainConfig, train

BATCHES = [make_batch(SEGMENTS[:2], seed=0), make_batch(SEGMENTS[2:], seed=1)]


class Interrupted(Exception):
    pass


def run(tmp_path, kind: str, model, interrupt_at: int | None = None):
    cfg = TrainConfig(
        device="cpu", seed=3, batch_size=2, lr=3e-3, warmup_steps=2, epochs=3, threads=1
    )
    seen: list[int] = []

    def validate(m) -> dict[str, float]:
        seen.append(len(seen) + 1)
        if interrupt_at is not None and len(seen) == interrupt_at:
            raise Interrupted
        return {"val/note_f1": 0.1 * len(seen)}

    result = train(
        kind,
        model,
        cfg,
        lambda epoch: BATCHES,
        BATCHES,
        validate,
        tmp_path / "best.pt",
        tmp_path / "resume.pt",
        "sig",
        {},
    )
    return result


@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, kind, capsys):
    torch.set_num_threads(1)
    straight = small_model(kind, seed=0, dropout=0.2)  # dropout: the RNG stream matters
    run(tmp_path / "a", kind, straight)

    interrupted = small_model(kind, seed=0, dropout=0.2)
    with pytest.raises(Interrupted):
        run(tmp_path / "b", kind, interrupted, interrupt_at=2)  # dies inside epoch 2's validation
    saved = torch.load(tmp_path / "b" / "resume.pt", weights_only=False)
    assert saved["epoch"] == 1
    assert saved["optimizer"]["state"], "the optimizer's moments are persisted"

    resumed = small_model(
        kind, seed=7, dropout=0.2
    )  # other initial weights: all must come from the file
    result = run(tmp_path / "b", kind, resumed)
    assert "resuming from" in capsys.readouterr().out
    assert result.epochs_run == 3 and len(result.history) == 3
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not (tmp_path / "b" / "resume.pt").exists(), (
        "the resume state is removed when training ends"
    )
    assert (tmp_path / "b" / "best.pt").exists()


def test_resume_ignores_a_state_of_another_configuration(tmp_path, capsys):
    torch.set_num_threads(1)
    with pytest.raises(Interrupted):
        run(tmp_path, "ctc", small_model("ctc"), interrupt_at=2)
    cfg = TrainConfig(device="cpu", seed=3, epochs=1, threads=1, warmup_steps=1)
    train(
        "ctc",
        small_model("ctc"),
        cfg,
        lambda e: BATCHES,
        BATCHES,
        lambda m: {"val/note_f1": 0.0},
        tmp_path / "best.pt",
        tmp_path / "resume.pt",
        "other-signature",
        {},
    )
    assert "belongs to another configuration" in capsys.readouterr().out


def test_time_guard_is_opt_in_and_loud(tmp_path, capsys):
    """A wall-clock guard makes the model depend on the machine's speed: it is off in the default
    params, and when a user sets it and it fires, training says so on stderr and as a warning."""
    import yaml

    from mtlib.train import TrainingStoppedEarly

    params = yaml.safe_load(open("params.yaml"))
    assert params["train"]["ctc"].get("max_minutes", 0) == 0
    assert params["train"]["seq2seq"].get("max_minutes", 0) == 0
    torch.set_num_threads(1)
    cfg = TrainConfig(
        device="cpu", seed=3, batch_size=2, warmup_steps=1, epochs=3, threads=1, max_minutes=1e-9
    )
    with pytest.warns(TrainingStoppedEarly, match="0 of 3 epochs"):
        result = train(
            "ctc",
            small_model("ctc"),
            cfg,
            lambda epoch: BATCHES,
            BATCHES,
            lambda m: {"val/note_f1": 0.5},
            tmp_path / "best.pt",
            tmp_path / "resume.pt",
            "sig",
            {},
        )
    assert result.stopped_early and result.epochs_run == 0
    assert "TRAINING STOPPED EARLY" in capsys.readouterr().err


def test_a_slow_machine_trains_the_same_model(tmp_path):
    """Without the guard, how long an epoch takes changes nothing: a run whose validation is slow
    ends with the same weights as a fast one, and writes the very same checkpoint file (no wall
    clock in it: DVC's hash of the model is then the same on any machine)."""
    import time

    torch.set_num_threads(1)
    cfg = TrainConfig(device="cpu", seed=3, batch_size=2, warmup_steps=1, epochs=2, threads=1)
    models = []
    for name, delay in (("fast", 0.0), ("slow", 0.3)):
        model = small_model("ctc", seed=0, dropout=0.2)

        def validate(m, delay=delay):
            time.sleep(delay)
            return {"val/note_f1": 0.5}

        result = train(
            "ctc",
            model,
            cfg,
            lambda epoch: BATCHES,
            BATCHES,
            validate,
            tmp_path / name / "best.pt",
            tmp_path / name / "resume.pt",
            "sig",
            {},
        )
        assert result.epochs_run == 2 and not result.stopped_early
        models.append(model)
    for (key, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    fast, slow = ((tmp_path / name / "best.pt").read_bytes() for name in ("fast", "slow"))
    assert fast == slow


@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_validating_less_often_trains_the_same_model(tmp_path, kind):
    """train.*.val_every only skips validation (the val loss and the model run in eval mode, which
    draw nothing): the weights come out the same, and the best checkpoint is chosen among the
    validated epochs (every 2nd and the last)."""
    torch.set_num_threads(1)
    models, results = [], []
    for val_every in (1, 2):
        cfg = TrainConfig(
            device="cpu",
            seed=3,
            batch_size=2,
            warmup_steps=1,
            epochs=3,
            threads=1,
            val_every=val_every,
        )
        model = small_model(kind, seed=0, dropout=0.2)
        scores = iter([0.3, 0.9, 0.1] if val_every == 1 else [0.9, 0.1])

        def validate(m, scores=scores):
            m.eval()  # as the Transcriber does
            with torch.no_grad():
                m(BATCHES[0])
            return {"val/note_f1": next(scores)}

        out = tmp_path / str(val_every)
        results.append(
            train(
                kind,
                model,
                cfg,
                lambda e: BATCHES,
                BATCHES,
                validate,
                out / "best.pt",
                out / "resume.pt",
                "sig",
                {},
            )
        )
        models.append(model)
    for (key, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    assert [r.best_epoch for r in results] == [2, 2]
    assert ["val/note_f1" in row for row in results[1].history] == [False, True, True]


@pytest.mark.parametrize(
    ("kind", "frame_hidden", "features", "offset"),
    [
        ("ctc", 0, False, 0.0),
        ("seq2seq", 0, False, 0.0),
        ("ctc", 4, False, 0.0),
        ("ctc", 4, True, 0.0),
        ("ctc", 4, True, 1.0),
    ],
)
def test_a_detached_frame_head_leaves_the_model_it_probes_unchanged(
    tmp_path, kind, frame_hidden, features, offset
):
    """A detached frame head is a probe of the encoder: trained with it or without it, every
    other weight comes out bit-identical (its initialisation draws from its own stream, its
    gradients are clipped on their own), and the probe itself learns; with its own BiLSTM too,
    reading the input features too, and with an offset head beside it."""
    torch.set_num_threads(1)
    plain = small_model(kind, seed=0, dropout=0.2, frame_weight=0.0)
    probed = small_model(
        kind,
        seed=0,
        dropout=0.2,
        frame_weight=1.0,
        frame_detach=True,
        frame_hidden=frame_hidden,
        frame_features=features,
        offset_weight=offset,
    )
    start = {k: v.clone() for k, v in probed.encoder.frame_head.state_dict().items()}
    run(tmp_path / "plain", kind, plain)
    run(tmp_path / "probed", kind, probed)
    probed_state = probed.state_dict()
    stack = {f"encoder.{k}" for k in probed.encoder.state_dict() if k.startswith("frame_stack.")}
    assert len(stack) == (8 if frame_hidden else 0)  # two directions x (2 weights + 2 biases)
    offset_keys = {"encoder.offset_head.weight", "encoder.offset_head.bias"} if offset else set()
    assert set(probed_state) - set(plain.state_dict()) == {
        "encoder.frame_head.weight",
        "encoder.frame_head.bias",
        *stack,
        *offset_keys,
    }
    for key, a in plain.state_dict().items():
        torch.testing.assert_close(a, probed_state[key], rtol=0, atol=0, msg=key)
    learned = probed.encoder.frame_head.state_dict()
    assert any(not torch.equal(start[k], learned[k]) for k in start)


def test_class_weights_follow_token_frequency_and_ignore_pad():
    from mtlib.train import token_class_weights
    from mtlib.vocab import Vocabulary

    vocab = Vocabulary(max_shift=2, min_pitch=60, max_pitch=61)  # 4 + 2 + 4 = 10 ids
    on, eos = vocab.note_on(60), vocab.EOS
    w = token_class_weights([[on, on, on, eos, vocab.PAD, vocab.PAD]], vocab, 1.0).numpy()
    assert w.shape == (vocab.size,)
    assert w[eos] == pytest.approx(3 * w[on])  # 1/count, three ONs against one EOS
    assert w[on] * 3 + w[eos] == pytest.approx(4.0)  # mean 1 over the tokens seen
    assert w[vocab.PAD] == w[eos] == w.max()  # PAD counts as unseen: the largest seen weight
    assert (token_class_weights([[on, eos]], vocab, 0.0).numpy() == 1).all()


def test_a_frozen_encoder_stays_bit_identical_while_the_decoder_learns(tmp_path):
    """train.seq2seq.encoder_lr_scale 0: the encoder and its heads keep every weight and BatchNorm
    statistic (eval mode under model.train(): no dropout, no running-stat updates) and take no
    gradient, while the decoder trains."""
    torch.set_num_threads(1)
    model = small_model("seq2seq", seed=0, dropout=0.2, frame_hidden=4)
    model.encoder.freeze()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert model.training and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    run(tmp_path, "seq2seq", model)
    after = model.state_dict()
    for key, value in before.items():
        same = torch.equal(value, after[key])
        assert same == key.startswith("encoder."), key


def test_freezing_an_encoder_that_was_never_trained_is_refused():
    from mtlib.train import fresh_model

    cfg = TrainConfig(encoder_lr_scale=0.0, init_encoder="")
    with pytest.raises(ValueError, match="train.seq2seq.encoder_lr_scale 0 freezes the encoder"):
        fresh_model("seq2seq", cfg, {}, None, None, "unused.npz")
