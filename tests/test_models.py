"""Tests for mtlib/models: the shared encoder, CTC, Seq2Seq with additive attention, checkpoints.

Batches are made here from a few frame notes with the project's own token functions
(mtlib.events) and collate function (mtlib.dataset), on small configs so each test is quick."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.dataset import collate
from mtlib.decode import DecodeConfig, ctc_greedy, s2s_greedy
from mtlib.events import FrameNote, ctc_targets, segment_tokens
from mtlib.models import (
    AdditiveAttention,
    Seq2SeqModel,
    build_model,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from mtlib.vocab import Vocabulary

N_MELS = 16
VOCAB = Vocabulary(max_shift=8, min_pitch=60, max_pitch=71)  # 12 pitches: small heads, fast tests
P = VOCAB.n_pitches


def small_config(kind: str, **encoder) -> dict:
    enc = {
        "cnn_channels": [4, 8],
        "lstm_hidden": 32,
        "lstm_layers": 1,
        "dropout": 0.0,
        "onset_weight": 1.0,
        "frame_weight": 1.0,
        **encoder,
    }
    head = (
        {"upsample": 3}
        if kind == "ctc"
        else {
            "embed_dim": 16,
            "decoder_hidden": 64,
            "attention_dim": 32,
            "dropout": 0.0,
            "position_window": 3,
        }
    )
    return {"encoder": enc, kind: head, "n_mels": N_MELS, "n_pitches": P}


def small_model(kind: str, seed: int = 0, **encoder):
    torch.manual_seed(seed)
    return build_model(kind, small_config(kind, **encoder), VOCAB)


def make_item(notes: list[FrameNote], n_frames: int, rng: np.random.Generator) -> dict:
    """One SegmentDataset-like item: random features, the contract's Seq2Seq and CTC targets."""
    ids, frames = ctc_targets(notes, 0, n_frames, VOCAB.ctc)
    return {
        "features": rng.normal(size=(n_frames, N_MELS)).astype(np.float32),
        "tokens": np.asarray(segment_tokens(notes, 0, n_frames, VOCAB)),
        "ctc_tokens": ids,
        "ctc_frames": frames,
        "track": "t",
        "segment": 0,
        "start_frame": 0,
    }


