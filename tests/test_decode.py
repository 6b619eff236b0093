"""Onset refinement by the onset head: token level (CTC) and note level (Seq2Seq), known answers."""
from __future__ import annotations

import numpy as np

from mtlib.decode import adjust_offsets, refine_note_onsets, refine_onsets
from mtlib.events import FrameNote


def probs_with_peaks(T: int, P: int, peaks: dict[tuple[int, int], float]) -> np.ndarray:
    a = np.full((T, P), 0.01, np.float32)
    for (t, p), v in peaks.items():
        a[t, p] = v
    return a


def test_refine_onsets_moves_to_the_peak_inside_the_window_only():
    probs = probs_with_peaks(20, 3, {(7, 0): 0.9, (15, 1): 0.9, (3, 2): 0.05})
    frames = np.array([5, 10, 4])
    out = refine_onsets(frames, np.array([0, 1, 2]), probs, window=2, threshold=0.1)
    # pitch 0: peak at 7 within 3..7 → 7; pitch 1: peak at 15 is outside 8..12 → stays;
    # pitch 2: peak 0.05 below the threshold → stays
    assert out.tolist() == [7, 10, 4]
    assert refine_onsets(frames, np.array([0, 1, 2]), probs, window=0, threshold=0.1).tolist() == [5, 10, 4]


def test_refine_note_onsets_keeps_notes_valid():
    min_pitch = 60
    probs = probs_with_peaks(30, 4, {(12, 0): 0.8, (2, 1): 0.9, (9, 2): 0.9, (21, 2): 0.9})
    notes = [
        FrameNote(10, 20, 60),  # peak at 12 within 6..14 → 12
        FrameNote(5, 6, 61),  # peak at 2 is before 5-4=1..: 2 is in 1..5 → 2, offset stays 6
        FrameNote(4, 8, 62),  # peak at 9 is at/after its offset 8 → not allowed; stays 4
        FrameNote(20, 25, 62),  # peak 21 in 16..24, and not before the previous note's offset 8 → 21
    ]
    out = refine_note_onsets(notes, probs, window=4, threshold=0.1, min_pitch=min_pitch)
    assert out == sorted([FrameNote(12, 20, 60), FrameNote(2, 6, 61), FrameNote(4, 8, 62), FrameNote(21, 25, 62)])
    assert all(n.offset > n.onset for n in out)


def test_refine_note_onsets_never_crosses_the_previous_same_pitch_note():
    probs = probs_with_peaks(20, 1, {(3, 0): 0.9})
    notes = [FrameNote(0, 5, 60), FrameNote(6, 9, 60)]  # the peak at 3 lies inside the first note
    out = refine_note_onsets(notes, probs, window=4, threshold=0.0, min_pitch=60)
    assert out[1].onset >= out[0].offset
    assert refine_note_onsets(notes, probs, window=0, threshold=0.0, min_pitch=60) == notes


def test_adjust_offsets_moves_offsets_but_keeps_notes_valid():
    notes = [FrameNote(0, 4, 60), FrameNote(5, 9, 60), FrameNote(2, 3, 61), FrameNote(10, 18, 62)]
    later = adjust_offsets(notes, 2, n_frames=19)
    # 60's first note stops at the next same-pitch onset (5), the last note at the track's end (19)
    assert later == sorted([FrameNote(0, 5, 60), FrameNote(5, 11, 60), FrameNote(2, 5, 61), FrameNote(10, 19, 62)])
    earlier = adjust_offsets(notes, -3, n_frames=19)
    # a note never ends before one frame after its onset
    assert earlier == sorted([FrameNote(0, 1, 60), FrameNote(5, 6, 60), FrameNote(2, 3, 61), FrameNote(10, 15, 62)])
    assert adjust_offsets(notes, 0, n_frames=19) == notes


def test_adjust_offsets_caps_notes_left_open():
    notes = [FrameNote(0, 400, 60), FrameNote(10, 20, 61), FrameNote(50, 300, 62)]
    capped = adjust_offsets(notes, 0, n_frames=400, max_frames=100)
    assert capped == sorted([FrameNote(0, 100, 60), FrameNote(10, 20, 61), FrameNote(50, 150, 62)])
    # the shift applies first, the cap bounds the result
    assert adjust_offsets(notes, 2, n_frames=400, max_frames=100)[1] == FrameNote(10, 22, 61)
    assert adjust_offsets(notes, 0, n_frames=400, max_frames=0) == notes
