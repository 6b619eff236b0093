"""Feature-domain training augmentation (mtlib.augment): gain and tilt in the power domain, mixing
two segments with the union of their notes re-encoded by the tokenize functions, pitch shift of
constant-Q bins and labels together, a reverberation tail and a slow attack in the power domain, determinism
under (seed, epoch, index), and the config's errors. Segments are written in the test from
known notes with the tokenize stage's own functions."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.augment import (
    AugmentConfig,
    AugmentedDataset,
    attack_frames,
    augment_features,
    detune_bins,
    mask_band,
    reverb_decay,
    reverb_tail,
    segment_notes,
    segment_targets,
    shift_bins,
    shift_semitones,
    slow_attack,
    union_notes,
)
from mtlib.dataset import SegmentDataset, collate
from mtlib.events import (
    OFF,
    ON,
    FrameEvent,
    FrameNote,
    NoteArrays,
    ctc_targets,
    ctc_to_events,
    frame_notes_to_events,
    segment_tokens,
    stitch_segments,
    tokens_to_segment_events,
)
from mtlib.features import LOG_FLOOR
from mtlib.params import config_from
from mtlib.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
VOCAB = Vocabulary(max_shift=8)  # small max_shift: long gaps take several TIME_SHIFTs
N_MELS = 16
FLOOR = float(np.float32(math.log(LOG_FLOOR)))  # as float32 features hold it
DB = math.log(10.0) / 10.0  # one dB of power in natural-log units
OFF_ALL = dict(gain_db=0.0, tilt_db=0.0, mix_probability=0.0)


def fn(onset, offset, pitch):
    return FrameNote(onset, offset, pitch)


def key(notes):
    return sorted((n.onset, n.offset, n.pitch) for n in notes)


def make_dataset(
    tmp_path: Path,
    tracks: dict[str, tuple[list[FrameNote], int]],
    rows: list[tuple[str, int, int]],
    seed: int = 0,
    features: dict[str, np.ndarray] | None = None,
) -> SegmentDataset:
    """A train SegmentDataset: features per track (`features[track]`, else random log-mel well
    above the floor; stored as float16 like the segment stage's) and, per row (track, start, n),
    targets made exactly as the tokenize stage makes them (canonical NoteArrays → segment_tokens,
    ctc_targets)."""
    rng = np.random.default_rng(seed)
    paths = {}
    for tid, (_, n_frames) in tracks.items():
        paths[tid] = tmp_path / f"{tid}.npy"
        x = rng.uniform(-6.0, 3.0, (n_frames, N_MELS)) if features is None else features[tid]
        np.save(paths[tid], x.astype(np.float16))
    records = []
    for k, (tid, start, n) in enumerate(rows):
        arrays = NoteArrays.from_frame_notes(tracks[tid][0])
        tokens = np.asarray(segment_tokens(arrays, start, n, VOCAB), np.int32)
        ids, frames = ctc_targets(arrays, start, n, VOCAB.ctc)
        records.append(
            {
                "split": "train",
                "track": tid,
                "segment": k,
                "start_frame": start,
                "n_frames": n,
                "features": str(paths[tid]),
                "n_tokens": len(tokens),
                "n_ctc": len(ids),
                "tokens": tokens,
                "ctc_tokens": ids,
                "ctc_frames": frames,
            }
        )
    return SegmentDataset(pd.DataFrame(records), "train")


def random_dataset(
    tmp_path: Path, n_tracks: int = 3, n_frames: int = 60, seg: int = 20
) -> SegmentDataset:
    rng = np.random.default_rng(1)
    tracks, rows = {}, []
    for t in range(n_tracks):
        notes = []
        for _ in range(25):
            onset = int(rng.integers(0, n_frames - 1))
            notes.append(fn(onset, onset + int(rng.integers(1, 15)), int(rng.integers(50, 60))))
        tracks[str(t)] = (notes, n_frames)
        rows += [
            (str(t), start, min(seg, n_frames - start)) for start in range(0, n_frames, seg // 2)
        ]
    return make_dataset(tmp_path, tracks, rows)


def decode_seq2seq(tokens, n_frames: int) -> list[FrameNote]:
    """A lone segment's tokens → its notes with the project's inverse functions; tied pitches are
    opened one frame before the segment (onset -1), as stitching across a boundary would."""
    ties, events, counts = tokens_to_segment_events(tokens, VOCAB, n_frames)
    assert not any(counts.values()), counts
    notes, pairing = stitch_segments(
        [(-1, None, [FrameEvent(0, ON, p) for p in ties]), (0, ties, events)], n_frames
    )
    assert not any(v for k, v in pairing.items() if k != "closed_at_end"), pairing
    return notes


def window_notes(notes: list[FrameNote], start: int, n: int) -> list[FrameNote]:
    """The notes touching frames [start, start + n), in segment frames: an onset before the
    segment becomes -1, an offset past its end becomes n (notes ending exactly at `start` kept)."""
    return [
        fn(max(x.onset - start, -1), min(x.offset - start, n), x.pitch)
        for x in notes
        if x.offset >= start and x.onset < start + n
    ]


# ---------------------------------------------------------------------------------------------
# Config


def test_config_defaults_and_validation():
    cfg = AugmentConfig()
    assert (cfg.gain_db, cfg.tilt_db, cfg.mix_probability, cfg.mix_level_db) == (
        6.0,
        6.0,
        0.3,
        (-6.0, 0.0),
    )
    assert (
        cfg.active
        and not AugmentConfig(enabled=False).active
        and not AugmentConfig(**OFF_ALL).active
    )
    assert AugmentConfig(mix_level_db=[-3, -1]).mix_level_db == (-3.0, -1.0)  # YAML gives a list
    bad = [
        ({"gain_db": -1.0}, "train.augment.gain_db"),
        ({"tilt_db": "6"}, "train.augment.tilt_db"),
        ({"gain_db": float("nan")}, "train.augment.gain_db"),
        ({"mix_probability": 1.5}, "train.augment.mix_probability"),
        ({"mix_level_db": [0.0, -6.0]}, "train.augment.mix_level_db"),
        ({"mix_level_db": [-6.0]}, "train.augment.mix_level_db"),
        ({"mix_level_db": -6.0}, "train.augment.mix_level_db"),
        ({"enabled": "yes"}, "train.augment.enabled"),
        ({"pitch_shift": -1}, "train.augment.pitch_shift"),
        ({"pitch_shift": 1.5}, "train.augment.pitch_shift"),
        ({"pitch_shift": True}, "train.augment.pitch_shift"),
        ({"pitch_shift": 25}, "train.augment.pitch_shift"),
        ({"reverb_probability": -0.1}, "train.augment.reverb_probability"),
        ({"reverb_t60": [0.0, 2.0]}, "train.augment.reverb_t60"),
        ({"reverb_t60": [3.0, 2.0]}, "train.augment.reverb_t60"),
        ({"reverb_wet_db": [0.0]}, "train.augment.reverb_wet_db"),
        ({"attack_probability": 2.0}, "train.augment.attack_probability"),
        ({"attack_ms": [0.0, 100.0]}, "train.augment.attack_ms"),
        ({"attack_ms": [200.0, 100.0]}, "train.augment.attack_ms"),
        ({"detune_cents": -5.0}, "train.augment.detune_cents"),
        ({"detune_cents": 60.0}, "train.augment.detune_cents"),
        ({"freq_mask_probability": 1.2}, "train.augment.freq_mask_probability"),
        ({"freq_mask_fraction": [0.2, 0.1]}, "train.augment.freq_mask_fraction"),
        ({"freq_mask_fraction": [0.1, 1.5]}, "train.augment.freq_mask_fraction"),
        ({"freq_mask_fraction": [-0.1, 0.1]}, "train.augment.freq_mask_fraction"),
    ]
    for values, message in bad:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            AugmentConfig(**values)
    with pytest.raises(KeyError, match="train.augment.*gain"):
        config_from(AugmentConfig, {"gain": 3.0}, "train.augment")


def test_params_and_dvc_declare_the_augment_section():
    from mtlib.pipeline import augment_config

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = augment_config(params)
    assert (
        cfg == config_from(AugmentConfig, params["train"]["augment"], "train.augment")
        and cfg.active
    )
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("train_ctc", "train_seq2seq"):
        assert "train.augment" in stages[stage]["params"], stage
        assert "mtlib/augment.py" in stages[stage]["deps"], stage


# ---------------------------------------------------------------------------------------------
# Features


def test_gain_shifts_bins_above_the_floor_and_keeps_the_floor():
    rng = np.random.default_rng(0)
    x = rng.uniform(-4.0, 4.0, (10, N_MELS)).astype(np.float32)  # >= 40 dB above the floor
    x[:, :3] = FLOOR  # silent bins
    x[:, 3:5] = rng.uniform(FLOOR, -9.0, (10, 2))  # near the floor
    for g in (6.0, -6.0, 2.5):
        y = augment_features(x, gain_db=g)
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y[:, 5:] - x[:, 5:], g * DB, atol=2e-4)
        np.testing.assert_allclose(
            y[:, :3], FLOOR, atol=1e-5
        )  # silence stays silence, louder or quieter
        power = (
            np.exp(x.astype(np.float64)) - LOG_FLOOR
        )  # everywhere: the power is scaled, the floor kept
        np.testing.assert_allclose(
            y, np.log(np.maximum(power, 0) * 10 ** (g / 10) + LOG_FLOOR), rtol=1e-6, atol=1e-5
        )
        assert y.min() >= FLOOR - 1e-5
    np.testing.assert_array_equal(augment_features(x), x)


def test_tilt_makes_high_bins_louder_or_quieter():
    x = np.zeros((4, N_MELS), np.float32)  # power 1 everywhere: far above the floor
    up, down = augment_features(x, tilt_db=6.0) - x, augment_features(x, tilt_db=-6.0) - x
    assert np.all(np.diff(up[0]) > 0) and np.all(np.diff(down[0]) < 0)
    np.testing.assert_allclose(
        up[:, -1] - up[:, 0], 6.0 * DB, atol=1e-5
    )  # highest minus lowest bin: t dB
    np.testing.assert_allclose(up.mean(1), 0.0, atol=1e-5)  # the level is gain's job
    np.testing.assert_allclose(down, -up, atol=1e-6)


def test_mixed_features_add_in_the_power_domain():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-5, 3, (2, 12, N_MELS)).astype(np.float32)
    for level in (-6.0, -2.0, 0.0):
        got = augment_features(a, other=b, level_db=level)
        want = np.log(
            np.exp(a.astype(np.float64)) + np.exp(b.astype(np.float64)) * 10 ** (level / 10)
        )
        np.testing.assert_allclose(got, want, atol=2e-4)  # the floor's share: < 1e-6 / e^-5
        pa, pb = np.exp(a.astype(np.float64)) - LOG_FLOOR, np.exp(b.astype(np.float64)) - LOG_FLOOR
        np.testing.assert_allclose(
            got, np.log(pa + pb * 10 ** (level / 10) + LOG_FLOOR), rtol=1e-6, atol=1e-6
        )
    floor = np.full((3, N_MELS), FLOOR, np.float32)
    np.testing.assert_allclose(
        augment_features(floor, other=floor, level_db=0.0), FLOOR, atol=1e-5
    )  # silence + silence
    with pytest.raises(ValueError, match="shape"):
        augment_features(a, other=b[:5], level_db=0.0)


# ---------------------------------------------------------------------------------------------
# Targets


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20), st.integers(58, 62)), max_size=25),
    st.integers(0, 40),
    st.integers(1, 30),
)
def test_segment_notes_invert_the_tokenize_targets(raw, start, n):
    """Decoding a segment's targets and re-encoding them gives the same targets, ties, OFFs at
    the segment's first frame (CTC only) and multi-shift gaps included."""
    arrays = NoteArrays.from_frame_notes([fn(a, a + d, p) for a, d, p in raw])
    tokens = segment_tokens(arrays, start, n, VOCAB)
    ids, frames = ctc_targets(arrays, start, n, VOCAB.ctc)
    notes = segment_notes(tokens, ids, frames, n, VOCAB)
    again = segment_targets(notes, n, VOCAB)
    assert again["tokens"].tolist() == tokens
    assert (
        again["ctc_tokens"].tolist() == ids.tolist()
        and again["ctc_frames"].tolist() == frames.tolist()
    )
    # ... and a segment mixed with an empty one keeps its targets
    assert segment_targets(union_notes(notes, []), n, VOCAB)["tokens"].tolist() == tokens


def test_segment_notes_refuse_targets_tokenize_did_not_write():
    with pytest.raises(ValueError, match="track 7 segment 2.*missing_eos"):
        segment_notes([VOCAB.TIE, VOCAB.note_on(60)], [], [], 10, VOCAB, "track 7 segment 2")


def test_union_resolves_same_pitch_overlaps():
    got = union_notes(
        [fn(2, 10, 60), fn(-1, 4, 62), fn(0, 3, 64)],
        [fn(5, 7, 60), fn(-1, 8, 62), fn(3, 6, 64), fn(1, 2, 65)],
    )
    # 60: the onset at 5 starts a note that lasts as long as either sounds; 62: same onset, the
    # longer wins; 64: touching notes stay as they are
    assert key(got) == [(-1, 8, 62), (0, 3, 64), (1, 2, 65), (2, 5, 60), (3, 6, 64), (5, 10, 60)]
    assert NoteArrays.from_frame_notes(got).n_changed == 0  # already canonical


def two_segment_dataset(tmp_path, notes_a, notes_b, start_a=10, start_b=4, n=24, n_b=None):
    tracks = {"a": (notes_a, 60), "b": (notes_b, 60)}
    return make_dataset(tmp_path, tracks, [("a", start_a, n), ("b", start_b, n_b or n)])


NOTES_A = [
    fn(2, 14, 60),  # tied into the segment (starts at 10)
    fn(4, 10, 61),  # ends exactly at the segment's start: a CTC OFF at frame 0 only
    fn(12, 15, 64),
    fn(12, 22, 67),
    fn(20, 60, 72),  # sounds past the end: no OFF
    fn(25, 26, 76),
]
NOTES_B = [
    fn(0, 30, 48),  # tied (segment starts at 4), sounds past the end
    fn(4, 5, 50),
    fn(9, 12, 52),
    fn(15, 16, 53),
    fn(27, 31, 55),
    fn(35, 38, 57),
]  # after frame 28: only in the longer partner, cut away


@pytest.mark.parametrize("n_b", [24, 40])  # a partner as long, or longer and cut
def test_mixing_gives_the_union_of_both_segments_notes(tmp_path, n_b):
    base = two_segment_dataset(tmp_path, NOTES_A, NOTES_B, n_b=n_b)
    aug = AugmentedDataset(
        base, AugmentConfig(gain_db=0.0, tilt_db=0.0, mix_probability=1.0), seed=0, vocab=VOCAB
    )
    d = aug.draw(0)
    assert d.partner == 1 and -6.0 <= d.level_db <= 0.0 and d.gain_db == d.tilt_db == 0.0
    item, a, b = aug[0], base[0], base[1]
    n = 24
    union = window_notes(NOTES_A, 10, n) + window_notes(
        NOTES_B, 4, n
    )  # distinct pitches: a plain union
    # Seq2Seq: decodes to the union (the note ending at the segment's start is not in Seq2Seq targets)
    assert key(decode_seq2seq(item["tokens"], n)) == key(x for x in union if x.offset > 0)
    assert VOCAB.TIE in item["tokens"].tolist() and item["tokens"][-1] == VOCAB.EOS
    tie_end = item["tokens"].tolist().index(VOCAB.TIE)
    assert item["tokens"][:tie_end].tolist() == [
        VOCAB.note_on(48),
        VOCAB.note_on(60),
    ]  # both segments' ties
    # CTC: exactly the union's events inside the segment, OFF at frame 0 included
    events, counts = ctc_to_events(item["ctc_tokens"], item["ctc_frames"], VOCAB.ctc)
    assert not any(counts.values())
    assert events == [e for e in frame_notes_to_events(union) if 0 <= e.frame < n]
    assert FrameEvent(0, OFF, 61) in events
    # the onset piano roll (built by collate from the CTC targets): both segments' onsets
    onsets = collate([item], vocab=VOCAB)["onsets"][0]
    got = {
        (int(t), int(p) + VOCAB.min_pitch) for t, p in zip(*torch.nonzero(onsets, as_tuple=True))
    }
    assert got == {(x.onset, x.pitch) for x in union if x.onset >= 0}
    # identical to what tokenize makes of one track holding both segments' notes
    virtual = [fn(x.onset - 10, x.offset - 10, x.pitch) for x in NOTES_A] + [
        fn(x.onset - 4, x.offset - 4, x.pitch) for x in NOTES_B
    ]
    assert item["tokens"].tolist() == segment_tokens(virtual, 0, n, VOCAB)
    assert item["ctc_tokens"].tolist() == ctc_targets(virtual, 0, n, VOCAB.ctc)[0].tolist()
    # features: the power sum at the drawn level
    fa, fb = a["features"].astype(np.float64), b["features"][:n].astype(np.float64)
    want = np.log(np.exp(fa) + np.exp(fb) * 10 ** (d.level_db / 10))
    np.testing.assert_allclose(
        item["features"], want, atol=1e-3
    )  # features >= -6: the floor's share < 1e-6 / e^-6
    exact = np.log(
        (np.exp(fa) - LOG_FLOOR) + (np.exp(fb) - LOG_FLOOR) * 10 ** (d.level_db / 10) + LOG_FLOOR
    )
    np.testing.assert_allclose(item["features"], exact, rtol=1e-6, atol=1e-6)
    assert item["track"] == "a" and item["start_frame"] == 10
    # the base dataset is not touched
    np.testing.assert_array_equal(base[0]["tokens"], a["tokens"])


def test_mixing_same_pitch_overlaps_stays_a_valid_sequence(tmp_path):
    notes_a = [
        fn(5, 20, 60),
        fn(8, 40, 64),
        fn(15, 18, 67),
    ]  # segment a: frames 10..34: 60 and 64 tied
    notes_b = [
        fn(0, 12, 60),
        fn(13, 16, 60),
        fn(6, 9, 64),
        fn(20, 30, 67),
    ]  # segment b: frames 4..28
    base = two_segment_dataset(tmp_path, notes_a, notes_b)
    aug = AugmentedDataset(
        base, AugmentConfig(**{**OFF_ALL, "mix_probability": 1.0}), seed=0, vocab=VOCAB
    )
    item = aug[0]
    ties, events, counts = tokens_to_segment_events(item["tokens"], VOCAB, 24)
    assert not any(counts.values()) and ties == [60, 64]
    notes = decode_seq2seq(item["tokens"], 24)
    # 60: a's tied note (to 10) and b's (to 8) merge, b's onset at 9 cuts it and lasts to 12;
    # 64: b's onset at 2 cuts a's tied note, and the new note lasts as long as a's (to the end)
    assert key(notes) == [
        (-1, 2, 64),
        (-1, 9, 60),
        (2, 24, 64),
        (5, 8, 67),
        (9, 12, 60),
        (16, 24, 67),
    ]
    # round trip: the decoded notes re-encode to the same tokens (a valid, canonical sequence)
    assert segment_tokens(notes, 0, 24, VOCAB) == item["tokens"].tolist()
    again = segment_targets(
        segment_notes(item["tokens"], item["ctc_tokens"], item["ctc_frames"], 24, VOCAB), 24, VOCAB
    )
    for k in ("tokens", "ctc_tokens", "ctc_frames"):
        np.testing.assert_array_equal(again[k], item[k])
    ids_events, counts = ctc_to_events(item["ctc_tokens"], item["ctc_frames"], VOCAB.ctc)
    assert not any(counts.values())
    for pitch in (60, 64, 67):  # CTC: per pitch, ONs and OFFs alternate
        kinds = [e.kind for e in ids_events if e.pitch == pitch]
        assert all(x != y for x, y in zip(kinds, kinds[1:])), (pitch, kinds)


# ---------------------------------------------------------------------------------------------
# Dataset: determinism, and no augmentation when off


def items_equal(x: dict, y: dict) -> bool:
    return all(
        np.array_equal(x[k], y[k]) for k in ("features", "tokens", "ctc_tokens", "ctc_frames")
    )


def test_draws_depend_only_on_seed_epoch_and_index(tmp_path):
    base = random_dataset(tmp_path)
    cfg = AugmentConfig(mix_probability=0.5)
    one, two = AugmentedDataset(base, cfg, 0, VOCAB), AugmentedDataset(base, cfg, 0, VOCAB)
    one.set_epoch(3)
    two.set_epoch(3)
    n = len(base)
    first = [one[i] for i in range(n)]
    second = [two[i] for i in reversed(range(n))][::-1]  # another object, another order
    assert all(items_equal(x, y) for x, y in zip(first, second))
    assert 0 < sum(one.draw(i).partner is not None for i in range(n)) < n
    two.set_epoch(4)
    assert not any(np.array_equal(x["features"], two[i]["features"]) for i, x in enumerate(first))
    assert [one.draw(i).partner for i in range(n)] != [two.draw(i).partner for i in range(n)]
    other_seed = AugmentedDataset(base, cfg, 1, VOCAB)
    other_seed.set_epoch(3)
    assert not any(
        np.array_equal(x["features"], other_seed[i]["features"]) for i, x in enumerate(first)
    )
    # switching a part off leaves the other parts' draws as they were
    no_gain = AugmentedDataset(base, AugmentConfig(mix_probability=0.5, gain_db=0.0), 0, VOCAB)
    no_gain.set_epoch(3)
    assert [one.draw(i)[1:] for i in range(n)] == [no_gain.draw(i)[1:] for i in range(n)]


def test_dataloader_workers_do_not_change_the_draws(tmp_path):
    base = random_dataset(tmp_path, n_tracks=2)
    aug = AugmentedDataset(base, AugmentConfig(mix_probability=0.5), 5, VOCAB)
    col = functools.partial(collate, vocab=VOCAB)

    def batches(workers):
        aug.set_epoch(2)
        loader = torch.utils.data.DataLoader(aug, batch_size=3, collate_fn=col, num_workers=workers)
        return list(loader)

    for x, y in zip(batches(0), batches(2), strict=True):
        for k in ("features", "tokens", "ctc_tokens", "ctc_frames", "onsets"):
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "cfg", [AugmentConfig(enabled=False, mix_probability=1.0), AugmentConfig(**OFF_ALL)]
)
def test_switched_off_returns_the_base_items(tmp_path, cfg):
    base = random_dataset(tmp_path, n_tracks=2)
    aug = AugmentedDataset(base, cfg, 0, VOCAB)
    aug.set_epoch(7)
    for i in range(len(base)):
        assert items_equal(aug[i], base[i]) and aug[i].keys() == base[i].keys()
    assert len(aug) == len(base) and np.array_equal(
        aug.lengths("n_tokens"), base.lengths("n_tokens")
    )


