"""Decoding on hand-built inputs with known answers: note-level refinement by the onset and frame
heads (both models), pairing before refinement, and every rule of the Seq2Seq grammar mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtlib import events as ev
from mtlib.decode import (
    DecodeConfig,
    SegmentState,
    add_frame_notes,
    add_head_notes,
    adjust_offsets,
    advance,
    allowed_mask,
    confirm_notes,
    frame_offsets,
    legato_offsets,
    merge_reonsets,
    recover_orphans,
    refine_note_onsets,
    refine_notes,
)
from mtlib.events import FrameEvent, FrameNote, stitch_segments
from mtlib.features import FeatureConfig
from mtlib.transcriber import ModelOutput, Transcriber
from mtlib.vocab import Vocabulary

VOCAB = Vocabulary(max_shift=8, min_pitch=60, max_pitch=63)


def probs_with_peaks(T: int, P: int, peaks: dict[tuple[int, int], float]) -> np.ndarray:
    a = np.full((T, P), 0.01, np.float32)
    for (t, p), v in peaks.items():
        a[t, p] = v
    return a


def test_frame_offsets_end_each_note_where_its_pitch_stops_sounding():
    T = 40
    probs = np.zeros((T, 2), np.float32)
    probs[10:20, 0] = 0.9  # pitch 60 sounds 10..19
    probs[5:39, 1] = 0.9  # pitch 61 sounds on past the next onset and almost to the end
    notes = [FrameNote(10, 12, 60), FrameNote(5, 9, 61), FrameNote(30, 31, 61)]
    out = frame_offsets(notes, probs, 0.5, min_pitch=60, n_frames=T)
    # the token offsets are ignored; 61's first note stops at its next onset (30)
    assert out == sorted([FrameNote(10, 20, 60), FrameNote(5, 30, 61), FrameNote(30, 39, 61)])
    # the safety limit bounds a note the frame head never ends
    assert frame_offsets([FrameNote(5, 9, 61)], probs, 0.5, 60, T, max_frames=10) == [
        FrameNote(5, 15, 61)
    ]
    # a note the frame head does not hear keeps one frame
    assert frame_offsets([FrameNote(25, 28, 60)], probs, 0.5, 60, T) == [FrameNote(25, 26, 60)]


def test_the_offset_head_ends_a_note_at_its_last_release_peak_before_the_frame_head_does():
    T = 40
    frame = np.zeros((T, 2), np.float32)
    frame[10:30, 0] = 0.9  # pitch 60 rings 10..29 (a pedal, a room), released at 25
    frame[0:12, 1] = 0.9  # pitch 61 sounds 0..11
    offset = np.full((T, 2), 0.01, np.float32)
    offset[14:17, 0] = [0.3, 0.7, 0.4]  # a peak mid-note at 15 (a pedal change)
    offset[20, 0] = 0.9  # the highest one
    offset[24:27, 0] = [0.5, 0.6, 0.6]  # the last, a plateau: its first frame, 25, is the peak
    offset[10:12, 1] = [0.8, 0.6]  # 61's release tail at its re-onset 10: falling, not a peak
    offset[30, 1] = 0.9  # a peak after the frame head let 61 go changes nothing
    notes = [FrameNote(10, 11, 60), FrameNote(0, 5, 61), FrameNote(10, 11, 61)]
    plain = frame_offsets(notes, frame, 0.5, 60, T)
    assert plain == sorted([FrameNote(0, 10, 61), FrameNote(10, 30, 60), FrameNote(10, 12, 61)])
    out = frame_offsets(notes, frame, 0.5, 60, T, offset_probs=offset, offset_threshold=0.5)
    assert out == sorted([FrameNote(0, 10, 61), FrameNote(10, 25, 60), FrameNote(10, 12, 61)])
    # a peak below the threshold is no release: the last one that reaches it counts
    assert frame_offsets(notes, frame, 0.5, 60, T, offset_probs=offset, offset_threshold=0.65) == (
        sorted([FrameNote(0, 10, 61), FrameNote(10, 20, 60), FrameNote(10, 12, 61)])
    )
    assert (
        frame_offsets(notes, frame, 0.5, 60, T, offset_probs=offset, offset_threshold=0.95) == plain
    )
    assert (
        frame_offsets(notes, frame, 0.5, 60, T, offset_probs=offset, offset_threshold=0.0) == plain
    )
    # through refine_notes, by decode.offset_threshold, when the model has the head
    cfg = DecodeConfig(frame_threshold=0.5, offset_threshold=0.5)
    heads = {"frame": frame, "offset": offset}
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == out
    assert refine_notes(notes, {"frame": frame}, cfg, "ctc", 60, T) == plain


def test_a_relative_floor_ends_a_note_whose_tail_stays_above_the_threshold():
    T = 40
    frame = np.zeros((T, 2), np.float32)
    frame[10:16, 0] = [0.3, 0.9, 0.8, 0.5, 0.35, 0.3]  # pitch 60 peaks at 11 and decays ...
    frame[16:30, 0] = 0.25  # ... into a tail above the fixed threshold until 30
    frame[5:20, 1] = [0.3] * 14 + [0.1]  # pitch 61: a weak note, never above 0.3
    notes = [FrameNote(10, 11, 60), FrameNote(5, 6, 61)]

    def ends(relative):
        out = frame_offsets(notes, frame, 0.2, 60, T, relative=relative)
        return [n.offset for n in sorted(out, key=lambda n: n.pitch)]  # 60's, then 61's

    assert ends(0.0) == [30, 19]  # the fixed threshold alone: 60's tail holds it to 30
    # below 0.4 x 0.9 = 0.36 from 14 (0.35); 61 never falls below 0.4 x its own highest (0.3)
    assert ends(0.4) == [14, 19]
    assert ends(0.3) == [16, 19]  # below 0.27 from 16 (0.25)
    # the highest so far, not the note's: an onset that rises slowly is not cut by its later peak
    frame[10:13, 0] = [0.3, 0.3, 0.9]  # 0.3 at 11 is below 0.4 x the peak at 12, not x 11's own
    assert ends(0.4) == [14, 19]
    cfg = DecodeConfig(frame_threshold=0.2, frame_relative=0.4)
    assert refine_notes(notes, {"frame": frame}, cfg, "ctc", 60, T) == sorted(
        [FrameNote(10, 14, 60), FrameNote(5, 19, 61)]
    )


def test_a_release_peak_counts_only_where_the_frame_head_lets_the_pitch_go():
    T = 40
    frame = np.zeros((T, 1), np.float32)
    frame[10:30, 0] = 0.95  # pitch 60 sounds 10..29 at full strength ...
    frame[24:30, 0] = [0.95, 0.5, 0.4, 0.3, 0.3, 0.3]  # ... and fades from 25: released there
    offset = np.full((T, 1), 0.01, np.float32)
    offset[18, 0] = 0.8  # a peak the pitch sounds on after (frame head 0.95): a pedal change
    offset[25, 0] = 0.7  # the release: the frame head's mean over 25..28 is 0.375
    notes = [FrameNote(10, 11, 60)]

    def ends(**hold):
        (n,) = frame_offsets(
            notes, frame, 0.2, 60, T, offset_probs=offset, offset_threshold=0.5, **hold
        )
        return n.offset

    assert ends() == 25  # the last peak, whatever the frame head says
    offset[25, 0] = 0.01  # without the release peak the pedal change ends the note ...
    assert ends() == 18
    assert ends(hold=0.9) == 30  # ... unless the hold refuses it: the frame head ends the note
    offset[25, 0] = 0.7
    assert ends(hold=0.9) == 25 and ends(hold=0.37) == 30  # the release's window: mean 0.375
    assert ends(hold=0.38) == 25 and ends(hold=0.38, hold_frames=1) == 30  # frame 25 alone: 0.5
    # at the end of the track the window is what is left of it
    late = np.zeros((T, 1), np.float32)
    late[30:, 0] = 0.95
    late[38:, 0] = 0.1
    off = np.full((T, 1), 0.01, np.float32)
    off[38, 0] = 0.9
    (n,) = frame_offsets(
        [FrameNote(30, 31, 60)],
        late,
        0.05,
        60,
        T,
        offset_probs=off,
        offset_threshold=0.5,
        hold=0.2,
        hold_frames=8,
    )
    assert n.offset == 38
    # through refine_notes, by decode.offset_hold and decode.offset_hold_frames
    cfg = DecodeConfig(
        frame_threshold=0.2, offset_threshold=0.5, offset_hold=0.37, offset_hold_frames=4
    )
    heads = {"frame": frame, "offset": offset}
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == [FrameNote(10, 30, 60)]
    # the default window, 8 frames, takes in the silence after the fade: mean 0.225, released
    cfg = DecodeConfig(frame_threshold=0.2, offset_threshold=0.5, offset_hold=0.37)
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == [FrameNote(10, 25, 60)]
    cfg = DecodeConfig(
        frame_threshold=0.2, offset_threshold=0.5, offset_hold=0.37, offset_hold_frames=5
    )
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == [FrameNote(10, 25, 60)]  # mean 0.36


def test_frame_scope_unended_re_ends_only_the_notes_without_their_own_off():
    T = 40
    frame = np.zeros((T, 2), np.float32)
    frame[5:12, 0] = 0.9  # pitch 60 sounds 5..11
    frame[20:25, 0] = 0.9  # ... and 20..24
    frame[2:8, 1] = 0.9  # pitch 61 sounds 2..7
    # tokens: 60 ON 5 (no OFF; re-onset at 20), ON 20 (no OFF; the track ends), 61 ON 2, OFF 10
    events = [
        FrameEvent(2, ev.ON, 61),
        FrameEvent(5, ev.ON, 60),
        FrameEvent(10, ev.OFF, 61),
        FrameEvent(20, ev.ON, 60),
    ]
    unended: list = []
    notes, counts = stitch_segments([(0, None, events)], T, unended=unended)
    assert notes == [FrameNote(2, 10, 61), FrameNote(5, 20, 60), FrameNote(20, 40, 60)]
    assert sorted(unended) == [(60, 20), (60, 40)]
    assert counts["on_sounding"] == 1 and counts["closed_at_end"] == 1
    unended_cfg = DecodeConfig(frame_threshold=0.5, frame_scope="unended")
    out = refine_notes(notes, {"frame": frame}, unended_cfg, "ctc", 60, T, (), unended)
    # the two guessed offsets come from the frame head; 61 keeps its own OFF at 10, where
    # frame_scope "all" takes the head's 8
    assert out == [FrameNote(2, 10, 61), FrameNote(5, 12, 60), FrameNote(20, 25, 60)]
    every = dataclasses.replace(unended_cfg, frame_scope="all")
    assert FrameNote(2, 8, 61) in refine_notes(notes, {"frame": frame}, every, "ctc", 60, T)
    assert frame_offsets(notes, frame, 0.5, 60, T, only=set()) == notes
    # a late OFF: 61's own OFF (10) comes 2 frames after the head's offset (8)
    late = dataclasses.replace(unended_cfg, frame_cut_frames=1)
    assert FrameNote(2, 8, 61) in refine_notes(notes, {"frame": frame}, late, "ctc", 60, T)
    # ... and at cut 2 it stays (8 is not more than 2 frames before 10), while both 60s are cut
    assert frame_offsets(notes, frame, 0.5, 60, T, only=set(), cut=2) == [
        FrameNote(2, 10, 61),
        FrameNote(5, 12, 60),
        FrameNote(20, 25, 60),
    ]
    with pytest.raises(ValueError, match="decode.frame_scope is 'open'; it takes all or unended"):
        DecodeConfig(frame_scope="open")


def test_recover_orphans_makes_notes_the_onset_head_explains():
    T = 40
    onset = np.zeros((T, 2), np.float32)
    onset[[8, 22], 0] = [0.7, 0.3]  # pitch 60: a clear peak at 8, a weak one at 22
    onset[3, 1] = 0.9  # pitch 61: before the window of its orphan at 30
    notes = [FrameNote(12, 15, 60)]
    orphans = [(11, 60), (25, 60), (30, 61), (35, 60)]
    out = recover_orphans(notes, orphans, onset, window=20, threshold=0.5, min_pitch=60)
    # 11 ← peak at 8; 25: the peak at 22 is below threshold; 61: its peak lies outside the window;
    # 35: the strongest peak in its window (8) lies before 60's previous note ended (15)
    assert out == [FrameNote(8, 11, 60), FrameNote(12, 15, 60)]
    out = recover_orphans(notes, orphans, onset, window=20, threshold=0.2, min_pitch=60)
    assert FrameNote(22, 25, 60) in out and FrameNote(8, 11, 60) in out
    # never before the note it recovered just now: 35 may not reach back past 25
    assert not any(n.onset < 25 < n.offset for n in out)
    assert recover_orphans(notes, orphans, onset, 0, 0.2, 60) == notes  # window 0: off
    cfg = DecodeConfig(orphan_window=20, orphan_threshold=0.5)
    assert refine_notes(notes, {"onset": onset}, cfg, "ctc", 60, T, orphans) == [
        FrameNote(8, 11, 60),
        FrameNote(12, 15, 60),
    ]
    assert refine_notes(notes, {}, cfg, "ctc", 60, T, orphans) == notes  # no onset head


def test_confirm_notes_keeps_the_notes_the_onset_head_heard():
    T = 30
    onset = np.zeros((T, 2), np.float32)
    onset[10, 0], onset[20, 0], onset[5, 1] = 0.9, 0.05, 0.3
    # 60 at 11: the peak at 10 lies within 1 frame; 60 at 20: a repeated onset the head barely
    # heard; 61 at 3: its peak at 5 lies 2 frames away; 62: a pitch the head does not cover
    notes = [FrameNote(11, 20, 60), FrameNote(20, 25, 60), FrameNote(3, 8, 61), FrameNote(4, 6, 62)]
    out = confirm_notes(notes, onset, window=1, threshold=0.1, min_pitch=60)
    assert out == [FrameNote(11, 20, 60), FrameNote(4, 6, 62)]
    wide = confirm_notes(notes, onset, window=2, threshold=0.1, min_pitch=60)
    assert wide == [FrameNote(11, 20, 60), FrameNote(3, 8, 61), FrameNote(4, 6, 62)]
    assert confirm_notes(notes, onset, window=1, threshold=0.01, min_pitch=60)[:2] == notes[:2]
    # in refine_notes it runs before the frame head: the note before a dropped re-onset of its
    # pitch may sound on through it
    frame = np.zeros((T, 2), np.float32)
    frame[11:24, 0] = 0.9
    cfg = DecodeConfig(confirm_threshold=0.1, confirm_window=1, frame_threshold=0.5)
    heads = {"onset": onset, "frame": frame}
    assert refine_notes(notes[:2], heads, cfg, "seq2seq", 60, T) == [FrameNote(11, 24, 60)]
    off = dataclasses.replace(cfg, confirm_threshold=0.0)
    assert refine_notes(notes[:2], heads, off, "seq2seq", 60, T) == [
        FrameNote(11, 20, 60),
        FrameNote(20, 24, 60),
    ]


def test_merge_reonsets_keeps_a_note_the_onset_head_did_not_hear_again_as_one():
    T = 40
    onset = np.zeros((T, 2), np.float32)
    onset[2, 0], onset[10, 0], onset[31, 0] = 0.9, 0.05, 0.6
    onset[20, 1] = 0.05
    notes = [
        FrameNote(2, 10, 60, program=41),  # 60 struck at 2 ...
        FrameNote(10, 18, 60, program=43),  # ... "again" where it ends, the head barely heard it
        FrameNote(18, 25, 60),  # ... and again, nothing at all in the head: all one note
        FrameNote(30, 35, 60),  # a new note after a gap: no re-onset, kept
        FrameNote(32, 38, 60),  # starts inside the one before, the head's peak at 31 confirms it
        FrameNote(5, 20, 61),
        FrameNote(19, 26, 61),  # overlaps the note before; the head's 0.05 at 20 is within 1 frame
        FrameNote(3, 9, 62),  # a pitch the head does not cover
        FrameNote(9, 12, 62),
    ]
    out = merge_reonsets(notes, onset, window=1, threshold=0.1, min_pitch=60)
    assert out == [
        FrameNote(2, 25, 60, program=41),  # the first note's program stays
        FrameNote(3, 9, 62),
        FrameNote(5, 26, 61),
        FrameNote(9, 12, 62),
        FrameNote(30, 35, 60),
        FrameNote(32, 38, 60),
    ]
    # at a threshold the head's 0.05 reaches, those re-onsets stand
    assert merge_reonsets(notes, onset, 1, 0.05, 60) == sorted(
        [FrameNote(2, 10, 60, program=41), FrameNote(10, 25, 60, program=43)] + notes[3:]
    )
    # in refine_notes it runs before the frame head, at cfg.reonset_threshold (0 = off)
    frame = np.zeros((T, 2), np.float32)
    frame[2:24, 0] = 0.9
    cfg = DecodeConfig(reonset_threshold=0.1, frame_threshold=0.5)
    heads = {"onset": onset, "frame": frame}
    assert refine_notes(notes[:3], heads, cfg, "ctc", 60, T) == [FrameNote(2, 24, 60, program=41)]
    off = dataclasses.replace(cfg, reonset_threshold=0.0)
    assert refine_notes(notes[:3], heads, off, "ctc", 60, T) == [
        FrameNote(2, 10, 60, program=41),
        FrameNote(10, 18, 60, program=43),
        FrameNote(18, 24, 60),
    ]


def test_add_head_notes_adds_the_onsets_the_tokens_missed():
    T = 40
    onset = np.zeros((T, 3), np.float32)
    onset[4:7, 0] = [0.5, 0.8, 0.5]  # 60: a peak at 5, nothing starts near it
    onset[12, 0] = 0.9  # 60: 2 frames from the note at 14, which explains it
    onset[25, 0] = 0.6  # 60: inside the note 14-30, a re-onset the tokens missed
    onset[8, 1] = 0.2  # 61: below the threshold
    onset[30:33, 2] = 0.7  # 62: a plateau counts once, at its first frame
    notes = [FrameNote(14, 30, 60)]
    out, added = add_head_notes(notes, onset, window=2, threshold=0.3, min_pitch=60)
    assert out == [
        FrameNote(5, 6, 60),
        FrameNote(14, 25, 60),
        FrameNote(25, 26, 60),
        FrameNote(30, 31, 62),
    ]
    assert added == [(60, 6), (60, 26), (62, 31)]  # (pitch, offset) of each, in time order
    # a narrower window lets the peak at 12 start a note of its own; threshold 0: off
    narrow, _ = add_head_notes(notes, onset, window=1, threshold=0.3, min_pitch=60)
    assert FrameNote(12, 13, 60) in narrow
    assert add_head_notes(notes, onset, 2, 0.0, 60) == (notes, [])
    # in refine_notes it runs after confirmation, which drops the token note at 14 (no peak within
    # 1 frame reaches 0.4), so the peak at 12 becomes a note too; the frame head ends the added
    # notes, also where it ends no token note (frame_scope unended)
    frame = np.zeros((T, 3), np.float32)
    frame[5:10, 0] = frame[30:36, 2] = 0.9
    cfg = DecodeConfig(
        add_threshold=0.3, frame_threshold=0.5, frame_scope="unended", confirm_threshold=0.4
    )
    heads = {"onset": onset, "frame": frame}
    assert refine_notes(notes, heads, cfg, "seq2seq", 60, T) == [
        FrameNote(5, 10, 60),
        FrameNote(12, 13, 60),
        FrameNote(25, 26, 60),
        FrameNote(30, 36, 62),
    ]
    assert (
        refine_notes(notes, heads, dataclasses.replace(cfg, add_threshold=0.0), "seq2seq", 60, T)
        == []
    )


def test_add_frame_notes_adds_the_runs_of_the_frame_head_no_note_explains():
    T, P = 60, 4
    frame = np.zeros((T, P), np.float32)
    onset = np.zeros((T, P), np.float32)
    frame[10:20, 0], onset[9, 0] = 0.9, 0.3  # 60: a run, onset peak 1 frame before it: added 9-20
    frame[30:33, 0], onset[30, 0] = 0.9, 0.9  # 60: 3 frames, shorter than min_frames: not added
    frame[5:25, 1], onset[5, 1] = 0.9, 0.9  # 61: sounds past its note 5-15: continues it, no note
    frame[40:50, 2], onset[40, 2] = 0.9, 0.04  # 62: onset head below the gate: not added
    frame[20:30, 3], onset[17:20, 3] = 0.9, 0.8  # 63: a note sounds 10-18, one frame before the
    #   run: the onset peak is searched from 19 (not inside the note, where it is 0.8 too) to 22
    notes = [FrameNote(5, 15, 61), FrameNote(10, 19, 63)]
    args = dict(threshold=0.5, min_frames=4, onset_threshold=0.05, window=2, min_pitch=60)
    out = add_frame_notes(notes, frame, onset, **args)
    assert out == sorted(notes + [FrameNote(9, 20, 60), FrameNote(19, 30, 63)])
    # notes stay valid: no two notes of a pitch overlap
    for a, b in zip(out, out[1:]):
        assert a.pitch != b.pitch or a.offset <= b.onset
    # gate 0: off; a stricter gate drops the run whose onset peak is 0.3; the safety limit caps
    assert add_frame_notes(notes, frame, onset, **{**args, "onset_threshold": 0.0}) == notes
    assert FrameNote(9, 20, 60) not in add_frame_notes(
        notes, frame, onset, **{**args, "onset_threshold": 0.5}
    )
    capped = add_frame_notes(notes, frame, onset, **args, max_frames=5)
    assert FrameNote(9, 14, 60) in capped
    # in refine_notes it is the last step, off unless decode.frame_add_onset > 0
    cfg = DecodeConfig(frame_add_onset=0.05, frame_add_threshold=0.5, frame_add_frames=4)
    heads = {"onset": onset, "frame": frame}
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == out
    assert refine_notes(notes, heads, DecodeConfig(), "ctc", 60, T) == notes


def test_legato_offsets_end_a_note_where_its_line_moves_on_by_step():
    notes = [
        FrameNote(0, 40, 60),  # C4 rings on (pedal): D4 starts at 10, within 2 semitones
        FrameNote(0, 40, 64),  # E4, same chord: D4 (2 below) starts at 10 too
        FrameNote(0, 40, 72),  # C5: nothing within 2 semitones follows; keeps its offset
        FrameNote(10, 20, 62),  # D4: C#4 starts at 25, after its offset; keeps it
        FrameNote(25, 30, 61),  # C#4: G4 starts at its offset, not before; keeps it
        FrameNote(30, 35, 67),  # G4: 3 semitones from E4, 5 from C4: cuts nothing at 2
    ]
    out = legato_offsets(notes, 2)
    assert out == sorted(
        [
            FrameNote(0, 10, 60),
            FrameNote(0, 10, 64),
            FrameNote(0, 40, 72),
            FrameNote(10, 20, 62),
            FrameNote(25, 30, 61),
            FrameNote(30, 35, 67),
        ]
    )
    # one semitone: only C#4 at 25 is near C4 (D4 is 2 away); E4 has no neighbour at 1
    one = legato_offsets(notes, 1)
    assert FrameNote(0, 25, 60) in one and FrameNote(0, 40, 64) in one
    # three semitones: G4 at 30 ends E4 too, but D4 at 10 came first
    assert FrameNote(0, 10, 64) in legato_offsets(notes, 3)
    # 0: off, the notes as they are
    assert legato_offsets(notes, 0) == notes
    # a chord's own notes never end each other, whatever the distance; onsets never move
    chord = [FrameNote(5, 30, 60), FrameNote(5, 30, 61), FrameNote(5, 30, 62)]
    assert legato_offsets(chord, 12) == chord
    assert [n.onset for n in sorted(out)] == [n.onset for n in sorted(notes)]
    # a successor one frame after the onset leaves the note its one frame
    assert legato_offsets([FrameNote(3, 9, 60), FrameNote(4, 9, 62)], 2)[0] == FrameNote(3, 4, 60)
    # a successor exactly at the offset changes nothing
    assert legato_offsets([FrameNote(3, 9, 60), FrameNote(9, 12, 62)], 2)[0] == FrameNote(3, 9, 60)


def test_refine_notes_ends_notes_by_the_legato_rule_last():
    """legato_offsets runs after every other step, on their notes: here after add_frame_notes
    added a note whose onset ends the sounding neighbour."""
    T = 60
    frame = np.zeros((T, 3), np.float32)
    onset = np.zeros((T, 3), np.float32)
    frame[0:50, 0], onset[0, 0] = 0.9, 0.9  # 60 sounds 0-50 (a pedal)
    frame[20:30, 2], onset[20, 2] = 0.9, 0.9  # 62: only the heads heard it
    notes = [FrameNote(0, 50, 60)]
    cfg = DecodeConfig(frame_add_onset=0.05, frame_add_threshold=0.5, frame_add_frames=4)
    heads = {"onset": onset, "frame": frame}
    assert refine_notes(notes, heads, cfg, "ctc", 60, T) == [
        FrameNote(0, 50, 60),
        FrameNote(20, 30, 62),
    ]
    legato = dataclasses.replace(cfg, legato_semitones=2)
    assert refine_notes(notes, heads, legato, "ctc", 60, T) == [
        FrameNote(0, 20, 60),
        FrameNote(20, 30, 62),
    ]


def test_refine_notes_uses_each_head_only_when_asked_and_present():
    T = 30
    onset = np.zeros((T, 1), np.float32)
    onset[12, 0] = 0.9
    frame = np.zeros((T, 1), np.float32)
    frame[12:20, 0] = 0.9
    notes = [FrameNote(10, 14, 60)]
    cfg = DecodeConfig(ctc_onset_window=3, ctc_onset_threshold=0.1, frame_threshold=0.5)
    assert refine_notes(notes, {"onset": onset, "frame": frame}, cfg, "ctc", 60, T) == [
        FrameNote(12, 20, 60)
    ]
    # the Seq2Seq window is its own key: the onset stays, and the frame head is silent at 11
    assert refine_notes(notes, {"onset": onset, "frame": frame}, cfg, "seq2seq", 60, T) == [
        FrameNote(10, 11, 60)
    ]
    assert refine_notes(notes, {}, cfg, "ctc", 60, T) == notes  # a model without heads
    off = dataclasses.replace(cfg, ctc_onset_window=0, frame_threshold=0.0)
    assert refine_notes(notes, {"onset": onset, "frame": frame}, off, "ctc", 60, T) == notes


def ctc_ids(kind: str, pitch: int) -> int:
    lo, _ = VOCAB.ctc.on_range if kind == "on" else VOCAB.ctc.off_range
    return lo + pitch - VOCAB.min_pitch


def test_ctc_onset_refinement_after_pairing_never_orphans_a_note_off():
    """An onset-head peak after the note's own NOTE_OFF: refining tokens before pairing moved the ON
    past its OFF (an OFF for a silent pitch, then a note open to the cap); after pairing the note
    stays whole."""
    T = 40
    onset = np.zeros((T, VOCAB.ctc.n_pitches), np.float32)
    onset[14, 1] = 0.9
    out = ModelOutput(
        "ctc", T, [(0, T, [ctc_ids("on", 61), ctc_ids("off", 61)], [10, 12])], {"onset": onset}
    )
    cfg = DecodeConfig(ctc_onset_window=4, ctc_onset_threshold=0.1, max_note_frames=30)
    tr = Transcriber(None, FeatureConfig(), T, VOCAB, cfg).notes_from(out)
    assert tr.frame_notes == [FrameNote(10, 12, 61)] == tr.raw_notes
    assert tr.counts["off_silent"] == 0 and tr.counts["on_sounding"] == 0


def test_raw_notes_keep_the_tokens_offsets_and_the_latency_correction():
    T = 40
    frame = np.zeros((T, VOCAB.ctc.n_pitches), np.float32)
    frame[9:30, 0] = 0.9
    out = ModelOutput(
        "ctc",
        T,
        [(0, 20, [ctc_ids("on", 60), ctc_ids("off", 60)], [10, 15]), (20, 20, [], [])],
        {"frame": frame},
    )
    tr = Transcriber(
        None, FeatureConfig(), 20, VOCAB, DecodeConfig(ctc_shift_frames=-1, frame_threshold=0.5)
    ).notes_from(out)
    assert tr.raw_notes == [FrameNote(9, 14, 60)]  # the tokens' times, shifted by -1
    assert tr.frame_notes == [FrameNote(9, 30, 60)]  # ends where the frame head falls
    assert tr.segment_starts == [0, 20]


# --------------------------------------------------------------------------- allowed_mask, rule by rule


def state_after(tokens: list[int]) -> SegmentState:
    s = SegmentState()
    for t in tokens:
        advance(s, t, VOCAB)
    return s


def allowed(tokens: list[int], n_frames: int = 16, **cfg) -> set[int]:
    mask, _ = allowed_mask(state_after(tokens), VOCAB, n_frames, DecodeConfig(**cfg))
    return set(np.flatnonzero(mask).tolist())


ON = {p: VOCAB.note_on(p) for p in range(60, 64)}
OFF = {p: VOCAB.note_off(p) for p in range(60, 64)}


def test_mask_no_off_for_a_silent_pitch_and_no_on_for_a_sounding_one():
    a = allowed([VOCAB.TIE, ON[61], VOCAB.shift(1)])
    assert OFF[61] in a and not {OFF[60], OFF[62], OFF[63]} & a  # only the sounding pitch can end
    assert (
        ON[61] not in a and {ON[60], ON[62], ON[63]} <= a
    )  # the sounding pitch cannot start again


def test_mask_tie_section_is_ascending_note_ons_then_tie():
    a = allowed([ON[61]])
    assert a == {ON[62], ON[63], VOCAB.TIE}


def test_mask_within_a_frame_offs_come_before_ons_both_ascending():
    a = allowed([ON[60], ON[62], VOCAB.TIE, OFF[62]])
    assert OFF[60] not in a  # ascending offs: 60 < 62
    a = allowed([VOCAB.TIE, ON[61]])
    assert not {OFF[60], OFF[61], OFF[62], OFF[63]} & a  # no off after an on in the same frame
    assert ON[60] not in a and {ON[62], ON[63]} <= a  # ascending ons


def test_mask_per_frame_and_active_note_limits():
    a = allowed([VOCAB.TIE, ON[60], ON[61]], max_notes_per_frame=2)
    assert not {ON[p] for p in ON} & a and VOCAB.shift(1) in a
    a = allowed([VOCAB.TIE, ON[60], VOCAB.shift(1), ON[61]], max_active_notes=2)
    assert not {ON[p] for p in ON} & a
    assert ON[63] not in allowed([ON[60], ON[61]], max_active_notes=2)  # in the tie section too


def test_mask_min_len_forced_eos_and_max_len():
    assert VOCAB.EOS not in allowed([VOCAB.TIE], min_len=3)
    assert VOCAB.EOS in allowed([VOCAB.TIE, VOCAB.shift(1), VOCAB.shift(1)], min_len=3)
    assert allowed([VOCAB.TIE, VOCAB.shift(1)], max_len=3) == {VOCAB.EOS}  # forced at max_len
    assert allowed([VOCAB.TIE, VOCAB.EOS]) == {VOCAB.PAD}  # done


@pytest.mark.parametrize("n_frames", [5, 9, 16])
def test_mask_time_never_reaches_the_segments_end(n_frames):
    """Shifts stop at frame n_frames - 1, so no event can fall outside the segment."""
    for at in range(n_frames):
        tokens = [VOCAB.TIE] + VOCAB.shifts(at)
        a = allowed(tokens, n_frames=n_frames)
        shifts = [VOCAB.decode(t).value for t in a if VOCAB.decode(t).type == "shift"]
        assert max(shifts, default=0) == min(n_frames - 1 - at, VOCAB.max_shift)
    # at the last frame events and EOS are still allowed
    last = allowed([VOCAB.TIE] + VOCAB.shifts(n_frames - 1), n_frames=n_frames)
    assert ON[60] in last and VOCAB.EOS in last


def test_mask_shift_penalty_and_eos_ramp_are_biases():
    tokens = [VOCAB.TIE, VOCAB.shift(1), VOCAB.shift(1)]
    _, bias = allowed_mask(
        state_after(tokens), VOCAB, 16, DecodeConfig(shift_penalty=0.5, eos_ramp=0.1, min_len=1)
    )
    assert bias[VOCAB.shift(1)] == pytest.approx(-1.0)  # 2 shifts in a row x 0.5
    assert bias[VOCAB.EOS] == pytest.approx(0.2)  # 2 tokens beyond min_len x 0.1


def test_refine_note_onsets_keeps_notes_valid():
    min_pitch = 60
    probs = probs_with_peaks(30, 4, {(12, 0): 0.8, (2, 1): 0.9, (9, 2): 0.9, (21, 2): 0.9})
    notes = [
        FrameNote(10, 20, 60),  # peak at 12 within 6..14 → 12
        FrameNote(5, 6, 61),  # peak at 2 is before 5-4=1..: 2 is in 1..5 → 2, offset stays 6
        FrameNote(4, 8, 62),  # peak at 9 is at/after its offset 8 → not allowed; stays 4
        FrameNote(
            20, 25, 62
        ),  # peak 21 in 16..24, and not before the previous note's offset 8 → 21
    ]
    out = refine_note_onsets(notes, probs, window=4, threshold=0.1, min_pitch=min_pitch)
    assert out == sorted(
        [FrameNote(12, 20, 60), FrameNote(2, 6, 61), FrameNote(4, 8, 62), FrameNote(21, 25, 62)]
    )
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
    assert later == sorted(
        [FrameNote(0, 5, 60), FrameNote(5, 11, 60), FrameNote(2, 5, 61), FrameNote(10, 19, 62)]
    )
    earlier = adjust_offsets(notes, -3, n_frames=19)
    # a note never ends before one frame after its onset
    assert earlier == sorted(
        [FrameNote(0, 1, 60), FrameNote(5, 6, 60), FrameNote(2, 3, 61), FrameNote(10, 15, 62)]
    )
    assert adjust_offsets(notes, 0, n_frames=19) == notes


def test_adjust_offsets_caps_notes_left_open():
    notes = [FrameNote(0, 400, 60), FrameNote(10, 20, 61), FrameNote(50, 300, 62)]
    capped = adjust_offsets(notes, 0, n_frames=400, max_frames=100)
    assert capped == sorted([FrameNote(0, 100, 60), FrameNote(10, 20, 61), FrameNote(50, 150, 62)])
    # the shift applies first, the cap bounds the result
    assert adjust_offsets(notes, 2, n_frames=400, max_frames=100)[1] == FrameNote(10, 22, 61)
    assert adjust_offsets(notes, 0, n_frames=400, max_frames=0) == notes


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_blank_penalty_emits_a_token_where_blank_only_narrowly_won(decoder):
    from mtlib.decode import DecodeConfig, ctc_decode

    # slot 1: blank 0.55 against token 3 0.45 (a margin of 0.2 in log-probability)
    p = np.full((4, 5), 1e-6)
    p[:, 0] = 1.0
    p[1, 0], p[1, 3] = 0.55, 0.45
    log_probs = np.log(p / p.sum(axis=1, keepdims=True))
    cfg = DecodeConfig(ctc_decoder=decoder, ctc_beam_width=4)
    assert ctc_decode(log_probs, 4, cfg)[0].tolist() == []
    ids, slots = ctc_decode(log_probs, 4, dataclasses.replace(cfg, ctc_blank_penalty=0.25))
    assert ids.tolist() == [3] and slots.tolist() == [1]
    assert (
        ctc_decode(log_probs, 4, dataclasses.replace(cfg, ctc_blank_penalty=0.15))[0].tolist() == []
    )
    assert np.isclose(np.exp(log_probs).sum(axis=1), 1).all(), "the input is left as it was"
