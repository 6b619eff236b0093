"""Notes ↔ events ↔ tokens at frame resolution, both models' targets, and stitching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.events import (
    OFF,
    ON,
    FrameEvent,
    FrameNote,
    NoteArrays,
    canonical_frame_notes,
    ctc_targets,
    ctc_to_events,
    events_to_frame_notes,
    frame_notes_to_events,
    frame_notes_to_notes,
    notes_to_frame_notes,
    segment_tokens,
    stitch_segments,
    summarize_tokens,
    tokenize_track,
    tokens_to_segment_events,
)
from mtlib.notes import Note
from mtlib.vocab import Vocabulary

SMALL = Vocabulary(max_shift=4)  # gaps longer than max_shift are common with this one
DEFAULT = Vocabulary()
SR, HOP = 16000, 512


def key(notes):
    """Notes as (onset, offset, pitch) tuples: tokens carry no program."""
    return [(n.onset, n.offset, n.pitch) for n in notes]


@st.composite
def frame_note_sets(draw, max_frames=120, max_notes=25, max_len=80):
    """Random polyphonic frame notes within [0, max_frames), same-pitch overlaps allowed (and
    frequent when the drawn pitch range is narrow)."""
    pitches = draw(st.sampled_from([(21, 108), (60, 63)]))
    n = draw(st.integers(0, max_notes))
    notes = []
    for _ in range(n):
        onset = draw(st.integers(0, max_frames - 1))
        length = draw(st.integers(1, max_len))
        notes.append(FrameNote(onset, min(onset + length, max_frames), draw(st.integers(*pitches))))
    return notes


def segment_and_stitch(notes, n_frames, seg, hop, vocab, ctc=False):
    """Tokenize every segment of a track of n_frames, decode each, stitch back."""
    starts = range(0, max(n_frames - seg, 0) + hop, hop)
    arrays = NoteArrays.from_frame_notes(notes)
    segments = []
    for start in starts:
        length = min(seg, n_frames - start)
        if ctc:
            ids, frames = ctc_targets(arrays, start, length, vocab.ctc)
            events, counts = ctc_to_events(ids, frames, vocab.ctc)
            segments.append((start, None, events))
        else:
            ties, events, counts = tokens_to_segment_events(
                segment_tokens(arrays, start, length, vocab), vocab, length
            )
            segments.append((start, ties, events))
        assert not any(counts.values()), counts
    stitched, counts = stitch_segments(segments, n_frames)
    assert counts["off_silent"] == counts["on_sounding"] == counts["tie_unmatched"] == 0, counts
    return stitched


# ---------------------------------------------------------------------------------------------
# Known answers


def test_known_tokens_of_a_small_track():
    notes = [FrameNote(0, 3, 60), FrameNote(2, 9, 64), FrameNote(3, 5, 60), FrameNote(6, 20, 67)]
    assert SMALL.describe(segment_tokens(notes, 0, 4, SMALL)) == (
        "TIE ON(60) SHIFT(2) ON(64) SHIFT(1) OFF(60) ON(60) EOS"
    )
    assert SMALL.describe(segment_tokens(notes, 4, 4, SMALL)) == (
        "ON(60) ON(64) TIE SHIFT(1) OFF(60) SHIFT(1) ON(67) EOS"
    )
    # 67 ends exactly at 20: no OFF, no tie; the boundary ends it
    assert SMALL.describe(segment_tokens(notes, 16, 4, SMALL)) == "ON(67) TIE EOS"
    assert SMALL.describe(segment_tokens(notes, 20, 4, SMALL)) == "TIE EOS"
    ids, frames = ctc_targets(notes, 0, 4, SMALL.ctc)
    assert SMALL.ctc.describe(ids) == "ON(60) ON(64) OFF(60) ON(60)" and frames.tolist() == [
        0,
        2,
        3,
        3,
    ]
    ids, frames = ctc_targets(notes, 20, 4, SMALL.ctc)  # CTC keeps the OFF at the first frame
    assert SMALL.ctc.describe(ids) == "OFF(67)" and frames.tolist() == [0]


def test_long_gap_becomes_several_shifts():
    tokens = segment_tokens([FrameNote(10, 11, 60)], 0, 20, SMALL)
    assert SMALL.describe(tokens) == "TIE SHIFT(4) SHIFT(4) SHIFT(2) ON(60) SHIFT(1) OFF(60) EOS"


def test_chord_of_ten_with_offs_before_ons():
    chord = [FrameNote(0, 5, p) for p in range(60, 70)] + [
        FrameNote(5, 9, p) for p in range(60, 70, 2)
    ]
    tokens = segment_tokens(chord, 0, 16, DEFAULT)
    text = DEFAULT.describe(tokens)
    assert text.startswith(
        "TIE "
        + " ".join(f"ON({p})" for p in range(60, 70))
        + " SHIFT(5) "
        + " ".join(f"OFF({p})" for p in range(60, 70))
        + " ON(60) ON(62)"
    )
    ties, events, counts = tokens_to_segment_events(tokens, DEFAULT, 16)
    assert ties == [] and not any(counts.values())
    assert key(events_to_frame_notes(events, 16)[0]) == key(sorted(chord))


def test_seconds_to_frames_and_back():
    fps = SR / HOP  # 31.25 frames per second: one frame is 32 ms
    notes = [Note(0.0, 1.0, 60, 41), Note(0.5, 0.51, 62), Note(2.0, 2.0 + 1 / fps, 64)]
    frames = notes_to_frame_notes(notes, SR, HOP)
    assert frames == [FrameNote(0, 31, 60, 41), FrameNote(15, 16, 62, 0), FrameNote(62, 63, 64, 0)]
    back = frame_notes_to_notes(frames, SR, HOP)
    assert back[0] == Note(0.5 * HOP / SR, 31.5 * HOP / SR, 60, 41)  # frame midpoints
    assert notes_to_frame_notes(back, SR, HOP) == frames


def test_frame_round_trip_is_unbiased_and_within_half_a_frame():
    rng = np.random.default_rng(0)
    onsets = rng.uniform(0, 100, 5000)
    notes = [Note(t, t + 0.3, 60) for t in onsets]
    back = frame_notes_to_notes(notes_to_frame_notes(notes, SR, HOP), SR, HOP)
    err = np.array(sorted(n.onset for n in back)) - np.sort(onsets)
    half = 0.5 * HOP / SR
    assert np.all(np.abs(err) <= half + 1e-9)
    assert abs(err.mean()) < 0.05 * half  # the frame start would give mean -half


def test_canonical_resolves_same_pitch_overlaps():
    notes = [
        FrameNote(0, 100, 60),
        FrameNote(10, 20, 60),
        FrameNote(10, 15, 60),
        FrameNote(5, 8, 61),
    ]
    canon, changed = canonical_frame_notes(notes)
    assert key(canon) == [(0, 10, 60), (5, 8, 61), (10, 20, 60)] and changed == 2
    with pytest.raises(ValueError, match="offset > onset"):
        FrameNote(5, 5, 60)


# ---------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=60, deadline=None)
@given(frame_note_sets())
def test_events_round_trip_to_canonical_notes(notes):
    canon, _ = canonical_frame_notes(notes)
    events = frame_notes_to_events(notes)
    assert events == sorted(events)  # offs before ons, then pitch, within a frame
    got, counts = events_to_frame_notes(events, 121)  # every OFF (at most frame 120) inside
    assert key(got) == key(canon) and not any(counts.values())


@settings(max_examples=60, deadline=None)
@given(frame_note_sets(), st.integers(1, 64))
def test_whole_track_as_one_segment(notes, max_shift):
    vocab = Vocabulary(max_shift=max_shift)
    tokens = segment_tokens(notes, 0, 120, vocab)
    assert tokens[0] == vocab.TIE and tokens[-1] == vocab.EOS and tokens.count(vocab.TIE) == 1
    ties, events, counts = tokens_to_segment_events(tokens, vocab, 120)
    inside = [
        e for e in frame_notes_to_events(notes) if e.frame < 120
    ]  # an OFF at 120 is past the end
    assert ties == [] and events == inside and not any(counts.values())


@settings(max_examples=80, deadline=None)
@given(frame_note_sets(), st.integers(1, 40), st.sampled_from(["none", "half", "one"]))
def test_segment_and_stitch_reproduces_the_track(notes, seg, overlap):
    """Non-overlapping and overlapping segments, both models' targets, notes longer than segments."""
    hop = {"none": seg, "half": max(1, seg // 2), "one": max(1, seg - 1)}[overlap]
    canon = key(canonical_frame_notes(notes)[0])
    assert key(segment_and_stitch(notes, 120, seg, hop, SMALL)) == canon
    assert key(segment_and_stitch(notes, 120, seg, hop, SMALL, ctc=True)) == canon


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(2, 10))
def test_repeated_notes_with_zero_gap(lengths, seg):
    notes, t = [], 0
    for n in lengths:
        notes.append(FrameNote(t, t + n, 60))
        t += n
    assert key(segment_and_stitch(notes, t, seg, seg, SMALL)) == key(notes)
    assert key(segment_and_stitch(notes, t, seg, seg, SMALL, ctc=True)) == key(notes)


def test_note_longer_than_several_segments_and_boundary_cases():
    notes = [
        FrameNote(1, 95, 40),  # spans every segment
        FrameNote(10, 20, 50),
        FrameNote(20, 30, 50),  # ends / starts exactly on boundaries
        FrameNote(19, 20, 52),
        FrameNote(40, 100, 55),
    ]  # last frame of a segment; open at the end
    for seg, hop in ((10, 10), (10, 5), (7, 7), (100, 100)):
        assert key(segment_and_stitch(notes, 100, seg, hop, SMALL)) == key(sorted(notes))
        assert key(segment_and_stitch(notes, 100, seg, hop, SMALL, ctc=True)) == key(sorted(notes))


@settings(max_examples=60, deadline=None)
@given(frame_note_sets(max_frames=60), st.integers(0, 59), st.integers(1, 30))
def test_ctc_targets_decode_to_the_windows_onsets_and_offsets(notes, start, n):
    canon, _ = canonical_frame_notes(notes)
    ids, frames = ctc_targets(notes, start, n, DEFAULT.ctc)
    events, counts = ctc_to_events(ids, frames, DEFAULT.ctc)
    expected = [
        FrameEvent(e.frame - start, e.kind, e.pitch)
        for e in frame_notes_to_events(canon)
        if start <= e.frame < start + n
    ]
    assert events == expected and not any(counts.values())
    assert ids.dtype.name == frames.dtype.name == "int32"


# ---------------------------------------------------------------------------------------------
# Decoding never raises


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5, SMALL.size + 5), max_size=60), st.integers(1, 30))
def test_any_token_sequence_decodes_to_valid_notes(tokens, n_frames):
    ties, events, counts = tokens_to_segment_events(tokens, SMALL, n_frames)
    assert all(0 <= e.frame < n_frames for e in events) and ties == sorted(set(ties))
    notes, _ = stitch_segments([(0, [], []), (5, ties, events)], 5 + n_frames)
    assert all(0 <= n.onset < n.offset <= 5 + n_frames for n in notes)
    by_pitch = {}
    for n in notes:  # never two notes of one pitch at once
        assert n.onset >= by_pitch.get(n.pitch, 0)
        by_pitch[n.pitch] = n.offset