def test_gain_through_the_dataset_matches_the_draw(tmp_path):
    base = random_dataset(tmp_path, n_tracks=1)
    aug = AugmentedDataset(
        base, AugmentConfig(gain_db=6.0, tilt_db=0.0, mix_probability=0.0), 0, VOCAB
    )
    gains = []
    for i in range(len(base)):
        g = aug.draw(i).gain_db
        gains.append(g)
        shift, loud = aug[i]["features"] - base[i]["features"], base[i]["features"] > -3.0
        np.testing.assert_allclose(shift[loud], g * DB, atol=2e-4)
        np.testing.assert_allclose(
            shift, g * DB, atol=2e-3
        )  # bins from -6: the floor's share < 1e-6 / e^-6
        assert items_equal(
            {**aug[i], "features": base[i]["features"]}, base[i]
        )  # targets untouched
    assert all(-6.0 <= g <= 6.0 for g in gains) and len(set(gains)) == len(gains)


# ---------------------------------------------------------------------------------------------
# Pitch shift (constant-Q features: pitch is an axis)

BPS = 2  # bins per semitone of the roll features below
N_BINS = BPS * (VOCAB.max_pitch - VOCAB.min_pitch + 1)


def roll_features(notes: list[FrameNote], n_frames: int) -> np.ndarray:
    """Constant-Q-like features that are the notes: bin (pitch - min_pitch) * BPS is at power 1
    (log 0) where the pitch sounds, every other bin silent (the floor)."""
    x = np.full((n_frames, N_BINS), FLOOR, np.float32)
    for n in notes:
        x[max(n.onset, 0) : n.offset, (n.pitch - VOCAB.min_pitch) * BPS] = 0.0
    return x


