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


def test_offset_configs_that_acting_offsets_calls_alike_decode_to_the_same_notes():
    """`acting_offsets` restates which offset keys `mtlib.decode.refine_notes` ignores; the sweep
    scores one config per value of it. On a track whose heads make every key act somewhere (notes
    the tokens ended and left open, a late NOTE_OFF, release peaks), every offset config of the
    grid is decoded: configs with the same `acting_offsets` must give the same notes, and configs
    with different values must differ (else the grid or this track would not test the rule)."""
    import itertools

    import numpy as np

    from mtlib.decode import DecodeConfig, refine_notes
    from mtlib.events import FrameNote
    from mtlib.sweep import OFFSET_KEYS, acting_offsets

    n_frames, n_pitches, min_pitch = 60, 4, 60
    frame = np.zeros((n_frames, n_pitches), np.float32)
    offset = np.zeros((n_frames, n_pitches), np.float32)
    onset = np.zeros((n_frames, n_pitches), np.float32)
    notes = [
        FrameNote(2, 30, 60),  # tokens' OFF at 30, 20 frames after the frame head lets go at 10
        FrameNote(5, 50, 61),  # unended: its offset is a guess (the track's end)
        FrameNote(8, 20, 62),  # tokens' OFF on time, a release peak inside it
    ]
    frame[2:10, 0] = 0.9
    frame[5:25, 1] = 0.9
    frame[25:40, 1] = 0.4  # a tail above both thresholds, below half the note's peak
    frame[8:20, 2] = 0.6
    frame[10:20, 2] = 0.25  # between 0.2 and 0.3: frame_threshold decides where it ends
    offset[14, 1] = 0.6  # a release peak at 0.6 (above 0.3 and 0.5)
    offset[12, 2] = 0.4  # a release peak between 0.3 and 0.5: the frame head's mean after it is
    #   0.25 over 4 frames (refused at a hold of 0.2), 0.167 over 12 (counts); 61's is 0.9 (refused)
    unended = [(61, 50)]
    grid = {
        "frame_threshold": [0.0, 0.2, 0.3],
        "frame_relative": [0.0, 0.5],
        "frame_scope": ["all", "unended"],
        "frame_cut_frames": [0, 16],
        "offset_threshold": [0.0, 0.3, 0.5],
        "offset_hold": [0.0, 0.2],
        "offset_hold_frames": [4, 12],
        "offset_shift_frames": [0, 1],
    }
    assert set(grid) == set(OFFSET_KEYS)
    decoded: dict[tuple, tuple] = {}
    for combo in itertools.product(*grid.values()):
        cfg = DecodeConfig(**dict(zip(grid, combo)))
        out = refine_notes(
            notes,
            {"frame": frame, "offset": offset, "onset": onset},
            cfg,
            "ctc",
            min_pitch,
            n_frames,
            unended=unended,
        )
        decoded[combo] = tuple(out)
    by_acting: dict[tuple, set] = {}
    for combo, out in decoded.items():
        by_acting.setdefault(acting_offsets(dict(zip(grid, combo))), set()).add(out)
    assert all(len(outs) == 1 for outs in by_acting.values()), by_acting
    # the track makes every key change the notes in some config: the check above has teeth
    for i, key in enumerate(grid):
        assert any(
            decoded[combo] != decoded[combo[:i] + (other,) + combo[i + 1 :]]
            for combo in decoded
            for other in grid[key]
        ), key


def test_the_reonset_gate_is_tried_on_the_best_onset_config_by_note_f1_before_the_offsets():
    """TAIL_KEYS add configs to the grid rather than multiply it: each of their values is scored
    once, on the best config of the other note keys, ranked by note F1; the offset keys then run
    on that choice."""
    calls = []

    def score(values):
        calls.append(values)
        onset = 0.8 - 0.1 * abs(values["ctc_shift_frames"] + 1) + 0.01 * values["reonset_threshold"]
        offset = onset * (0.8 - 0.2 * abs(values["offset_shift_frames"] - 2))
        return {"note/f1": onset, "note_offset/f1": offset}

    grid = {
        "ctc_shift_frames": [-2, -1, 0],
        "reonset_threshold": [0.0, 0.3, 1.0],
        "offset_shift_frames": [0, 2],
    }
    rows, keys, chosen, best = run_sweep({**BASE, "reonset_threshold": 0.0}, grid, score)
    assert keys == ["ctc_shift_frames", "reonset_threshold", "offset_shift_frames"]
    # 3 shifts at the base gate, 2 more gates on the best shift, 1 more offset on the best gate
    assert len(calls) == len(rows) == 6
    assert [(r["ctc_shift_frames"], r["reonset_threshold"]) for r in rows[3:5]] == [
        (-1, 0.3),
        (-1, 1.0),
    ]
    assert (chosen["ctc_shift_frames"], chosen["reonset_threshold"]) == (-1, 1.0)
    assert chosen["offset_shift_frames"] == 2
    assert calls[-1]["reonset_threshold"] == 1.0