def test_invalid_tokens_are_counted():
    v = SMALL
    tokens = [
        v.note_on(60),
        v.SOS,
        v.note_on(60),
        v.TIE,
        999,
        v.SOS,
        v.TIE,
        v.shift(3),
        v.note_on(61),
        v.shift(4),
        v.note_off(61),
        v.EOS,
        v.note_on(62),
        v.PAD,
    ]
    ties, events, counts = tokens_to_segment_events(tokens, v, 5)
    assert ties == [60] and events == [FrameEvent(3, ON, 61)]
    assert counts == {
        "invalid_id": 1,
        "misplaced": 3,
        "duplicate_tie": 1,
        "missing_tie": 0,
        "missing_eos": 0,
        "after_eos": 1,
        "beyond_segment": 1,
    }
    ties, events, counts = tokens_to_segment_events([v.note_on(60), v.shift(1), v.note_off(60)], v)
    assert ties == [] and len(events) == 2 and counts["missing_tie"] == counts["missing_eos"] == 1


def test_invalid_events_are_counted_and_dropped():
    events = [
        FrameEvent(0, OFF, 60),
        FrameEvent(1, ON, 60),
        FrameEvent(3, ON, 60),
        FrameEvent(3, ON, 61),
        FrameEvent(3, OFF, 61),
        FrameEvent(12, ON, 62),
    ]
    notes, counts = events_to_frame_notes(events, 10)
    assert key(notes) == [(1, 3, 60), (3, 10, 60)]
    assert counts["off_silent"] == 1 and counts["on_sounding"] == 1 and counts["zero_length"] == 1
    assert counts["beyond_end"] == 1 and counts["closed_at_end"] == 1
    ids_events, counts = ctc_to_events([0, 1, 500, 89], [4, 2, 1, 0], DEFAULT.ctc)
    assert (
        ids_events == [FrameEvent(0, OFF, 21), FrameEvent(2, ON, 21)] and counts["invalid_id"] == 2
    )