def test_shift_bins_moves_the_pitch_axis_and_uncovers_silence():
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(shift_bins(x, 2)[:, 2:], x[:, :4])
    np.testing.assert_array_equal(shift_bins(x, 2)[:, :2], FLOOR)
    np.testing.assert_array_equal(shift_bins(x, -1)[:, :5], x[:, 1:])
    np.testing.assert_array_equal(shift_bins(x, -1)[:, 5], FLOOR)
    np.testing.assert_array_equal(shift_bins(x, 0), x)
    np.testing.assert_array_equal(shift_bins(x, 7), FLOOR)
    notes = [fn(0, 3, 30), fn(1, 2, 100)]
    assert [shift_semitones(notes, s, VOCAB) for s in (-12, -9, 5, 8, 12)] == [-9, -9, 5, 8, 8]
    assert shift_semitones([], 12, VOCAB) == 12


@pytest.mark.parametrize("mix", [0.0, 1.0])
def test_pitch_shift_moves_labels_with_the_features(tmp_path, mix):
    """With the shift (and mixing, gain and tilt) on, the bins that sound in the augmented
    features are exactly the frame roll collate builds from the augmented targets, and the
    onset roll holds the shifted onsets: labels and audio moved together. A note near the top
    of the range cuts upward shifts so no label leaves the vocabulary."""
    rng = np.random.default_rng(3)
    tracks, rows, feats = {}, [], {}
    for t in range(3):
        notes = []
        for _ in range(12):
            onset = int(rng.integers(0, 50))
            pitch = int(rng.integers(40, 80))
            notes.append(fn(onset, onset + int(rng.integers(1, 12)), pitch))
        if t == 0:
            notes.append(fn(5, 30, 106))  # 2 semitones below the top: +5 is cut to +2
        tracks[str(t)] = (notes, 60)
        feats[str(t)] = roll_features(notes, 60)
        rows += [(str(t), start, 20) for start in (0, 10, 20, 30, 40)]
    base = make_dataset(tmp_path, tracks, rows, features=feats)
    cfg = AugmentConfig(gain_db=6.0, tilt_db=6.0, mix_probability=mix, pitch_shift=5)
    aug = AugmentedDataset(base, cfg, 0, VOCAB, bins_per_semitone=BPS)
    col = functools.partial(collate, vocab=VOCAB)
    shifts, cut, top = set(), 0, 0
    for epoch in range(3):
        aug.set_epoch(epoch)
        for i in range(len(base)):
            d, item = aug.draw(i), aug[i]
            batch = col([item])
            sounding = item["features"][:, ::BPS] > FLOOR + 1.0  # (T, n_pitches)
            np.testing.assert_array_equal(sounding, batch["frame_roll"][0].numpy() > 0)
            shifts.add(d.semitones)
            notes = segment_notes(item["tokens"], item["ctc_tokens"], item["ctc_frames"], 20, VOCAB)
            assert all(VOCAB.min_pitch <= n.pitch <= VOCAB.max_pitch for n in notes)
            top = max([top] + [n.pitch for n in notes])
            assert np.all(
                item["features"][:, 1::BPS] < FLOOR + 0.05
            )  # off-pitch bins: silent (float16)
            before = segment_notes(
                base[i]["tokens"], base[i]["ctc_tokens"], base[i]["ctc_frames"], 20, VOCAB
            )
            if d.partner is None and before:
                moved = {n.pitch for n in notes} - {n.pitch for n in before}
                got = min(n.pitch for n in notes) - min(n.pitch for n in before)
                assert got == shift_semitones(before, d.semitones, VOCAB)
                assert (got == 0) == (not moved)
                cut += got != d.semitones
    assert shifts == set(range(-5, 6))  # every whole shift in +-5 drawn
    assert top == VOCAB.max_pitch  # the note at 106 went up to the top and no further
    assert cut > 0 or mix > 0  # ... because upward shifts were cut (items alone: measured)


