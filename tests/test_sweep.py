"""decode_sweep's search (`run_sweep`) on a scorer with known answers."""

from __future__ import annotations

from mtlib.sweep import run_sweep

BASE = {"ctc_shift_frames": 0, "ctc_onset_window": 2, "offset_shift_frames": 0, "max_len": 100}


def fake_score(values: dict) -> dict:
    """Note F1 peaks at shift -1, window 4 and ignores offsets; offset F1 peaks at +2 offset frames
    and is (like mir_eval's) also hurt by bad onsets."""
    onset = (
        0.9 - 0.1 * abs(values["ctc_shift_frames"] + 1) - 0.02 * abs(values["ctc_onset_window"] - 4)
    )
    offset = onset * (0.8 - 0.2 * abs(values["offset_shift_frames"] - 2))
    return {"note/f1": onset, "note_offset/f1": offset}


def test_onset_grid_by_note_f1_then_offsets_on_the_best_config_by_offset_f1():
    grid = {
        "ctc_shift_frames": [-2, -1, 0],
        "ctc_onset_window": [0, 4],
        "offset_shift_frames": [0, 1, 2, 3],
    }
    rows, keys, chosen, best = run_sweep(BASE, grid, fake_score)
    assert keys == ["ctc_onset_window", "ctc_shift_frames", "offset_shift_frames"]
    assert chosen == {
        **BASE,
        "ctc_shift_frames": -1,
        "ctc_onset_window": 4,
        "offset_shift_frames": 2,
    }
    assert best == {
        "ctc_onset_window": 4,
        "ctc_shift_frames": -1,
        "offset_shift_frames": 2,
        **fake_score(chosen),
    }
    # 6 onset configs at the base offset, then the 3 other offsets on the best one only
    assert len(rows) == 6 + 3
    assert [r["offset_shift_frames"] for r in rows[6:]] == [1, 2, 3]
    assert all((r["ctc_shift_frames"], r["ctc_onset_window"]) == (-1, 4) for r in rows[6:])


def test_without_offsets_in_the_grid_the_base_offset_stays():
    rows, keys, chosen, best = run_sweep(
        {**BASE, "offset_shift_frames": 1}, {"ctc_shift_frames": [0, -1]}, fake_score
    )
    assert keys == ["ctc_shift_frames"] and len(rows) == 2
    assert chosen == {**BASE, "offset_shift_frames": 1, "ctc_shift_frames": -1}


def test_an_empty_grid_scores_the_base_config_once():
    rows, keys, chosen, best = run_sweep(BASE, {}, fake_score)
    assert keys == [] and len(rows) == 1 and chosen == BASE


def test_ties_go_to_the_first_config_scored():
    rows, keys, chosen, best = run_sweep(BASE, {"offset_shift_frames": [1, 3]}, fake_score)
    assert chosen["offset_shift_frames"] == 1  # 1 and 3 score the same offset F1; 1 was tried first


def test_every_combination_of_the_offset_keys_is_tried_on_the_best_onset_config():
    def score(values):
        onset = 0.9 - 0.1 * abs(values["ctc_shift_frames"] + 1)
        offset = onset * (
            0.9
            - abs(values["frame_threshold"] - 0.5)
            - 0.1 * abs(values["offset_shift_frames"] - 1)
        )
        return {"note/f1": onset, "note_offset/f1": offset}

    base = {**BASE, "frame_threshold": 0.0}
    grid = {
        "ctc_shift_frames": [-2, -1],
        "frame_threshold": [0.3, 0.5],
        "offset_shift_frames": [0, 1],
    }
    rows, keys, chosen, best = run_sweep(base, grid, score)
    assert keys == ["ctc_shift_frames", "frame_threshold", "offset_shift_frames"]
    assert chosen == {
        **base,
        "ctc_shift_frames": -1,
        "frame_threshold": 0.5,
        "offset_shift_frames": 1,
    }
    # 2 onset configs, then the 4 offset combinations on the best one (the base combination
    # (0.0, 0) is the best onset row itself and is not scored twice)
    assert len(rows) == 2 + 4
    assert {(r["frame_threshold"], r["offset_shift_frames"]) for r in rows[2:]} == {
        (0.3, 0),
        (0.3, 1),
        (0.5, 0),
        (0.5, 1),
    }


def test_offset_configs_that_decode_alike_are_scored_once():
    """frame_scope, frame_cut_frames and offset_threshold do nothing when frame_threshold is 0
    (the frame head ends no note), frame_cut_frames nothing when frame_scope is all: of the 2 x 2 x
    2 x 2 = 16 combinations 1 + 2 + 4 = 7 decode differently (the best onset row is the first)."""
    calls = []

    def score(values):
        calls.append(values)
        acting = values["frame_threshold"] > 0
        offset = 0.5 + 0.1 * acting * (
            (values["frame_scope"] == "unended") * values["frame_cut_frames"] / 16
            + values["offset_threshold"]
        )
        return {"note/f1": 0.8, "note_offset/f1": offset}

    base = {
        **BASE,
        "frame_threshold": 0.0,
        "frame_scope": "all",
        "frame_cut_frames": 0,
        "offset_threshold": 0.0,
    }
    grid = {
        "frame_threshold": [0.0, 0.3],
        "frame_scope": ["all", "unended"],
        "frame_cut_frames": [0, 16],
        "offset_threshold": [0.0, 0.5],
    }
    rows, _, chosen, best = run_sweep(base, grid, score)
    assert len(rows) == len(calls) == 7
    effective = {
        (r["frame_threshold"], r["frame_scope"], r["frame_cut_frames"], r["offset_threshold"])
        for r in rows
    }
    assert effective == {
        (0.0, "all", 0, 0.0),
        (0.3, "all", 0, 0.0),
        (0.3, "all", 0, 0.5),
        (0.3, "unended", 0, 0.0),
        (0.3, "unended", 0, 0.5),
        (0.3, "unended", 16, 0.0),
        (0.3, "unended", 16, 0.5),
    }
    assert (chosen["frame_scope"], chosen["frame_cut_frames"], chosen["offset_threshold"]) == (
        "unended",
        16,
        0.5,
    )
