"""benchmarks/offset_errors.py: the offset outcome of each found note, and which piano key
releases the pedal hides, on notes built here."""

from __future__ import annotations

import numpy as np

from benchmarks.offset_errors import (
    classify_offsets,
    length_group,
    offset_tolerance,
    pedal_hidden,
)


def test_each_found_note_is_ok_early_or_late_by_mir_evals_tolerance():
    ref = np.array([[0.0, 1.0], [2.0, 2.1], [3.0, 4.0], [5.0, 6.0]])
    est = np.array(
        [
            [0.01, 1.19],  # ok: 0.19 late, the tolerance is 20% of 1 s
            [2.02, 2.2],  # late: 0.1 s, the tolerance is the 50 ms floor
            [3.02, 3.5],  # early: 0.5 s before
            [5.2, 6.0],  # onset 200 ms off: not found, whatever its offset
            [7.0, 8.0],  # no reference note
        ]
    )
    pitches = np.array([60, 62, 64, 65])
    out = classify_offsets(ref, pitches, est, np.r_[pitches, 67])
    assert [(i, o) for i, o, _ in sorted(out)] == [(0, "ok"), (1, "late"), (2, "early")]
    # the error in tolerances: 0.19 / 0.2, 0.1 / 0.05, -0.5 / 0.2
    np.testing.assert_allclose([r for _, _, r in sorted(out)], [0.95, 2.0, -2.5])
    # another pitch is not a match
    assert classify_offsets(ref[:1], [60], est[:1], [61]) == []
    assert classify_offsets(ref, pitches, est[:0], []) == []
    np.testing.assert_allclose(offset_tolerance(ref), [0.2, 0.05, 0.2, 0.2])


def test_a_key_release_is_hidden_where_the_sound_outlasts_it_beyond_the_tolerance():
    ref = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 2.1], [2.0, 2.1]])
    sounding = np.array([1.0, 1.3, 2.14, 2.16])  # tolerances 0.2, 0.2, 0.05, 0.05
    assert pedal_hidden(ref, sounding).tolist() == [False, True, False, True]


def test_the_tolerances_are_evaluates_not_constants():
    """eval.onset_tolerance and eval.offset_ratio reach the classification: a wider offset ratio
    makes the early note ok, a narrower onset tolerance loses the note found 20 ms late."""
    ref = np.array([[0.0, 1.0], [3.0, 4.0]])
    est = np.array([[0.02, 1.0], [3.0, 3.5]])
    pitches = [60, 64]
    default = classify_offsets(ref, pitches, est, pitches)
    assert [(i, o) for i, o, _ in sorted(default)] == [(0, "ok"), (1, "early")]
    wide = classify_offsets(ref, pitches, est, pitches, offset_ratio=0.5)
    assert [(i, o) for i, o, _ in sorted(wide)] == [(0, "ok"), (1, "ok")]
    narrow = classify_offsets(ref, pitches, est, pitches, onset_tolerance=0.01)
    assert [(i, o) for i, o, _ in narrow] == [(1, "early")]
    np.testing.assert_allclose(offset_tolerance(ref, 0.5), [0.5, 0.5])
    assert pedal_hidden(ref, np.array([1.3, 4.3]), offset_ratio=0.5).tolist() == [False, False]


def test_length_groups_split_where_the_tolerance_changes():
    assert length_group(0.1) == "length 0-0.25 s"
    assert length_group(0.25) == "length 0.25-0.5 s"
    assert length_group(0.99) == "length 0.5-1 s"
    assert length_group(1.5) == "length 1-2 s"
    assert length_group(7.0) == "length 2+ s"