def test_pitch_shift_needs_a_pitch_axis(tmp_path):
    base = random_dataset(tmp_path, n_tracks=1)
    with pytest.raises(ValueError, match="pitch_shift.*cqt or hcqt"):
        AugmentedDataset(base, AugmentConfig(pitch_shift=2), 0, VOCAB)
    AugmentedDataset(base, AugmentConfig(enabled=False, pitch_shift=2), 0, VOCAB)  # off: fine


# ---------------------------------------------------------------------------------------------
# Reverberation


def test_reverb_tail_of_an_impulse_decays_60_db_in_t60_and_carries_the_wet_energy():
    hop = 0.025  # 80 frames in 2 s
    a = reverb_decay(2.0, hop)
    power = np.zeros((400, 3))
    power[10, :] = [1.0, 0.0, 4.0]  # an impulse in bins 0 and 2, silence in bin 1
    out = reverb_tail(power, a, -6.0)
    assert np.array_equal(out[:11], power[:11])  # nothing before the impulse; the dry frame kept
    assert np.all(out[:, 1] == 0.0)  # a silent bin stays silent: no bleed across bins
    tail = out[11:, 0]
    np.testing.assert_allclose(tail.sum(), 10**-0.6, rtol=1e-3)  # -6 dB of the dry energy
    np.testing.assert_allclose(out[11:, 2], 4.0 * tail)  # linear in the power
    frames_60 = 80  # 2 s later the tail is 60 dB below where it started
    np.testing.assert_allclose(tail[frames_60] / tail[0], 1e-6, rtol=0.05)
    assert np.all(np.diff(tail) < 0)