def make_batch(segments: list[tuple[list[FrameNote], int]], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return collate([make_item(notes, n, rng) for notes, n in segments], vocab=VOCAB)


SEGMENTS = [  # (frame notes, n_frames): a chord, a melody, an empty segment, a held note
    ([FrameNote(2, 9, 60), FrameNote(2, 9, 64), FrameNote(2, 9, 67)], 16),
    ([FrameNote(1, 4, 62), FrameNote(5, 8, 65), FrameNote(9, 14, 69)], 16),
    ([], 12),
    ([FrameNote(0, 30, 71), FrameNote(6, 10, 60)], 14),
]


# --------------------------------------------------------------------------- encoder


def test_encoder_output_does_not_depend_on_batch_padding():
    model = small_model("ctc").eval()
    batch = make_batch(SEGMENTS)
    with torch.no_grad():
        H, lengths = model.encoder(batch["features"], batch["feature_lengths"])
        for b, (_, n) in enumerate(SEGMENTS):
            alone, _ = model.encoder(batch["features"][b : b + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(H[b, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert lengths.tolist() == [n for _, n in SEGMENTS]


@pytest.mark.parametrize("n_mels", [16, 15])
def test_a_strided_cnn_halves_frequency_as_max_pool_does_and_ignores_padding(n_mels):
    counts = {}
    for pool in ("max", "stride"):
        torch.manual_seed(0)
        cfg = {**small_config("ctc", cnn_pool=pool), "n_mels": n_mels}
        model = build_model("ctc", cfg, VOCAB).eval()
        x = torch.randn(2, 10, n_mels)
        H, _ = model.encoder(x, torch.tensor([10, 6]))
        alone, _ = model.encoder(x[1:, :6], torch.tensor([6]))
        torch.testing.assert_close(H[1, :6], alone[0], atol=1e-5, rtol=1e-5)
        pools = [m for m in model.encoder.modules() if isinstance(m, torch.nn.MaxPool2d)]
        assert len(pools) == (2 if pool == "max" else 0)
        # 15 bins: max-pool floors (15 -> 7 -> 3), a strided conv rounds up (15 -> 8 -> 4)
        assert model.encoder.cnn_dim == 8 * {"max": n_mels // 4, "stride": -(-n_mels // 4)}[pool]
        counts[pool] = count_parameters(model.encoder.blocks)
    assert counts["max"] == counts["stride"]
    with pytest.raises(ValueError, match="model.encoder.cnn_pool must be max or stride"):
        build_model("ctc", small_config("ctc", cnn_pool="avg"), VOCAB)


def assert_head_ignores_padding(model, batch: dict, head: str) -> None:
    """Each SEGMENTS item's `head` logits are the same alone as padded in `batch`."""
    with torch.no_grad():
        _, _, heads = model.encoder.encode_batch(batch)
        for b, (_, n) in enumerate(SEGMENTS):
            alone = {
                "features": batch["features"][b : b + 1, :n],
                "feature_lengths": torch.tensor([n]),
            }
            _, _, one = model.encoder.encode_batch(alone)
            torch.testing.assert_close(heads[head][b, :n], one[head][0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("features", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_frame_stack_reads_the_onsets_and_ignores_batch_padding(features, layers):
    """With `frame_hidden` the frame head is a BiLSTM (`frame_layers` deep) over H and the onset
    probabilities (Onsets and Frames' frame stack), with `frame_features` the normalised input
    features too: packed by length, so an item's frame logits are the same alone or padded in a
    batch; its loss trains neither the encoder (detached) nor the onset head."""
    model = small_model(
        "ctc", frame_hidden=5, frame_layers=layers, frame_detach=True, frame_features=features
    ).eval()
    assert model.encoder.frame_stack.input_size == 2 * 32 + P + (N_MELS if features else 0)
    assert model.encoder.frame_stack.num_layers == layers
    assert model.encoder.frame_head.in_features == 2 * 5
    batch = make_batch(SEGMENTS)
    assert_head_ignores_padding(model, batch, "frame")
    _, losses = model.train()(batch)
    losses["loss/frame"].backward()
    moved = {n.split(".")[0] for n, p in model.encoder.named_parameters() if p.grad is not None}
    assert moved == {"frame_stack", "frame_head"}
    assert {id(p) for p in model.encoder.probe_parameters()} == {
        id(p) for n, p in model.encoder.named_parameters() if n.split(".")[0] in moved
    }


def test_frame_features_reach_the_frame_head_and_nothing_else():
    """`frame_features`: the frame logits read the input spectrum directly (a change in one bin
    moves them even where H cannot see it: H taken as given), the onset head does not."""
    model = small_model("ctc", frame_hidden=0, frame_detach=True, frame_features=True).eval()
    assert model.encoder.frame_head.in_features == 2 * 32 + N_MELS
    batch = make_batch(SEGMENTS[:1])
    lengths = batch["feature_lengths"]
    with torch.no_grad():
        H, enc_lengths = model.encoder(batch["features"], lengths)
        before = model.encoder.head_logits(H, enc_lengths, batch["features"])
        louder = batch["features"].clone()
        louder[:, 3, 5] += 4.0  # one bin of one frame
        after = model.encoder.head_logits(H, enc_lengths, louder)
    torch.testing.assert_close(before["onset"], after["onset"], rtol=0, atol=0)
    moved = (before["frame"] != after["frame"]).any(-1)[0]
    assert moved.nonzero().flatten().tolist() == [3]  # a linear head: that frame only
    with pytest.raises(ValueError, match="frame_features"):
        model.encoder.head_logits(H, enc_lengths)


@pytest.mark.parametrize("features", [False, True])
def test_the_onset_stack_reads_h_and_the_spectrum_ignores_padding_and_trains_the_encoder(features):
    """With `onset_hidden` the onset head is a BiLSTM over H (Onsets and Frames' onset stack), with
    `onset_features` over the normalised input features too: packed by length, so an item's onset
    logits are the same alone or padded in a batch; unlike the detached frame head, its loss
    trains the encoder. A change in one bin of one frame reaches the onset logits of other frames
    (the BiLSTM's context) with H held as given."""
    model = small_model("ctc", onset_hidden=6, onset_features=features).eval()
    assert model.encoder.onset_stack.input_size == 2 * 32 + (N_MELS if features else 0)
    assert model.encoder.onset_head.in_features == 2 * 6
    batch = make_batch(SEGMENTS)
    assert_head_ignores_padding(model, batch, "onset")
    with torch.no_grad():
        H, enc_lengths = model.encoder(batch["features"], batch["feature_lengths"])
        before = model.encoder.head_logits(H, enc_lengths, batch["features"])
        louder = batch["features"].clone()
        louder[0, 3, 5] += 4.0
        after = model.encoder.head_logits(H, enc_lengths, louder)
    moved = (before["onset"] != after["onset"]).any(-1)[0].nonzero().flatten().tolist()
    assert moved == (list(range(SEGMENTS[0][1])) if features else [])
    _, losses = model.train()(batch)
    losses["loss/onset"].backward()
    grads = {n.split(".")[0] for n, p in model.encoder.named_parameters() if p.grad is not None}
    assert {"onset_stack", "onset_head", "lstm"} <= grads


def test_onset_features_need_the_onset_stack():
    with pytest.raises(ValueError, match="onset_features needs model.encoder.onset_hidden"):
        small_model("ctc", onset_features=True)


def ctc_reading_onsets(onset_input: bool, seed: int = 0, **encoder):
    cfg = small_config("ctc", **encoder)
    cfg["ctc"]["onset_input"] = onset_input
    torch.manual_seed(seed)
    return build_model("ctc", cfg, VOCAB)


def test_the_ctc_layer_reads_the_onset_stack_from_zero_and_the_ctc_loss_never_trains_the_stack():
    """`model.ctc.onset_input`: the output layer also reads the onset stack's output. It starts at
    zero from a stream of its own, so every other weight and the first emissions are as without
    it; the CTC loss trains it, never the onset stack (its input is detached), and once it is
    non-zero the emissions read the stack."""
    plain, reading = (
        ctc_reading_onsets(False, onset_hidden=6),
        ctc_reading_onsets(True, onset_hidden=6),
    )
    weights = reading.state_dict()
    assert set(weights) - set(plain.state_dict()) == {"onset_input.weight"}
    assert all(torch.equal(v, weights[k]) for k, v in plain.state_dict().items())
    assert weights["onset_input.weight"].shape == (3 * reading.vocab_size, 2 * 6)
    batch = make_batch(SEGMENTS)
    with torch.no_grad():
        assert torch.equal(plain.eval().emissions(batch)[0], reading.eval().emissions(batch)[0])
    _, losses = reading.train()(batch)
    losses["loss/ctc"].backward()
    assert reading.onset_input.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in reading.encoder.onset_stack.parameters())
    assert reading.encoder.lstm.weight_ih_l0.grad.abs().sum() > 0  # H still learns from CTC
    with torch.no_grad():
        reading.onset_input.weight.normal_()
        assert not torch.equal(plain.eval().emissions(batch)[0], reading.eval().emissions(batch)[0])


def test_onset_input_needs_the_onset_stack():
    with pytest.raises(ValueError, match="model.ctc.onset_input needs the onset stack"):
        ctc_reading_onsets(True)


def test_harmonic_stack_lines_up_each_harmonic_with_its_fundamental():
    from mtlib.models.encoder import harmonic_stack

    x = torch.arange(10.0).reshape(1, 1, 10)  # bin k holds k
    out = harmonic_stack(x, (-2, 0, 3, 12))
    assert out.shape == (1, 4, 1, 10)
    assert out[0, 0, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]  # bin k reads k - 2
    assert out[0, 1, 0].tolist() == list(range(10))
    assert out[0, 2, 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 0, 0]  # bin k reads k + 3
    assert not out[0, 3].any()  # shifted past the top: all zero


def test_an_hcqt_encoder_takes_one_channel_per_harmonic_and_round_trips(tmp_path):
    """The shifts are a data key: build_model takes them beside n_mels, the first convolution
    gets one input channel per harmonic, and the checkpoint rebuilds the same model."""
    torch.manual_seed(0)
    config = {**small_config("ctc"), "harmonic_shifts": (-4, 0, 4, 6)}
    model = build_model("ctc", config, VOCAB).eval()
    assert model.encoder.blocks[0][0].in_channels == 4
    x = torch.randn(2, 12, N_MELS)
    lengths = torch.tensor([12, 9])
    H, _ = model.encoder(x, lengths)
    assert H.shape[:2] == (2, 12)
    save_checkpoint(tmp_path / "m.pt", model)
    again, _ = load_checkpoint(tmp_path / "m.pt")
    assert again.enc_cfg.harmonic_shifts == (-4, 0, 4, 6)
    assert torch.equal(again.encoder(x, lengths)[0], H)
    plain = small_model("ctc")  # no shifts: one channel, as every checkpoint before hcqt
    assert plain.encoder.blocks[0][0].in_channels == 1


def test_feature_stats_normalise_and_are_checked():
    model = small_model("ctc").eval()
    batch = make_batch(SEGMENTS[:1])
    mean, std = torch.linspace(-2, 2, N_MELS), torch.linspace(0.5, 3, N_MELS)
    with torch.no_grad():
        ref, _ = model.encoder(batch["features"], batch["feature_lengths"])
        model.set_feature_stats(mean, std)
        shifted, _ = model.encoder(batch["features"] * std + mean, batch["feature_lengths"])
    torch.testing.assert_close(shifted, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="16"):
        model.set_feature_stats(torch.zeros(5), torch.ones(5))


@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_shapes_with_time_downsample_2(kind):
    model = small_model(kind, time_downsample=2).eval()
    batch = make_batch(SEGMENTS)  # 16, 16, 12, 14 feature frames → 8, 8, 6, 7 encoder frames
    outputs, losses = model(batch)
    assert set(losses) == {"loss/ctc" if kind == "ctc" else "loss/ce", "loss/onset", "loss/frame"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert outputs["heads"]["onset"].shape == outputs["heads"]["frame"].shape == (4, 8, P)
    if kind == "ctc":
        assert outputs["log_probs"].shape == (4, 8 * 3, VOCAB.ctc.size)
        assert outputs["lengths"].tolist() == [24, 24, 18, 21]
        assert model.slot_to_frame(np.array([0, 2, 3, 23])).tolist() == [0, 0, 2, 14]
        probs = model.infer(batch)["head_probs"]
        assert probs["onset"].shape == probs["frame"].shape == (4, 16, P)
    else:
        assert outputs["logits"].shape == (4, batch["tokens"].shape[1], VOCAB.size)
        assert outputs["attention"].shape == (4, batch["tokens"].shape[1], 8)


def test_frame_roll_is_the_sounding_notes_of_each_segment():
    batch = make_batch(SEGMENTS)
    roll = batch["frame_roll"]
    assert roll.shape == (4, 16, P)
    assert roll[0, 2:9, [0, 4, 7]].all() and roll[0].sum() == 3 * 7  # the chord, offsets exclusive
    assert roll[1, 1:4, 2].all() and roll[1, 9:14, 9].all() and roll[1].sum() == 3 + 3 + 5
    assert roll[2].sum() == 0
    # 71 sounds through the whole 14-frame segment (onset 0), 60 from 6 to 10; padding stays 0
    assert roll[3, :14, 11].all() and roll[3, 6:10, 0].all() and roll[3].sum() == 14 + 4


def test_offset_roll_marks_each_release_frame_and_no_note_the_segment_cuts():
    roll = make_batch(SEGMENTS)["offset_roll"]
    assert roll.shape == (4, 16, P)
    assert roll[0, 9, [0, 4, 7]].all() and roll[0].sum() == 3  # the chord's release at frame 9
    assert roll[1, 4, 2] and roll[1, 8, 5] and roll[1, 14, 9] and roll[1].sum() == 3
    assert roll[2].sum() == 0
    # 71 still sounds when its 14-frame segment ends: no offset; 60 is released at 10
    assert roll[3, 10, 0] and roll[3].sum() == 1


def test_an_offset_head_reads_the_frame_stack_and_trains_on_releases():
    model = small_model("ctc", frame_hidden=4, frame_detach=True, offset_weight=1.0)
    batch = make_batch(SEGMENTS)
    outputs, losses = model(batch)
    assert set(losses) == {"loss/ctc", "loss/onset", "loss/frame", "loss/offset"}
    losses["loss/offset"].backward()
    grads = {
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    # it trains itself and the frame stack it reads, never the encoder (a probe) nor the frame head
    assert {n.split(".")[1] for n in grads} == {"offset_head", "frame_stack"}
    probs = model.infer(batch)["head_probs"]
    assert probs["offset"].shape == probs["frame"].shape == (4, 16, P)
    # ... so its gradients are clipped with the probe's, apart from the model's
    probe = {id(p) for p in model.encoder.probe_parameters()}
    assert {id(p) for p in model.encoder.offset_head.parameters()} <= probe
    with pytest.raises(ValueError, match="offset_weight > 0 needs the frame head"):
        small_model("ctc", frame_weight=0.0, offset_weight=1.0)


def test_a_checkpoint_without_a_frame_head_still_loads(tmp_path):
    """Checkpoints written before the frame head existed have no frame_weight: they load without one."""
    model = small_model("ctc", frame_weight=0.0)
    save_checkpoint(tmp_path / "old.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    assert (
        loaded.encoder.frame_head is None
        and "frame" not in loaded.infer(make_batch(SEGMENTS[:1]))["head_probs"]
    )


def test_config_errors_name_the_key():
    with pytest.raises(KeyError, match="model.encoder.*lstm_size"):
        build_model("ctc", {"encoder": {"lstm_size": 3}, "ctc": {}}, VOCAB)
    with pytest.raises(KeyError, match="model.seq2seq.*beam"):
        build_model("seq2seq", {"seq2seq": {"beam": 3}}, VOCAB)
    with pytest.raises(ValueError, match="unknown model kind 'rnnt'"):
        build_model("rnnt", {}, VOCAB)
    with pytest.raises(ValueError, match="frame_layers must be at least 1"):
        small_model("ctc", frame_hidden=4, frame_layers=0)


# --------------------------------------------------------------------------- attention


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_attention_weights_sum_to_one_and_ignore_padding(lengths, seed):
    torch.manual_seed(seed)
    attention = AdditiveAttention(query_dim=6, key_dim=5, attention_dim=4)
    B, T = len(lengths), max(lengths)
    H = torch.randn(B, T, 5)
    H[torch.arange(T)[None] >= torch.tensor(lengths)[:, None]] = 1e3  # padding must not leak in
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    context, weights = attention(torch.randn(B, 6), attention.keys(H), H, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    assert (weights[~mask] == 0).all()
    assert context.abs().max() < 1e2


# --------------------------------------------------------------------------- Seq2Seq


def test_decode_step_reproduces_teacher_forced_logits():
    model = small_model("seq2seq", dropout=0.1).eval()
    batch = make_batch(SEGMENTS)
    with torch.no_grad():
        outputs, _ = model(batch)
        H, mask, state = model.begin_decode(batch)
        prev = torch.full((4,), VOCAB.SOS)
        for t in range(batch["tokens"].shape[1]):
            logits, state, weights = model.decode_step(prev, state, H, mask)
            torch.testing.assert_close(logits, outputs["logits"][:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(weights, outputs["attention"][:, t])
            prev = batch["tokens"][:, t]


def test_decoder_position_is_the_sum_of_the_shifts_read():
    """state.pos follows the gold TIME_SHIFTs: after each token it is the frame of the next event."""
    model = small_model("seq2seq").eval()
    assert model.max_shift == VOCAB.max_shift
    notes, n = SEGMENTS[1]
    batch = make_batch([(notes, n)])
    tokens = batch["tokens"][0]
    with torch.no_grad():
        H, mask, state = model.begin_decode(batch)
        prev, frame = torch.tensor([VOCAB.SOS]), 0
        for tok in tokens.tolist():
            _, state, _ = model.decode_step(prev, state, H, mask)
            assert int(state.pos[0]) == frame
            ev = VOCAB.decode(tok)
            frame += ev.value if ev.type == "shift" else 0
            prev = torch.tensor([tok])
    # the events of that segment are at frames 1, 4, 5, 8, 9, 14: the shifts must have reached 14
    assert frame == 14


def test_location_bias_moves_attention_to_the_decoded_frame():
    """With a sharp location bias, attention follows pos whatever the content scores say."""
    torch.manual_seed(0)
    attention = AdditiveAttention(6, 5, 7, position_window=4)
    with torch.no_grad():
        attention.position_bias.fill_(-30.0)
        attention.position_bias[4] = 0.0  # r = i - pos = 0
    H = torch.randn(3, 10, 5)
    mask = torch.ones(3, 10, dtype=torch.bool)
    pos = torch.tensor(
        [0, 7, 25]
    )  # the last one is past the end: clipped bias, still a distribution
    _, weights = attention(torch.randn(3, 6), attention.keys(H), H, mask, pos)
    assert weights[0].argmax() == 0 and weights[0, 0] > 0.99
    assert weights[1].argmax() == 7 and weights[1, 7] > 0.99
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    _, plain = attention(torch.randn(3, 6), attention.keys(H), H, mask)  # no pos: content only
    assert plain.max() < 0.99


def test_relative_weights_read_the_attention_around_pos():
    attention = AdditiveAttention(6, 5, 7, position_window=2)
    weights = torch.arange(1, 7, dtype=torch.float32).repeat(
        2, 1
    )  # (2, 6): frame i has weight i + 1
    rel = attention.relative_weights(weights, torch.tensor([0, 4]))
    # pos 0: frames -2..2 → 0, 0, 1, 2, 3; pos 4: frames 2..6 → 3, 4, 5, 6, 0
    assert rel.tolist() == [[0, 0, 1, 2, 3], [3, 4, 5, 6, 0]]


def test_the_models_take_their_token_ids_from_the_vocabulary():
    vocab = Vocabulary(max_shift=5, min_pitch=60, max_pitch=63)
    s2s = build_model("seq2seq", {"n_mels": 8, "seq2seq": {"position_window": 0}}, vocab)
    assert not hasattr(s2s.attention, "position_bias") and s2s.vocab_size == vocab.size == 4 + 5 + 8
    ids = torch.tensor([vocab.shift(1), vocab.shift(5), vocab.note_on(60), vocab.EOS, vocab.PAD])
    assert s2s.shift_frames(ids).tolist() == [1, 5, 0, 0, 0]
    assert s2s.embed.padding_idx == vocab.PAD
    ctc = build_model("ctc", {"n_mels": 8}, vocab)
    assert ctc.vocab_size == vocab.ctc.size == 9 and ctc.encoder.cfg.n_pitches == 4
    with pytest.raises(ValueError, match="n_pitches 88 disagrees with the vocabulary's 4"):
        build_model("ctc", {"n_mels": 8, "n_pitches": 88}, vocab)


def test_beam_state_helpers_round_trip():
    model = small_model("seq2seq").eval()
    batch = make_batch(SEGMENTS[:2])
    _, _, state = model.begin_decode(batch)
    parts = model.unstack_states(state, 2)
    assert parts[0].h.shape == (1, 64)
    for a, b in zip(model.stack_states(parts), state):
        assert torch.equal(a, b)


def test_scheduled_sampling_loss_equals_teacher_forcing_at_ss_zero_and_differs_at_one():
    model = small_model("seq2seq").eval()
    batch = make_batch(SEGMENTS)
    with torch.no_grad():
        _, tf = model(batch)
        _, ss0 = model(batch, ss_prob=0.0)
        _, ss1 = model(batch, ss_prob=1.0)
    assert torch.equal(tf["loss/ce"], ss0["loss/ce"])
    assert not torch.allclose(tf["loss/ce"], ss1["loss/ce"])


def test_class_weights_change_the_loss():
    model = small_model("seq2seq").eval()
    batch = make_batch(SEGMENTS)
    weights = torch.ones(VOCAB.size)
    weights[VOCAB.EOS] = 5.0
    with torch.no_grad():
        plain = model(batch)[1]["loss/ce"]
        weighted = model(batch, class_weights=weights)[1]["loss/ce"]
        same = model(batch, class_weights=torch.ones(VOCAB.size))[1]["loss/ce"]
    torch.testing.assert_close(same, plain)
    assert not torch.allclose(weighted, plain)


def overfit(model, batch, steps: int, lr: float, **forward) -> list[float]:
    """Adam on one fixed batch; returns the total loss per step."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        _, losses = model(batch, **forward)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return history


def test_seq2seq_overfits_four_segments_and_greedy_reads_them_back():
    torch.set_num_threads(2)
    model = small_model("seq2seq", onset_weight=0.0)
    batch = make_batch(SEGMENTS)
    history = overfit(model, batch, steps=150, lr=1e-2, ss_prob=0.1)
    model.eval()
    _, losses = model(batch)
    assert losses["loss/ce"] < 0.05, history[::10]
    # read back by the decoder transcription uses, plain and under the grammar
    H, mask, _, _ = model.encode(batch)
    lengths = batch["feature_lengths"].tolist()
    gold = [row[:n].tolist() for row, n in zip(batch["tokens"], batch["token_lengths"])]
    for constrained in (False, True):
        assert (
            s2s_greedy(
                model, H, mask, VOCAB, lengths, DecodeConfig(max_len=40), constrained=constrained
            )
            == gold
        )


# --------------------------------------------------------------------------- CTC


def test_ctc_loss_is_finite_on_ten_note_chords():
    """Two 10-note chords (20 ons and 20 offs) in 8 frames: 40 tokens need the 3 slots per frame."""
    torch.set_num_threads(2)
    chord = [FrameNote(1, 4, p) for p in range(60, 70)] + [
        FrameNote(5, 7, p) for p in range(61, 71)
    ]
    model = build_model("ctc", {"encoder": {}, "ctc": {}, "n_mels": N_MELS}, VOCAB)
    batch = make_batch([(chord, 8), (chord[:10], 8)])
    assert batch["ctc_lengths"].tolist() == [40, 20]
    _, losses = model(batch)
    assert torch.isfinite(losses["loss/ctc"]) and losses["loss/ctc"] > 0
    losses["loss/ctc"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ctc_blank_prior_sets_the_initial_output():
    model = small_model("ctc").eval()
    log_probs = model.infer(make_batch(SEGMENTS))["log_probs"]
    assert abs(float(log_probs[..., 0].exp().mean()) - 0.9) < 0.05


def test_ctc_greedy_decode_known_emissions():
    # slots: a a blank a b b blank  →  a (slot 0), a (slot 3), b (slot 4); a 7th slot past the length
    path = [1, 1, 0, 1, 2, 2, 0, 2]
    log_probs = torch.log(
        torch.nn.functional.one_hot(torch.tensor([path]), 3).float() * 0.98 + 0.01
    )
    ids, slots = ctc_greedy(log_probs[0].numpy(), 7)
    assert ids.tolist() == [1, 1, 2] and slots.tolist() == [0, 3, 4]


def test_ctc_restricted_alignments_forbid_far_slots():
    model = small_model("ctc")
    model.cfg.align_window = 1
    batch = make_batch([([FrameNote(2, 9, 60)], 16)])
    log_probs = torch.zeros(1, 16 * 3, VOCAB.ctc.size)
    restricted = model.restrict_alignments(log_probs, batch)
    on60, off60 = VOCAB.ctc.note_on(60), VOCAB.ctc.note_off(60)
    allowed_on = (restricted[0, :, on60] == 0).nonzero().flatten().tolist()
    assert allowed_on == list(range(1 * 3, 4 * 3))  # frames 1..3 around the onset at frame 2
    assert (restricted[0, :, off60] == 0).nonzero().flatten().tolist() == list(range(8 * 3, 11 * 3))
    assert (restricted[0, :, 0] == 0).all()  # blank everywhere
    assert (restricted[0, :, VOCAB.ctc.note_on(61)] < -1e3).all()  # a token with no label: nowhere


@pytest.mark.parametrize("align_window", [0, 2])
def test_ctc_overfits_four_segments_and_emits_tokens_at_their_frames(align_window):
    torch.set_num_threads(2)
    model = small_model("ctc")
    model.cfg.align_window = align_window
    batch = make_batch(SEGMENTS)
    history = overfit(model, batch, steps=200, lr=1e-2)
    model.eval()
    _, losses = model(batch)
    assert losses["loss/ctc"] < 0.05, history[::10]
    out = model.infer(batch)
    for b in range(len(SEGMENTS)):
        ids, slots = ctc_greedy(out["log_probs"][b].numpy(), int(out["lengths"][b]))
        n = int(batch["ctc_lengths"][b])
        assert ids.tolist() == batch["ctc_tokens"][b, :n].tolist()
        if (
            align_window and n
        ):  # restricted alignments: each token within the window of its label frame
            frames = model.slot_to_frame(slots)
            assert np.abs(frames - batch["ctc_frames"][b, :n].numpy()).max() <= align_window


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_checkpoint_round_trip_gives_identical_outputs(kind, tmp_path):
    model = small_model(kind, time_downsample=2)
    model.set_feature_stats(torch.linspace(-1, 1, N_MELS), torch.linspace(1, 2, N_MELS))
    batch = make_batch(SEGMENTS)
    overfit(model, batch, steps=2, lr=1e-2)  # move the weights and BatchNorm stats off their init
    model.eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"epoch": 3, "kind": kind})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind
    loaded, extra = load_checkpoint(path)
    assert extra == {"epoch": 3, "kind": kind} and not loaded.training
    assert loaded.enc_cfg == model.enc_cfg and loaded.cfg == model.cfg
    with torch.no_grad():
        (a, _), (b, _) = model(batch), loaded(batch)
    key = "log_probs" if kind == "ctc" else "logits"
    assert torch.equal(a[key], b[key])


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt: not an mtlib checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_default_configs_parameter_counts():
    ctc = build_model("ctc", {"n_mels": 128}, Vocabulary())
    s2s = build_model("seq2seq", {"n_mels": 128}, Vocabulary())
    encoder = count_parameters(ctc.encoder)
    assert count_parameters(s2s.encoder) == encoder
    assert count_parameters(ctc) - encoder == 384 * 3 * 177 + 3 * 177  # the upsampled linear head
    assert isinstance(s2s, Seq2SeqModel) and count_parameters(s2s) > count_parameters(ctc)


def test_seq2seq_encoder_starts_from_a_ctc_checkpoint(tmp_path):
    from mtlib.train import init_encoder_from, param_groups

    ctc = small_model("ctc", seed=1)
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    s2s = small_model("seq2seq", seed=2)
    before = {k: v.clone() for k, v in s2s.state_dict().items() if not k.startswith("encoder.")}
    init_encoder_from(s2s, tmp_path / "ctc.pt")
    for k, v in ctc.encoder.state_dict().items():
        assert torch.equal(s2s.encoder.state_dict()[k], v), k
    for k, v in before.items():  # the decoder is untouched
        assert torch.equal(s2s.state_dict()[k], v), k
    groups = param_groups(s2s, 0.01, 0.25)
    assert groups[0]["lr"] == pytest.approx(0.0025) and groups[1]["lr"] == 0.01
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(s2s)

    other = small_model("seq2seq", lstm_hidden=16)
    with pytest.raises(ValueError, match=r"ctc\.pt.*lstm_hidden: 32 there vs 16 here"):
        init_encoder_from(other, tmp_path / "ctc.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt.*not found"):
        init_encoder_from(s2s, tmp_path / "missing.pt")


def test_the_frame_head_is_set_per_model_and_seq2seq_starts_from_a_ctc_encoder_without_one(
    tmp_path,
):
    from mtlib.train import init_encoder_from

    cfg = small_config("ctc", frame_weight=1.0)
    cfg["ctc"]["frame_weight"] = 0.0  # the model's own section wins over model.encoder
    ctc = build_model("ctc", cfg, VOCAB)
    assert ctc.encoder.frame_head is None and ctc.enc_cfg.frame_weight == 0.0
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    assert (
        load_checkpoint(tmp_path / "ctc.pt")[0].encoder.frame_head is None
    )  # the checkpoint rebuilds it so
    s2s_cfg = small_config("seq2seq", frame_weight=0.0)
    s2s_cfg["seq2seq"].update(frame_weight=1.0, frame_detach=True)
    torch.manual_seed(3)
    s2s = build_model("seq2seq", s2s_cfg, VOCAB)
    fresh = {k: v.clone() for k, v in s2s.encoder.frame_head.state_dict().items()}
    init_encoder_from(s2s, tmp_path / "ctc.pt")
    for k, v in ctc.encoder.state_dict().items():
        assert torch.equal(s2s.encoder.state_dict()[k], v), k
    for k, v in fresh.items():  # the frame head CTC lacks keeps its initialisation
        assert torch.equal(s2s.encoder.frame_head.state_dict()[k], v), k
    init_encoder_from(
        ctc, tmp_path / "ctc.pt"
    )  # and the other way round: a head the model lacks is not copied
    save_checkpoint(tmp_path / "s2s.pt", s2s)
    init_encoder_from(ctc, tmp_path / "s2s.pt")
    assert ctc.encoder.frame_head is None


@pytest.mark.parametrize(
    ("ctc_head", "s2s_head"),
    [
        ({"frame_hidden": 0}, {"frame_hidden": 4}),  # a linear frame head, a frame stack
        ({"frame_hidden": 4}, {"frame_hidden": 4, "frame_layers": 2}),  # one layer, two
    ],
)
def test_a_frame_head_of_another_shape_is_not_copied(tmp_path, ctc_head, s2s_head):
    """The CTC model's frame head and the Seq2Seq model's differ in shape (a linear head against a
    stack, or stacks of another depth): the encoder and onset head are copied, the Seq2Seq frame
    head and its stack keep their initialisation."""
    from mtlib.train import init_encoder_from

    ctc = small_model("ctc", **ctc_head)
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    s2s = small_model("seq2seq", seed=3, **s2s_head)
    fresh = {k: v.clone() for k, v in s2s.encoder.state_dict().items() if k.startswith("frame_")}
    init_encoder_from(s2s, tmp_path / "ctc.pt")
    for k, v in s2s.encoder.state_dict().items():
        expected = fresh[k] if k.startswith("frame_") else ctc.encoder.state_dict()[k]
        assert torch.equal(v, expected), k
    assert any(k.startswith("frame_stack.") for k in fresh)


def test_a_detached_frame_head_learns_without_moving_the_encoder():
    batch = make_batch(SEGMENTS)
    for detach in (False, True):
        model = small_model("ctc", frame_detach=detach)
        _, losses = model(batch)
        losses["loss/frame"].backward()
        enc_grad = sum(
            float(p.grad.abs().sum())
            for n, p in model.encoder.named_parameters()
            if p.grad is not None and not n.startswith(("frame_head", "onset_head"))
        )
        assert (enc_grad == 0.0) == detach
        assert model.encoder.frame_head.weight.grad.abs().sum() > 0