def test_frame_f1_decides_between_offsets_that_note_with_offset_f1_scores_alike():
    """Offset configs rank by note-with-offset F1 + frame_weight x frame F1: at 0.25 a shift that
    leads by 0.001 note-with-offset F1 but loses 0.02 frame F1 loses; a lead of 0.013 wins."""

    def score(values):
        shift = values["offset_shift_frames"]
        offset = {-1: 0.548, 0: 0.547, 1: 0.530, 2: 0.540}[shift]
        frame = {-1: 0.76, 0: 0.78, 1: 0.78, 2: 0.70}[shift]
        return {"note/f1": 0.8, "note_offset/f1": offset, "frame/f1": frame}

    grid = {"offset_shift_frames": [-1, 0, 1, 2]}
    assert run_sweep(BASE, grid, score)[2]["offset_shift_frames"] == -1
    assert run_sweep(BASE, grid, score, frame_weight=0.25)[2]["offset_shift_frames"] == 0
    assert run_sweep(BASE, grid, score, frame_weight=0.0)[2]["offset_shift_frames"] == -1

    def lead(values):  # shift 2 leads by 0.013 note-with-offset F1 at 0.02 less frame F1: it wins
        if values["offset_shift_frames"] == 2:
            return {"note/f1": 0.8, "note_offset/f1": 0.56, "frame/f1": 0.76}
        return score(values)

    assert run_sweep(BASE, grid, lead, frame_weight=0.25)[2]["offset_shift_frames"] == 2


def test_the_release_peaks_hold_is_scored_only_where_peaks_are_looked_for():
    """offset_hold acts only with frame_threshold > 0 and offset_threshold > 0, its window only
    with offset_hold > 0: of the 2 x 2 x 2 x 2 = 16 combinations 1 + 1 + 1 + 2 = 5 decode
    differently."""
    base = {**BASE, "frame_threshold": 0.0, "offset_threshold": 0.0, "offset_hold": 0.0}
    grid = {
        "frame_threshold": [0.0, 0.3],
        "offset_threshold": [0.0, 0.5],
        "offset_hold": [0.0, 0.8],
        "offset_hold_frames": [4, 8],
    }

    def score(values):
        bonus = 0.1 * (values["offset_hold"] > 0) * values["offset_hold_frames"] / 8
        return {"note/f1": 0.8, "note_offset/f1": 0.5 + bonus}

    rows, _, chosen, _ = run_sweep(base, grid, score)
    keys = ("frame_threshold", "offset_threshold", "offset_hold", "offset_hold_frames")
    assert {tuple(r[k] for k in keys) for r in rows} == {
        (0.0, 0.0, 0.0, 8),  # the note sweep's best, at base (offset_hold_frames' default)
        (0.3, 0.0, 0.0, 4),
        (0.3, 0.5, 0.0, 4),
        (0.3, 0.5, 0.8, 4),
        (0.3, 0.5, 0.8, 8),
    }
    assert len(rows) == 5
    assert (chosen["offset_hold"], chosen["offset_hold_frames"]) == (0.8, 8)


def test_the_legato_rule_is_tried_on_the_best_offset_config_and_ranked_as_offsets_are():
    """OFFSET_TAIL_KEYS add configs rather than multiply the offset grid: the offset grid is
    scored at the base's legato value, then each other value once, on its best config, ranked by
    note-with-offset F1 (+ frame_weight x frame F1); ties keep the config scored first."""

    def score(values):
        legato = {0: 0.0, 1: 0.01, 2: 0.02, 3: 0.015}[values["legato_semitones"]]
        offset = 0.6 - 0.1 * abs(values["offset_shift_frames"] - 1) + legato
        frame = {0: 0.7, 1: 0.8, 2: 0.75, 3: 0.7}[values["legato_semitones"]]
        return {"note/f1": 0.8, "note_offset/f1": offset, "frame/f1": frame}

    grid = {"offset_shift_frames": [0, 1, 2], "legato_semitones": [0, 1, 2, 3]}
    rows, keys, chosen, best = run_sweep({**BASE, "legato_semitones": 2}, grid, score)
    assert keys == ["offset_shift_frames", "legato_semitones"]
    # the base row, 2 more shifts at the base's legato 2, then legato 0, 1 and 3 at shift 1
    assert [(r["offset_shift_frames"], r["legato_semitones"]) for r in rows] == [
        (0, 2),
        (1, 2),
        (2, 2),
        (1, 0),
        (1, 1),
        (1, 3),
    ]
    assert (chosen["offset_shift_frames"], chosen["legato_semitones"]) == (1, 2)
    assert abs(best["note_offset/f1"] - 0.62) < 1e-12
    # frame F1 counts too: at 0.25 x frame F1, 1 semitone (0.61 + 0.2) beats 2 (0.62 + 0.1875)
    chosen = run_sweep({**BASE, "legato_semitones": 2}, grid, score, frame_weight=0.25)[2]
    assert chosen["legato_semitones"] == 1
    # an even tie keeps the first scored: the base's value
    flat = run_sweep(
        {**BASE, "legato_semitones": 2},
        grid,
        lambda v: {"note/f1": 0.8, "note_offset/f1": 0.6, "frame/f1": 0.8},
    )[2]
    assert flat["legato_semitones"] == 2