def one_loud_bin(tmp_path: Path, n: int, onset: int, offset: int) -> SegmentDataset:
    """One segment of n frames holding one note (pitch 60) from `onset` to `offset`, its features
    one loud bin (4, at 2.0) while the note sounds and silence elsewhere."""
    feats = np.full((n, N_MELS), FLOOR, np.float32)
    feats[onset:offset, 4] = 2.0
    notes = [fn(onset, offset, 60)]
    return make_dataset(tmp_path, {"t": (notes, n)}, [("t", 0, n)], features={"t": feats})


def test_reverb_through_the_dataset_smears_onsets_and_keeps_the_labels(tmp_path):
    base = one_loud_bin(tmp_path, 24, 2, 6)
    on = dict(OFF_ALL, reverb_probability=1.0, reverb_t60=(1.0, 1.0), reverb_wet_db=(0.0, 0.0))
    aug = AugmentedDataset(base, AugmentConfig(**on), 0, VOCAB, frame_seconds=0.032)
    item = aug[0]
    assert aug.draw(0).reverb_t60 == 1.0 and aug.draw(0).reverb_wet_db == 0.0
    x, dry = item["features"], base[0]["features"]  # dry: as stored (float16: the floor rounds)
    np.testing.assert_allclose(x[:3], dry[:3], atol=1e-2)  # before the onset and at it
    assert np.all(np.diff(x[6:, 4]) < 0) and x[6, 4] > dry[6, 4] + 5  # a decaying tail after it
    np.testing.assert_allclose(np.delete(x, 4, axis=1), np.delete(dry, 4, axis=1), atol=1e-2)
    assert items_equal({**item, "features": base[0]["features"]}, base[0])  # labels unchanged
    with pytest.raises(ValueError, match="frame_seconds"):
        AugmentedDataset(base, AugmentConfig(**on), 0, VOCAB)