def test_stitch_ties_and_cuts():
    segs = [
        (0, [], [FrameEvent(1, ON, 60), FrameEvent(2, ON, 64), FrameEvent(6, ON, 67)]),
        (4, [60, 72], [FrameEvent(2, OFF, 60)]),
    ]  # 64 not tied: ends at 4; 72 tied to nothing
    notes, counts = stitch_segments(segs, 10)
    assert key(notes) == [(1, 6, 60), (2, 4, 64)]
    assert counts["cut"] == 1 and counts["tie_unmatched"] == 1
    notes, _ = stitch_segments(
        [(0, None, [FrameEvent(1, ON, 60)]), (4, None, [FrameEvent(2, OFF, 60)])], 10
    )
    assert key(notes) == [(1, 6, 60)]  # CTC: no ties, the note runs to its OFF
    orphans: list = []
    stitch_segments(
        [(0, None, [FrameEvent(1, OFF, 60)]), (4, None, [FrameEvent(2, OFF, 61)])], 10, orphans
    )
    assert orphans == [(1, 60), (6, 61)]  # dropped OFFs, in track frames, for decode's recovery


def test_tokenize_track_rows_and_stats():
    notes = [
        Note(0.0, 0.5, 60, 1),
        Note(0.0, 0.5, 64, 1),
        Note(0.25, 3.0, 67, 41),
        Note(9.0, 9.5, 70),
    ]
    n_frames = 70  # 2.24 s: the last note is past the end, 67 is clipped
    result = tokenize_track(notes, n_frames, [(0, 0, 40), (1, 40, 30)], DEFAULT, SR, HOP)
    assert [(r["segment"], r["start_frame"], r["n_frames"]) for r in result.rows] == [
        (0, 0, 40),
        (1, 40, 30),
    ]
    assert DEFAULT.describe(result.rows[1]["tokens"]) == "ON(67) TIE EOS"
    assert result.stats == {
        "notes": 3,
        "notes_after_end": 1,
        "notes_clipped": 1,
        "same_pitch_overlaps": 0,
        "max_onsets_per_frame": 2,
        "max_polyphony": 3,
        "max_ctc_per_frame": 2,
    }
    stats = summarize_tokens([result], DEFAULT)
    assert stats["segments"] == 2 and stats["seq2seq_tokens_per_segment"]["max"] == 9
    assert stats["ctc_tokens_per_segment"]["max"] == 5 and stats["vocab_size"] == 244
    assert Vocabulary(**stats["vocab"]) == DEFAULT
