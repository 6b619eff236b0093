"""Notes at frame resolution, their ON/OFF events, both models' targets, and stitching.

Representation (the decisions every other module relies on):

* Time is the feature frame (`mtlib.timebase`). A `FrameNote` sounds in frames [onset, offset);
  a note shorter than one frame lasts one frame (offset = onset + 1).
* One note per pitch at a time. Tokens carry no instrument, so same-pitch notes that overlap
  (unisons across instruments) cannot all be told apart: `canonical_frame_notes` keeps the
  longest of notes starting in the same frame and cuts an earlier note at a later one's onset.
  This is exactly what decoding the overlapping events would give, so the round trip
  notes → tokens → notes is exact on canonical notes.
* An event is (frame, kind, pitch) with OFF=0 < ON=1, so sorting events as tuples puts offs
  before ons within a frame, then ascending pitch.
* Seq2Seq segment [start, start + n): a tie prefix of NOTE_ON(p) for each pitch sounding at frame
  `start` (onset < start < offset, ascending), then TIE, then the window's events, each preceded
  by TIME_SHIFTs from the previous event's frame (from 0; a gap > max_shift is several shifts),
  then EOS. A note still sounding at the window's end gets no NOTE_OFF there: the next segment's
  tie carries it on. A note ending exactly at `start` gets no NOTE_OFF either: it is absent from
  the tie prefix, and stitching closes it at the boundary, which is its true offset.
* CTC segment: every ON/OFF event with frame in [start, start + n) as CTC ids, with its frame
  relative to `start` (an OFF at the first frame included), no ties and no shifts.
* Decoding never raises: invalid tokens and events are dropped and counted (mt3's practice), and
  the counts are reported as metrics.
* Stitching: each segment's events are kept up to the next segment's start (mt3 cuts overlapping
  segments the same way); at a boundary a sounding note continues if the next segment's ties
  contain its pitch (ties None, as for CTC: until an OFF), else it ends at the boundary. Notes
  open at the track's end close at `end_frame`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mtlib.notes import Note, sort_notes
from mtlib.timebase import frame_to_seconds, seconds_to_frame
from mtlib.vocab import CTCVocabulary, Vocabulary

OFF, ON = 0, 1  # event kinds; OFF < ON orders offs before ons within a frame

# Keys of the counts dicts returned by decoding, always all present so metrics aggregate simply.
PAIRING_COUNTS = (
    "off_silent",
    "on_sounding",
    "zero_length",
    "tie_unmatched",
    "before_start",
    "cut",
    "beyond_end",
    "closed_at_end",
)
TOKEN_COUNTS = (
    "invalid_id",
    "misplaced",
    "duplicate_tie",
    "missing_tie",
    "missing_eos",
    "after_eos",
    "beyond_segment",
)


@dataclass(frozen=True, order=True)
class FrameNote:
    """A note in feature frames: sounds in [onset, offset); program as in `Note` (0 = unknown)."""

    onset: int
    offset: int
    pitch: int
    program: int = 0

    def __post_init__(self) -> None:
        if self.offset <= self.onset:
            raise ValueError(
                f"FrameNote needs offset > onset, got {self.onset}..{self.offset} (pitch {self.pitch})"
            )


class FrameEvent(NamedTuple):
    """A note boundary: frame, kind (OFF=0 or ON=1) and MIDI pitch."""

    frame: int
    kind: int
    pitch: int


# ---------------------------------------------------------------------------------------------
# Seconds ↔ frames


def notes_to_frame_notes(
    notes: Iterable[Note], sample_rate: int, hop_length: int
) -> list[FrameNote]:
    """Notes in seconds → frame notes (onset and offset in the frame containing them), sorted.

    A note shorter than one frame lasts one frame. Same-pitch overlaps are kept here; see
    `canonical_frame_notes`."""
    notes = list(notes)
    if not notes:
        return []
    onsets = seconds_to_frame(np.array([n.onset for n in notes]), sample_rate, hop_length)
    offsets = seconds_to_frame(np.array([n.offset for n in notes]), sample_rate, hop_length)
    offsets = np.maximum(offsets, onsets + 1)
    return sorted(
        FrameNote(int(a), int(b), n.pitch, n.program) for a, b, n in zip(onsets, offsets, notes)
    )


def frame_notes_to_notes(
    frame_notes: Iterable[FrameNote], sample_rate: int, hop_length: int
) -> list[Note]:
    """Frame notes → notes in seconds at the middle of each frame, sorted by onset then pitch.

    Labels go to the frame *containing* them (floor), so a time decoded as the frame's start
    would be 0 to 1 frame early (16 ms on average at hop 512 / 16 kHz, which eats a third of
    mir_eval's 50 ms window before the model errs at all). The midpoint makes the round trip
    unbiased: error uniform in +-half a frame."""
    half = 0.5 * hop_length / sample_rate
    return sort_notes(
        Note(
            float(frame_to_seconds(n.onset, sample_rate, hop_length)) + half,
            float(frame_to_seconds(n.offset, sample_rate, hop_length)) + half,
            n.pitch,
            n.program,
        )
        for n in frame_notes
    )


def canonical_frame_notes(frame_notes: Iterable[FrameNote]) -> tuple[list[FrameNote], int]:
    """One note per pitch at a time: (notes sorted by onset then pitch, how many were changed).

    Of same-pitch notes starting in the same frame the longest is kept; a note still sounding
    when a same-pitch note starts is cut at that onset."""
    by_pitch = sorted(frame_notes, key=lambda n: (n.pitch, n.onset, -n.offset))
    out: list[FrameNote] = []
    changed = 0
    for n in by_pitch:
        prev = out[-1] if out and out[-1].pitch == n.pitch else None
        if prev is not None and n.onset == prev.onset:
            changed += 1  # merged into the longer note already kept
            continue
        if prev is not None and n.onset < prev.offset:
            out[-1] = FrameNote(prev.onset, n.onset, prev.pitch, prev.program)
            changed += 1
        out.append(n)
    return sorted(out, key=lambda n: (n.onset, n.pitch, n.offset)), changed


@dataclass(frozen=True)
class NoteArrays:
    """Canonical frame notes as parallel int64 arrays (N,): what the per-segment functions slice."""

    onset: np.ndarray
    offset: np.ndarray
    pitch: np.ndarray
    program: np.ndarray
    n_changed: int = 0  # notes merged or cut by canonicalisation

    @classmethod
    def from_frame_notes(cls, frame_notes: Iterable[FrameNote]) -> NoteArrays:
        notes, changed = canonical_frame_notes(frame_notes)
        cols = np.array(
            [(n.onset, n.offset, n.pitch, n.program) for n in notes], dtype=np.int64
        ).reshape(-1, 4)
        return cls(cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], changed)

    def __len__(self) -> int:
        return len(self.onset)


def as_note_arrays(frame_notes: Iterable[FrameNote] | NoteArrays) -> NoteArrays:
    """Frame notes → canonical NoteArrays (passed through if already arrays)."""
    return (
        frame_notes
        if isinstance(frame_notes, NoteArrays)
        else NoteArrays.from_frame_notes(frame_notes)
    )


# ---------------------------------------------------------------------------------------------
# Notes → events → notes


def frame_notes_to_events(frame_notes: Iterable[FrameNote] | NoteArrays) -> list[FrameEvent]:
    """Canonical notes' ON and OFF events, sorted by frame, offs before ons, then pitch."""
    a = as_note_arrays(frame_notes)
    events = [FrameEvent(int(f), ON, int(p)) for f, p in zip(a.onset, a.pitch)]
    events += [FrameEvent(int(f), OFF, int(p)) for f, p in zip(a.offset, a.pitch)]
    return sorted(events)


class _NotePairer:
    """Pairs ON and OFF events into notes, one open note per pitch, counting what it drops."""

    def __init__(self) -> None:
        self.active: dict[int, int] = {}  # pitch -> onset frame
        self.notes: list[FrameNote] = []
        self.counts = dict.fromkeys(PAIRING_COUNTS, 0)
        self.orphans: list[tuple[int, int]] = []  # (frame, pitch) of each OFF for a silent pitch
        # (pitch, offset) of each note that ended without a NOTE_OFF of its own: at a re-onset of
        # its pitch (on_sounding) or at the track's end (closed_at_end)
        self.unended: list[tuple[int, int]] = []

    def close(self, pitch: int, frame: int, unended: bool = False) -> None:
        onset = self.active.pop(pitch)
        if frame > onset:
            self.notes.append(FrameNote(onset, frame, pitch))
            if unended:
                self.unended.append((pitch, frame))
        else:
            self.counts["zero_length"] += 1

    def apply(self, frame: int, kind: int, pitch: int) -> None:
        if kind == ON:
            if pitch in self.active:
                self.counts["on_sounding"] += 1
                self.close(pitch, frame, unended=True)
            self.active[pitch] = frame
        elif pitch in self.active:
            self.close(pitch, frame)
        else:
            self.counts["off_silent"] += 1
            self.orphans.append((frame, pitch))

    def tie(self, boundary: int, ties: Iterable[int]) -> None:
        """At a segment boundary: end sounding notes whose pitch is not tied; count ties to nothing."""
        tied = set(int(p) for p in ties)
        for pitch in sorted(set(self.active) - tied):
            self.close(pitch, boundary)
        self.counts["tie_unmatched"] += len(tied - set(self.active))

    def finish(self, end_frame: int) -> tuple[list[FrameNote], dict[str, int]]:
        self.counts["closed_at_end"] += len(self.active)
        for pitch in sorted(self.active):
            self.close(pitch, end_frame, unended=True)
        return sorted(self.notes, key=lambda n: (n.onset, n.pitch, n.offset)), self.counts


def stitch_segments(
    segments: Sequence[tuple[int, Sequence[int] | None, Sequence[FrameEvent]]],
    end_frame: int,
    orphans: list[tuple[int, int]] | None = None,
    unended: list[tuple[int, int]] | None = None,
) -> tuple[list[FrameNote], dict[str, int]]:
    """Per-segment (start_frame, ties, events in segment frames) → a track's notes and counts.

    Segments are taken in start order; each one's events count up to the next one's start
    (overlapping segments are cut there, as in mt3), the last one's up to `end_frame`. At each
    boundary a sounding note continues if `ties` holds its pitch, else it ends there; `ties` None
    (CTC) continues every sounding note until an OFF. Never raises: see PAIRING_COUNTS. Given a
    list, `orphans` receives the (track frame, pitch) of every OFF dropped as off_silent: the end
    of a note whose NOTE_ON the model missed (`mtlib.decode.recover_orphans`); `unended` receives
    the (pitch, offset) of every note that ended without a NOTE_OFF of its own, at a re-onset of
    its pitch or at `end_frame`: its offset is a guess (`mtlib.decode.frame_offsets`' `only`)."""
    order = sorted(
        range(len(segments)), key=lambda i: segments[i][0]
    )  # stable: equal starts keep input order
    pairer = _NotePairer()
    for k, i in enumerate(order):
        start, ties, events = segments[i]
        stop = segments[order[k + 1]][0] if k + 1 < len(order) else end_frame
        if ties is not None:
            pairer.tie(start, ties)
        for ev in sorted(events, key=lambda e: e[0]):  # stable: same-frame order is the model's
            frame = start + int(ev[0])
            if frame < start:
                pairer.counts["before_start"] += 1
                frame = start
            if frame >= stop:
                pairer.counts["cut" if k + 1 < len(order) else "beyond_end"] += 1
                continue
            pairer.apply(frame, int(ev[1]), int(ev[2]))
    result = pairer.finish(end_frame)
    if orphans is not None:
        orphans.extend(pairer.orphans)
    if unended is not None:
        unended.extend(pairer.unended)
    return result


def events_to_frame_notes(
    events: Sequence[FrameEvent], end_frame: int
) -> tuple[list[FrameNote], dict[str, int]]:
    """Events (any order within a frame, in the order given) → notes and counts; never raises.

    An OFF for a silent pitch is dropped; an ON for a sounding pitch ends the old note first;
    notes still open close at `end_frame`; events at or after `end_frame` are dropped."""
    return stitch_segments([(0, None, events)], end_frame)


# ---------------------------------------------------------------------------------------------
# Segment targets


def _window_events(
    a: NoteArrays, start: int, n_frames: int, boundary_offs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(tie pitches (K,) ascending, events (E, 3) [frame - start, kind, pitch] sorted) of a window.

    `boundary_offs` includes OFFs at `start` itself (CTC); Seq2Seq leaves them to the tie rule."""
    end = start + n_frames
    ons = (a.onset >= start) & (a.onset < end)
    offs = (a.offset >= (start if boundary_offs else start + 1)) & (a.offset < end)
    ties = np.sort(a.pitch[(a.onset < start) & (a.offset > start)])
    frames = np.concatenate([a.onset[ons], a.offset[offs]]) - start
    kinds = np.concatenate([np.full(ons.sum(), ON), np.full(offs.sum(), OFF)])
    pitches = np.concatenate([a.pitch[ons], a.pitch[offs]])
    order = np.lexsort((pitches, kinds, frames))
    return ties, np.stack([frames, kinds, pitches], axis=1)[order].astype(np.int64)


def segment_tokens(
    frame_notes: Iterable[FrameNote] | NoteArrays, start: int, n_frames: int, vocab: Vocabulary
) -> list[int]:
    """The Seq2Seq target of frames [start, start + n_frames): ties, TIE, shifts and events, EOS."""
    ties, events = _window_events(as_note_arrays(frame_notes), start, n_frames, boundary_offs=False)
    tokens = [vocab.note_on(int(p)) for p in ties] + [vocab.TIE]
    current = 0
    for frame, kind, pitch in events.tolist():
        tokens += vocab.shifts(frame - current)
        current = frame
        tokens.append(vocab.note_on(pitch) if kind == ON else vocab.note_off(pitch))
    return tokens + [vocab.EOS]


def tokens_to_segment_events(
    tokens: Sequence[int], vocab: Vocabulary, n_frames: int | None = None
) -> tuple[list[int], list[FrameEvent], dict[str, int]]:
    """Any id sequence → (tie pitches, events in segment frames, counts); never raises.

    Reads up to the first EOS (later non-PAD ids count as after_eos); PAD is skipped. Without a
    TIE every token is an event (missing_tie). Ids outside the vocabulary, SOS, a second TIE or a
    non-NOTE_ON in the tie section are dropped; events at frames >= n_frames (when given) too."""
    counts = dict.fromkeys(TOKEN_COUNTS, 0)
    ids = [int(t) for t in tokens]
    if vocab.EOS in ids:
        cut = ids.index(vocab.EOS)
        counts["after_eos"] = sum(t != vocab.PAD for t in ids[cut + 1 :])
        ids = ids[:cut]
    else:
        counts["missing_eos"] = 1
    ids = [t for t in ids if t != vocab.PAD]
    if vocab.TIE in ids:
        cut = ids.index(vocab.TIE)
        tie_ids, body = ids[:cut], ids[cut + 1 :]
    else:
        counts["missing_tie"] = 1
        tie_ids, body = [], ids
    ties: list[int] = []
    for t in tie_ids:
        if not 0 <= t < vocab.size:
            counts["invalid_id"] += 1
            continue
        ev = vocab.decode(t)
        if ev.type != "on":
            counts["misplaced"] += 1
        elif ev.value in ties:
            counts["duplicate_tie"] += 1
        else:
            ties.append(ev.value)
    events: list[FrameEvent] = []
    frame = 0
    for t in body:
        if not 0 <= t < vocab.size:
            counts["invalid_id"] += 1
            continue
        ev = vocab.decode(t)
        if ev.type == "shift":
            frame += ev.value
        elif ev.type not in ("on", "off"):
            counts["misplaced"] += 1
        elif n_frames is not None and frame >= n_frames:
            counts["beyond_segment"] += 1
        else:
            events.append(FrameEvent(frame, ON if ev.type == "on" else OFF, ev.value))
    return sorted(ties), events, counts


def segment_rolls(
    tokens: Sequence[int], vocab: Vocabulary, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """(frame roll, offset roll), each (n_frames, n_pitches) bool, of a Seq2Seq target sequence.
    The frame roll is the frame head's target, the sounding notes: tied pitches sound from frame 0,
    a note from its NOTE_ON up to its NOTE_OFF (exclusive) or the segment's end. The offset roll is
    the offset head's target, True at the frame of each NOTE_OFF (the first frame a released note
    no longer sounds); a note still sounding at the segment's end has none. The Seq2Seq tokens are
    used rather than the CTC targets because only they name the notes that sound through a whole
    segment (the ties)."""
    ties, events, _ = tokens_to_segment_events(tokens, vocab, n_frames)
    shape = (n_frames, vocab.max_pitch - vocab.min_pitch + 1)
    roll, offsets = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    sounding = {p: 0 for p in ties}
    for frame, kind, pitch in events:
        if pitch in sounding:
            roll[sounding.pop(pitch) : frame, pitch - vocab.min_pitch] = True
            if kind == OFF:
                offsets[frame, pitch - vocab.min_pitch] = True
        if kind == ON:
            sounding[pitch] = frame
    for pitch, start in sounding.items():
        roll[start:, pitch - vocab.min_pitch] = True
    return roll, offsets


def ctc_targets(
    frame_notes: Iterable[FrameNote] | NoteArrays,
    start: int,
    n_frames: int,
    ctc_vocab: CTCVocabulary,
) -> tuple[np.ndarray, np.ndarray]:
    """CTC target of frames [start, start + n_frames): (ids (E,) int32, frames (E,) int32 relative)."""
    _, events = _window_events(as_note_arrays(frame_notes), start, n_frames, boundary_offs=True)
    on0, _ = ctc_vocab.on_range
    off0, _ = ctc_vocab.off_range
    ids = np.where(events[:, 1] == ON, on0, off0) + events[:, 2] - ctc_vocab.min_pitch
    return ids.astype(np.int32), events[:, 0].astype(np.int32)


def ctc_to_events(
    ids: Sequence[int], frames: Sequence[int], ctc_vocab: CTCVocabulary
) -> tuple[list[FrameEvent], dict[str, int]]:
    """CTC ids with their frames → events sorted by frame (stable), and counts; never raises.

    Blanks and ids outside the vocabulary are dropped (invalid_id)."""
    counts = dict.fromkeys(TOKEN_COUNTS, 0)
    events = []
    for t, f in zip(
        np.asarray(ids, dtype=np.int64).tolist(), np.asarray(frames, dtype=np.int64).tolist()
    ):
        ev = ctc_vocab.decode(t) if 0 <= t < ctc_vocab.size else None
        if ev is None or ev.type not in ("on", "off"):
            counts["invalid_id"] += 1
            continue
        events.append(FrameEvent(f, ON if ev.type == "on" else OFF, ev.value))
    return sorted(events, key=lambda e: e.frame), counts


# ---------------------------------------------------------------------------------------------
# Tracks


@dataclass(frozen=True)
class TrackTokens:
    """A tokenized track: one row per segment (the tokens.parquet columns bar `track`) and stats."""

    rows: list[dict]
    stats: dict[str, int]


def clip_to_track(
    frame_notes: Iterable[FrameNote], n_frames: int
) -> tuple[list[FrameNote], int, int]:
    """Notes within a track's frames: (notes, dropped (onset at or past the end), offsets clipped)."""
    kept, dropped, clipped = [], 0, 0
    for n in frame_notes:
        if n.onset >= n_frames:
            dropped += 1
        elif n.offset > n_frames:
            kept.append(FrameNote(n.onset, n_frames, n.pitch, n.program))
            clipped += 1
        else:
            kept.append(n)
    return kept, dropped, clipped


def note_stats(a: NoteArrays, n_frames: int) -> dict[str, int]:
    """Densities that size the models: most notes starting in one frame, most sounding at once,
    most CTC events (ONs and OFFs) in one frame."""
    if len(a) == 0:
        return {"max_onsets_per_frame": 0, "max_polyphony": 0, "max_ctc_per_frame": 0}
    length = n_frames + 1
    sounding = np.cumsum(
        np.bincount(a.onset, minlength=length) - np.bincount(a.offset, minlength=length)
    )
    ctc_frames = np.concatenate([a.onset, a.offset[a.offset < n_frames]])
    return {
        "max_onsets_per_frame": int(np.bincount(a.onset).max()),
        "max_polyphony": int(sounding.max()),
        "max_ctc_per_frame": int(np.bincount(ctc_frames).max()),
    }


def tokenize_track(
    notes: Sequence[Note],
    n_frames: int,
    segments: Sequence[tuple[int, int, int]],
    vocab: Vocabulary,
    sample_rate: int,
    hop_length: int,
) -> TrackTokens:
    """A track's notes (seconds) and its segments (index, start_frame, n_frames) → targets + stats.

    Notes are put on frames, clipped to the track's `n_frames` and made canonical once; each
    segment then gets its Seq2Seq tokens and CTC targets."""
    frame_notes, dropped, clipped = clip_to_track(
        notes_to_frame_notes(notes, sample_rate, hop_length), n_frames
    )
    arrays = NoteArrays.from_frame_notes(frame_notes)
    rows = []
    for index, start, length in segments:
        ctc_ids, ctc_frames = ctc_targets(arrays, start, length, vocab.ctc)
        rows.append(
            {
                "segment": int(index),
                "start_frame": int(start),
                "n_frames": int(length),
                "tokens": np.asarray(segment_tokens(arrays, start, length, vocab), dtype=np.int32),
                "ctc_tokens": ctc_ids,
                "ctc_frames": ctc_frames,
            }
        )
    stats = {
        "notes": len(arrays),
        "notes_after_end": dropped,
        "notes_clipped": clipped,
        "same_pitch_overlaps": arrays.n_changed,
        **note_stats(arrays, n_frames),
    }
    return TrackTokens(rows, stats)


def summarize_tokens(tracks: Sequence[TrackTokens], vocab: Vocabulary) -> dict:
    """stats.json: token counts per segment (max, p99) for both models, note densities (max over
    tracks), notes dropped or changed (sums), and the vocabulary that made the tokens (`vocab`
    holds exactly Vocabulary's arguments, so Vocabulary(**stats["vocab"]) rebuilds it)."""
    n_tokens = np.array([len(r["tokens"]) for t in tracks for r in t.rows])
    n_ctc = np.array([len(r["ctc_tokens"]) for t in tracks for r in t.rows])

    def dist(x: np.ndarray) -> dict[str, float]:
        if x.size == 0:
            return {"max": 0, "p99": 0.0, "mean": 0.0}
        return {"max": int(x.max()), "p99": float(np.percentile(x, 99)), "mean": float(x.mean())}

    summed = ("notes", "notes_after_end", "notes_clipped", "same_pitch_overlaps")
    maxed = ("max_onsets_per_frame", "max_polyphony", "max_ctc_per_frame")
    return {
        "tracks": len(tracks),
        "segments": int(n_tokens.size),
        "seq2seq_tokens_per_segment": dist(n_tokens),
        "ctc_tokens_per_segment": dist(n_ctc),
        **{k: int(sum(t.stats[k] for t in tracks)) for k in summed},
        **{k: int(max((t.stats[k] for t in tracks), default=0)) for k in maxed},
        "vocab": vocab.config(),
        "vocab_size": vocab.size,
        "ctc_vocab_size": vocab.ctc.size,
    }