def draws_with_a_part_on(base, off: AugmentConfig, on: AugmentConfig, **off_values):
    """The draws of every item with `on` (seed 3) where the part it adds is drawn, after checking
    that each draw equals `off`'s once the part's fields take their `off_values`, and that the
    part is drawn for some items and not for all."""
    plain, with_part = (
        AugmentedDataset(base, cfg, 3, VOCAB, frame_seconds=0.032) for cfg in (off, on)
    )
    draws = [(plain.draw(i), with_part.draw(i)) for i in range(len(base))]
    assert all(a == b._replace(**off_values) for a, b in draws)
    drawn = [b for a, b in draws if a != b]
    assert 0 < len(drawn) < len(draws)
    return drawn


def test_reverb_draws_leave_the_other_draws_as_they_were(tmp_path):
    base = random_dataset(tmp_path, n_tracks=2)
    with_reverb = draws_with_a_part_on(
        base,
        AugmentConfig(),
        AugmentConfig(reverb_probability=0.5),
        reverb_t60=0.0,
        reverb_wet_db=0.0,
    )
    assert all(b.reverb_t60 > 0 for b in with_reverb)
    assert all(0.5 <= b.reverb_t60 <= 4.0 and -12.0 <= b.reverb_wet_db <= 0.0 for b in with_reverb)
    plain = AugmentedDataset(base, AugmentConfig(), 3, VOCAB, frame_seconds=0.032)
    assert items_equal(plain[0], AugmentedDataset(base, AugmentConfig(), 3, VOCAB)[0])


# ---------------------------------------------------------------------------------------------
# Slow attack


def test_slow_attack_ramps_each_onset_over_k_frames_and_keeps_the_cut_flat():
    power = np.zeros((12, 3))
    power[3:8, 0] = 1.0  # a note from frame 3 to 7 in bin 0
    power[:, 2] = 5.0  # bin 2 sounds through the whole segment, from before its first frame
    out = slow_attack(power, 4)
    np.testing.assert_allclose(out[:3, 0], 0.0)  # nothing before the onset: the swell is causal
    np.testing.assert_allclose(out[3:7, 0], [0.25, 0.5, 0.75, 1.0])  # full power K frames on
    np.testing.assert_allclose(out[8:12, 0], [0.75, 0.5, 0.25, 0.0])  # the release as long
    np.testing.assert_allclose(out[:, 1], 0.0)  # a silent bin stays silent
    np.testing.assert_allclose(out[:, 2], 5.0)  # no fade-in at the segment's cut
    np.testing.assert_allclose(out.sum(axis=0)[0], power.sum(axis=0)[0])  # energy kept
    assert slow_attack(power, 1) is power
    assert attack_frames(128.0, 0.032) == 4 and attack_frames(5.0, 0.032) == 1
    with pytest.raises(ValueError, match="slow attack"):
        slow_attack(power, 0)


def test_slow_attack_through_the_dataset_swells_onsets_and_keeps_the_labels(tmp_path):
    base = one_loud_bin(tmp_path, 24, 2, 12)
    on = dict(OFF_ALL, attack_probability=1.0, attack_ms=(128.0, 128.0))  # 4 frames of 32 ms
    aug = AugmentedDataset(base, AugmentConfig(**on), 0, VOCAB, frame_seconds=0.032)
    assert aug.draw(0).attack_ms == 128.0
    item = aug[0]
    x, dry = item["features"], base[0]["features"]
    np.testing.assert_allclose(x[:2], dry[:2], atol=1e-2)  # nothing before the onset
    swell = np.exp(x[2:6, 4].astype(np.float64))  # a quarter of the power, a half, ..., all of it
    np.testing.assert_allclose(swell / math.exp(2.0), [0.25, 0.5, 0.75, 1.0], rtol=1e-2)
    assert x[12, 4] > dry[12, 4] + 5  # the release lengthens as much
    np.testing.assert_allclose(np.delete(x, 4, axis=1), np.delete(dry, 4, axis=1), atol=1e-2)
    assert items_equal({**item, "features": base[0]["features"]}, base[0])  # labels unchanged
    with pytest.raises(ValueError, match="frame_seconds"):
        AugmentedDataset(base, AugmentConfig(**on), 0, VOCAB)


def test_slow_attack_draws_leave_the_other_draws_as_they_were(tmp_path):
    base = random_dataset(tmp_path, n_tracks=2)
    off = AugmentConfig(reverb_probability=0.5)
    on = AugmentConfig(reverb_probability=0.5, attack_probability=0.5)
    with_attack = draws_with_a_part_on(base, off, on, attack_ms=0.0)
    assert all(64.0 <= b.attack_ms <= 256.0 for b in with_attack)
    # off, it is not in the record (checkpoints and resume signatures keep their bytes); on, it is
    assert not any(k.startswith("attack") for k in off.describe())
    assert on.describe()["attack_ms"] == [64.0, 256.0]
    # the draws before the slow attack existed: the first nine uniforms of the same stream
    assert np.array_equal(
        np.random.default_rng([3, 0, 5]).random(11)[:9], np.random.default_rng([3, 0, 5]).random(9)
    )


def roll_dataset(tmp_path: Path, seed: int) -> SegmentDataset:
    """Three 20-frame segments of one 60-frame track of ten random 8-frame notes, with
    `roll_features` as its features."""
    rng = np.random.default_rng(seed)
    notes = [
        fn(int(o), int(o) + 8, int(p))
        for o, p in zip(rng.integers(0, 40, 10), rng.integers(40, 80, 10))
    ]
    return make_dataset(
        tmp_path,
        {"t": (notes, 60)},
        [("t", s, 20) for s in (0, 20, 40)],
        features={"t": roll_features(notes, 60)},
    )


# ---------------------------------------------------------------------------------------------
# Detuning


def test_detune_moves_power_between_neighbouring_bins():
    """A fractional shift splits each bin's power between the two bins it lands between (power,
    not log), keeps the total where nothing passes the edge, uncovers silence, and whole shifts
    are `shift_bins`."""
    power = np.zeros((2, 8))
    power[:, 3] = 1.0
    x = np.log(power + LOG_FLOOR).astype(np.float32)
    for bins, lo, weights in (
        (0.25, 3, [0.75, 0.25]),
        (-0.25, 2, [0.25, 0.75]),
        (1.5, 4, [0.5, 0.5]),
    ):
        out = np.maximum(np.exp(detune_bins(x, bins).astype(np.float64)) - LOG_FLOOR, 0.0)
        np.testing.assert_allclose(out[:, lo : lo + 2], [weights, weights], atol=1e-5)
        np.testing.assert_allclose(np.delete(out, [lo, lo + 1], axis=1), 0.0, atol=1e-6)
    np.testing.assert_array_equal(detune_bins(x, 2.0), shift_bins(x, 2))
    np.testing.assert_array_equal(detune_bins(x, -1.0), shift_bins(x, -1))
    edge = detune_bins(x, 0.5)
    assert edge[0, 0] == pytest.approx(FLOOR)  # nothing moves into the lowest bin from below


def test_detune_through_the_dataset_keeps_the_labels_and_draws(tmp_path):
    """Detuned items keep their targets bit for bit, their sounding bins move by at most the
    drawn fraction of a semitone, the draws of every other part stay as they were, and the
    record lists the detuning only when it is on."""
    base = roll_dataset(tmp_path, seed=4)
    on = AugmentConfig(**OFF_ALL, detune_cents=30.0)
    aug = AugmentedDataset(base, on, 0, VOCAB, bins_per_semitone=BPS)
    plain = AugmentedDataset(base, AugmentConfig(**OFF_ALL), 0, VOCAB, bins_per_semitone=BPS)
    cents = set()
    for epoch in range(4):
        aug.set_epoch(epoch)
        plain.set_epoch(epoch)
        for i in range(len(base)):
            d = aug.draw(i)
            assert d._replace(detune_cents=0.0) == plain.draw(i) and abs(d.detune_cents) <= 30.0
            cents.add(round(d.detune_cents))
            item = aug[i]
            assert items_equal({**item, "features": base[i]["features"]}, base[i])
            power = np.exp(item["features"].astype(np.float64))
            centre = (power * np.arange(N_BINS)).sum(axis=1) / power.sum(axis=1)
            dry = np.exp(base[i]["features"].astype(np.float64))
            dry_centre = (dry * np.arange(N_BINS)).sum(axis=1) / dry.sum(axis=1)
            sounding = base[i]["features"].max(axis=1) > FLOOR + 1.0
            np.testing.assert_allclose(
                (centre - dry_centre)[sounding], d.detune_cents / 100 * BPS, atol=0.02
            )
    assert len(cents) > 6
    assert (
        "detune_cents" not in AugmentConfig().describe() and on.describe()["detune_cents"] == 30.0
    )
    with pytest.raises(ValueError, match="detune_cents.*cqt or hcqt"):
        AugmentedDataset(base, on, 0, VOCAB)


# ---------------------------------------------------------------------------------------------
# Frequency mask


def test_mask_band_stays_inside_and_spans_every_start():
    """The band has round(width * bins) bins, lies inside the features for every position, starts
    at the lowest bin at position 0 and ends at the highest just below 1; narrower than a bin is
    no band."""
    assert mask_band(100, 0.1, 0.0) == (0, 10)
    assert mask_band(100, 0.1, 0.999999) == (90, 100)
    assert mask_band(100, 0.004, 0.5) is None
    assert mask_band(10, 1.0, 0.7) == (0, 10)
    starts = {mask_band(40, 0.25, p)[0] for p in np.linspace(0, 1, 200, endpoint=False)}
    assert starts == set(range(31))
    out = augment_features(np.zeros((3, 8), dtype=np.float32), mask=(2, 5))
    np.testing.assert_allclose(out[:, 2:5], FLOOR)
    np.testing.assert_allclose(out[:, [0, 1, 5, 6, 7]], 0.0, atol=1e-6)


def test_freq_mask_through_the_dataset_silences_one_band_and_keeps_the_labels(tmp_path):
    """A masked item is its unmasked self with one band of bins at the floor, its targets bit for
    bit the same; about freq_mask_probability of the items are masked, the other parts' draws do
    not change, and the record lists the mask only when it is on."""
    base = roll_dataset(tmp_path, seed=5)
    mixing = dict(gain_db=3.0, tilt_db=0.0, mix_probability=0.5)
    on = AugmentConfig(**mixing, freq_mask_probability=0.5, freq_mask_fraction=(0.1, 0.3))
    aug = AugmentedDataset(base, on, 0, VOCAB)
    plain = AugmentedDataset(base, AugmentConfig(**mixing), 0, VOCAB)
    masked = 0
    for epoch in range(12):
        aug.set_epoch(epoch)
        plain.set_epoch(epoch)
        for i in range(len(base)):
            d = aug.draw(i)
            assert d._replace(mask_fraction=0.0, mask_position=0.0) == plain.draw(i)
            item, dry = aug[i], plain[i]
            assert items_equal({**item, "features": dry["features"]}, dry)
            if d.mask_fraction == 0:
                np.testing.assert_array_equal(item["features"], dry["features"])
                continue
            masked += 1
            assert 0.1 <= d.mask_fraction <= 0.3
            lo, hi = mask_band(N_BINS, d.mask_fraction, d.mask_position)
            silent = np.all(item["features"] == np.float32(FLOOR), axis=0)
            assert silent[lo:hi].all() and hi - lo >= 1
            keep = np.r_[0:lo, hi:N_BINS]
            np.testing.assert_allclose(
                item["features"][:, keep], dry["features"][:, keep], atol=1e-5
            )
    assert 0.3 * 36 <= masked <= 0.7 * 36
    described = on.describe()
    assert "freq_mask_probability" not in AugmentConfig().describe()
    assert described["freq_mask_probability"] == 0.5
    assert described["freq_mask_fraction"] == [0.1, 0.3]
