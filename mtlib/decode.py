"""Decoding model outputs into token sequences with times.

CTC: greedy (collapse repeats, drop blanks) and beam search; both return each token's emission
slot, which becomes its frame. Seq2Seq: constrained greedy batched over segments (validity,
polyphony limits, a penalty on long TIME_SHIFT runs, an EOS ramp after `min_len`, `max_len`),
plain greedy for comparison, and a constrained beam search. Decoding never raises on odd model
output: what cannot be used is dropped and counted later by `mtlib.events`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SCOPES = ("all", "unended")


@dataclass
class DecodeConfig:
    """decode.* in params.yaml. CTC keys start with ctc_, Seq2Seq keys with s2s_ or are shared."""

    ctc_decoder: str = "greedy"  # greedy | beam
    ctc_beam_width: int = 8
    # subtracted from the blank's log-probability in every emission slot before decoding: above 0
    # a token is emitted where blank only narrowly won (recall traded for precision)
    ctc_blank_penalty: float = 0.0
    ctc_shift_frames: int = (
        0  # latency correction added to every CTC token's frame (negative = earlier)
    )
    ctc_onset_window: int = (
        0  # refine each NOTE_ON's frame to the onset head's peak within ±window frames
    )
    ctc_onset_threshold: float = 0.0  # ignore the onset head where its probability is below this
    s2s_decoder: str = "constrained"  # constrained | greedy | beam
    s2s_onset_window: int = (
        0  # move each decoded note's onset to the onset head's peak within ±window frames
    )
    s2s_onset_threshold: float = 0.0  # ignore the onset head where its probability is below this
    s2s_beam_width: int = 4
    # frames added to every decoded note's offset (both models), a release-latency correction that
    # decode_sweep chooses on val note-with-offset F1 (onset-only F1 does not see offsets)
    offset_shift_frames: int = 0
    # end each note at the first frame after its onset where the frame head's probability for its
    # pitch falls below this (0 = keep the offsets the model's tokens give)
    frame_threshold: float = 0.0
    # ... or where it falls below this fraction of its highest since the onset (0 = the fixed
    # threshold alone): a decaying note whose probability stays above the fixed threshold long
    # after the sound has faded (a piano's tail, a room's) ends where it has fallen away
    frame_relative: float = 0.0
    # which notes take their offset from the frame head: all, or only the unended ones, whose
    # tokens gave no NOTE_OFF of their own (they end at a re-onset of the pitch or the track's end,
    # a guess that can be seconds late); the others keep their tokens' offsets
    frame_scope: str = "all"  # all | unended
    # with frame_scope unended, a note whose NOTE_OFF comes more than this many frames after the
    # frame head's offset for it ends at the head's offset too: a late OFF (0 = never)
    frame_cut_frames: int = 0
    # where the frame head ends a note, the offset head (a model with one) may end it sooner: at
    # the first peak of its probability for the note's pitch after the onset that reaches this, a
    # key release the still-ringing sound hides from the frame head (0 = the frame head alone)
    offset_threshold: float = 0.0
    # a release peak counts only where the frame head lets the pitch go: its mean probability over
    # the peak's frame and the offset_hold_frames - 1 after it is below this (0 = every peak
    # counts). Where the pitch still sounds on, the peak was a pedal or bow change, a neighbour's
    # release, not the note's own
    offset_hold: float = 0.0
    offset_hold_frames: int = 8
    # recover missed notes: an OFF for a silent pitch (off_silent) ends a note whose NOTE_ON the
    # model missed; it becomes a note from the onset head's peak for that pitch within this many
    # frames before the OFF (not before the pitch's previous note ends), if the peak reaches
    # orphan_threshold (orphan_window 0 = drop such OFFs, as the counts say)
    orphan_window: int = 0
    orphan_threshold: float = 0.2
    # keep a note only if the onset head's peak for its pitch within ±confirm_window frames of its
    # (refined) onset reaches this (0 = keep every note): most of the Seq2Seq tokens' spurious
    # notes are of pitches not sounding at all, and the onset head did not hear them
    confirm_threshold: float = 0.0
    confirm_window: int = 1
    # a note that starts where the previous note of its pitch still sounds (the tokens end that
    # note at or after its onset) continues that note, unless the onset head's peak for the pitch
    # within ±confirm_window frames of its onset reaches this (0 = every re-onset stands; 1 = only
    # a certain one): a sustained note the model heard twice (a swell, vibrato, a hall's tail,
    # a Seq2Seq NOTE_OFF and NOTE_ON of one pitch at one time) stays one note
    reonset_threshold: float = 0.0
    # add a note at each onset-head peak (a local maximum in time) for a pitch that reaches this,
    # unless a note of that pitch starts within ±add_window frames; a note of that pitch sounding
    # there ends at the new onset (0 = add none). The frame head ends the added notes (needs
    # frame_threshold > 0; otherwise they last one frame): the Seq2Seq tokens miss notes the
    # onset head, trained on the same encoder, heard
    add_threshold: float = 0.0
    add_window: int = 2
    # Onsets and Frames' rule for the notes every step above missed: where the frame head holds a
    # pitch at >= frame_add_threshold for >= frame_add_frames frames that no note of it covers (and
    # that do not continue a note's end), add a note if the onset head's peak for the pitch within
    # +-add_window frames of the run's start reaches frame_add_onset; it starts at that peak and
    # ends where the run ends (frame_add_onset 0 = add none)
    frame_add_onset: float = 0.0
    frame_add_threshold: float = 0.5
    frame_add_frames: int = 4
    # a voice moves on by step: each note ends no later than the first onset, at a later frame, of
    # a note within this many semitones of its pitch (0 = off). The key is released as the next
    # note of the line is played, even where a pedal or a room lets the string ring on and the
    # heads hear no end (R33: val note+offset F1 +0.022 CTC, +0.023 Seq2Seq at 2)
    legato_semitones: int = 0
    # a safety limit: a note still sounding this many frames after its onset is closed there
    # (0 = never). CTC has no tie tokens, so a missed NOTE_OFF would leave its note open to the
    # next same-pitch onset or the track's end when offsets come from the tokens alone
    max_note_frames: int = 0
    min_len: int = 0  # no EOS before this many tokens (the tie section included)
    max_len: int = 512  # EOS forced at this length
    eos_ramp: float = 0.0  # added to EOS's log-prob per token beyond min_len
    shift_penalty: float = 0.0  # subtracted per consecutive TIME_SHIFT already emitted
    max_notes_per_frame: int = 12
    max_active_notes: int = 16
    batch_size: int = 32
    # how the encoder's heads (onset, frame, offset) read a track: over head_passes windowings into
    # windows of head_window frames (0 = the model's segment), each windowing offset by
    # head_window / head_passes frames from the last, a frame's probability the windowings' mean
    # weighted by its distance to its window's nearer edge. A BiLSTM at a window's edge hears one
    # side only; a frame there is read mostly from a windowing where it sits inside (1 pass = the
    # token run's segments alone). The tokens always come from the model's own segments
    head_window: int = 0
    head_passes: int = 1

    def __post_init__(self) -> None:
        if self.frame_scope not in FRAME_SCOPES:
            raise ValueError(
                f"decode.frame_scope is {self.frame_scope!r}; it takes {' or '.join(FRAME_SCOPES)}"
            )
        if self.head_window < 0 or self.head_passes < 1:
            raise ValueError(
                f"decode.head_window ({self.head_window}) is a frame count >= 0 (0 = the model's "
                f"segment) and decode.head_passes ({self.head_passes}) a count >= 1"
            )

    def model_run_key(self, kind: str) -> tuple:
        """The values that change what the model and its token decoder produce for `kind`; every
        other key only post-processes tokens into notes (`mtlib.transcriber.Transcriber.notes_from`),
        so decode_sweep runs the model once per distinct key."""
        keys = MODEL_RUN_KEYS[kind]
        return tuple((k, getattr(self, k)) for k in keys)


MODEL_RUN_KEYS = {
    "ctc": (
        "ctc_decoder",
        "ctc_beam_width",
        "ctc_blank_penalty",
        "batch_size",
        "head_window",
        "head_passes",
    ),
    "seq2seq": (
        "s2s_decoder",
        "s2s_beam_width",
        "min_len",
        "max_len",
        "eos_ramp",
        "shift_penalty",
        "max_notes_per_frame",
        "max_active_notes",
        "batch_size",
        "head_window",
        "head_passes",
    ),
}


# --------------------------------------------------------------------------- CTC


def ctc_greedy(log_probs: np.ndarray, length: int, blank: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Best path: argmax per slot, collapse repeats, drop blanks. Returns (ids, first slot of each)."""
    best = np.asarray(log_probs[:length]).argmax(axis=-1)
    if best.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.ones_like(best, dtype=bool)
    starts[1:] = best[1:] != best[:-1]
    keep = starts & (best != blank)
    slots = np.flatnonzero(keep)
    return best[slots].astype(np.int64), slots.astype(np.int64)


def ctc_decode(
    log_probs: np.ndarray, length: int, cfg: DecodeConfig, blank: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One segment's (T, V) log-probs → (ids, first slot of each) by `cfg.ctc_decoder`, after
    `cfg.ctc_blank_penalty` is subtracted from the blank column."""
    if cfg.ctc_blank_penalty:
        log_probs = np.array(log_probs, copy=True)
        log_probs[:, blank] -= cfg.ctc_blank_penalty
    if cfg.ctc_decoder == "beam":
        return ctc_beam(log_probs, length, cfg.ctc_beam_width, blank)
    return ctc_greedy(log_probs, length, blank)


def _merge_prefix(beams: dict, prefix: tuple, slots: tuple, pb: float, pnb: float) -> None:
    """Add a path's probabilities (ending in blank, in non-blank) to `prefix` in `beams`; the
    slots kept are those of the more probable contribution."""
    p = np.logaddexp(pb, pnb)
    e = beams.get(prefix)
    if e is None:
        beams[prefix] = [pb, pnb, slots, p]
    else:
        e[0] = np.logaddexp(e[0], pb)
        e[1] = np.logaddexp(e[1], pnb)
        if p > e[3]:
            e[2], e[3] = slots, p


def ctc_beam(
    log_probs: np.ndarray, length: int, beam_width: int, blank: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """CTC prefix beam search that keeps the slot where each token of the prefix was first emitted.

    Written by hand: torchaudio's lexicon-free ctc_decoder needs a silence token our vocabulary
    does not have and reports timesteps one frame late (docs/dependencies.md); timing is what matters here,
    so the slot bookkeeping is explicit. Scores are in log space; per slot only the top
    `beam_width` tokens (plus blank) are expanded."""
    lp = np.asarray(log_probs[:length], dtype=np.float64)
    # prefix (tuple of ids) -> [log p ending in blank, log p ending in non-blank, slots tuple,
    # log p of the contribution the slots came from]. Prefixes reached along several paths merge
    # their probabilities; the slots kept are those of the most probable contribution.
    beams: dict[tuple, list] = {(): [0.0, -np.inf, (), 0.0]}
    k = min(beam_width, lp.shape[1] - 1)
    for t in range(lp.shape[0]):
        row = lp[t]
        cand = np.argpartition(-row, k)[: k + 1]
        nxt: dict[tuple, list] = {}

        for prefix, (pb, pnb, slots, _) in beams.items():
            total = np.logaddexp(pb, pnb)
            _merge_prefix(
                nxt, prefix, slots, total + row[blank], -np.inf
            )  # blank extends without a new token
            last = prefix[-1] if prefix else None
            for c in cand:
                c = int(c)
                if c == blank:
                    continue
                p = row[c]
                if c == last:
                    _merge_prefix(
                        nxt, prefix, slots, -np.inf, pnb + p
                    )  # repeat collapses into the same token
                    _merge_prefix(
                        nxt, prefix + (c,), slots + (t,), -np.inf, pb + p
                    )  # a new token after a blank
                else:
                    _merge_prefix(nxt, prefix + (c,), slots + (t,), -np.inf, total + p)
        beams = dict(
            sorted(nxt.items(), key=lambda kv: -np.logaddexp(kv[1][0], kv[1][1]))[:beam_width]
        )
    best_prefix, (_, _, slots, _) = max(
        beams.items(), key=lambda kv: np.logaddexp(kv[1][0], kv[1][1])
    )
    return np.array(best_prefix, np.int64), np.array(slots, np.int64)


def refine_note_onsets(
    frame_notes, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> list:
    """Each onset of a track's FrameNotes (paired already, so an onset cannot be moved away from its
    offset) moves to the onset head's peak for its pitch within ±window frames (ties → earliest),
    if that peak reaches `threshold`; never to or past its own offset nor before the previous
    same-pitch note's offset, so the notes stay valid. onset_probs: (T, P)."""
    from mtlib.events import FrameNote

    notes = sorted(frame_notes, key=lambda n: (n.pitch, n.onset))
    if window <= 0 or not notes:
        return list(frame_notes)
    T, P = onset_probs.shape
    out, prev_pitch, prev_off = [], None, 0
    for n in notes:
        p = n.pitch - min_pitch
        floor = prev_off if n.pitch == prev_pitch else 0
        lo, hi = max(floor, n.onset - window, 0), min(T, n.onset + window + 1, n.offset)
        onset = n.onset
        if 0 <= p < P and lo < hi:
            seg = onset_probs[lo:hi, p]
            j = int(np.argmax(seg))
            if seg[j] >= threshold:
                onset = lo + j
        out.append(FrameNote(onset, n.offset, n.pitch, n.program))
        prev_pitch, prev_off = n.pitch, n.offset
    return sorted(out)


def recover_orphans(
    frame_notes, orphans, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> list:
    """Paired notes plus one note per orphan OFF (frame f, pitch) that the onset head explains:
    from the head's peak for that pitch in [f - window, f) to f, if the peak reaches `threshold`
    and lies after the end of the pitch's previous note (recovered ones included), so the notes
    stay valid. An OFF for a silent pitch is most often the end of a note whose NOTE_ON the model
    missed; the onset head, trained beside it, often heard that onset. onset_probs: (T, P)."""
    from mtlib.events import FrameNote

    notes = list(frame_notes)
    if window <= 0 or not orphans:
        return notes
    T, P = onset_probs.shape
    by_pitch: dict[int, list[tuple[int, int]]] = {}
    for n in notes:
        by_pitch.setdefault(n.pitch, []).append((n.onset, n.offset))
    for frame, pitch in sorted(orphans):
        p, spans = pitch - min_pitch, by_pitch.setdefault(pitch, [])
        floor = max((off for on, off in spans if on < frame), default=0)
        lo, hi = max(floor, frame - window, 0), min(frame, T)
        if not 0 <= p < P or lo >= hi:
            continue
        seg = onset_probs[lo:hi, p]
        j = int(np.argmax(seg))
        if seg[j] >= threshold:
            notes.append(FrameNote(lo + j, frame, pitch))
            spans.append((lo + j, frame))
    return sorted(notes)


def onset_heard(
    note, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> bool:
    """Whether the onset head confirms `note`'s onset: its peak for the note's pitch within ±window
    frames of the onset reaches `threshold`, or the head does not cover the pitch or the frame
    (then nothing speaks against the note). onset_probs: (T, P)."""
    T, P = onset_probs.shape
    p, lo = note.pitch - min_pitch, max(note.onset - window, 0)
    return (
        not 0 <= p < P or lo >= T or onset_probs[lo : note.onset + window + 1, p].max() >= threshold
    )


def confirm_notes(
    frame_notes, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> list:
    """The notes whose onset the onset head confirms (`onset_heard`); a note of a pitch the head
    does not cover is kept. onset_probs: (T, P)."""
    return [n for n in frame_notes if onset_heard(n, onset_probs, window, threshold, min_pitch)]


def merge_reonsets(
    frame_notes, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> list:
    """The notes with each unconfirmed re-onset merged into the note before it: a note that starts
    where the previous note of its pitch (by onset) still sounds, offset >= its onset, becomes
    part of that note (which then ends at the later of the two offsets) unless the onset head
    confirms it (`onset_heard`, as `confirm_notes` asks). A note of a pitch the head does not cover
    is kept. onset_probs: (T, P)."""
    from mtlib.events import FrameNote

    out: list = []
    last: dict[int, int] = {}  # pitch -> index in out of its latest note
    for n in sorted(frame_notes):
        i = last.get(n.pitch)
        if (
            i is not None
            and out[i].offset >= n.onset
            and not onset_heard(n, onset_probs, window, threshold, min_pitch)
        ):
            prev = out[i]
            out[i] = FrameNote(prev.onset, max(prev.offset, n.offset), n.pitch, prev.program)
            continue
        last[n.pitch] = len(out)
        out.append(n)
    return sorted(out)


def add_head_notes(
    frame_notes, onset_probs: np.ndarray, window: int, threshold: float, min_pitch: int
) -> tuple[list, list[tuple[int, int]]]:
    """(the notes plus those of the onset head's peaks they miss, the (pitch, offset) of the added
    notes). A peak is a frame where the head's probability for a pitch reaches `threshold` and is
    a local maximum in time (the first frame of a plateau); it becomes a one-frame note unless a
    note of that pitch starts within ±window frames. A note of that pitch sounding there ends at
    the new onset (a re-onset the tokens missed), so the notes stay valid. onset_probs: (T, P)."""
    from mtlib.events import FrameNote

    if threshold <= 0 or onset_probs.size == 0:
        return list(frame_notes), []
    p = onset_probs
    before = np.vstack([np.zeros_like(p[:1]), p[:-1]])
    after = np.vstack([p[1:], np.zeros_like(p[:1])])
    peaks = np.argwhere((p >= threshold) & (p > before) & (p >= after))
    by_pitch: dict[int, list] = {}
    for n in frame_notes:
        by_pitch.setdefault(n.pitch, []).append(n)
    added = []
    for t, i in peaks.tolist():
        notes = by_pitch.setdefault(i + min_pitch, [])
        if any(abs(n.onset - t) <= window for n in notes):
            continue
        notes[:] = [
            FrameNote(n.onset, t, n.pitch, n.program) if n.onset < t < n.offset else n
            for n in notes
        ]
        notes.append(FrameNote(t, t + 1, i + min_pitch))
        added.append((i + min_pitch, t + 1))
    return sorted(n for notes in by_pitch.values() for n in notes), added


def frame_offsets(
    frame_notes,
    frame_probs: np.ndarray,
    threshold: float,
    min_pitch: int,
    n_frames: int,
    max_frames: int = 0,
    only=None,
    cut: int = 0,
    offset_probs: np.ndarray | None = None,
    offset_threshold: float = 0.0,
    hold: float = 0.0,
    hold_frames: int = 4,
    relative: float = 0.0,
) -> list:
    """Each note ends where the frame head says its pitch stops sounding (Onsets and Frames): at
    the first frame after its onset whose probability is below `threshold` (or, with `relative`
    > 0, below `relative` x its highest since the frame after the onset), and at the latest at
    the next same-pitch onset, `n_frames`, or onset + `max_frames` (> 0). With `offset_probs`
    (T, P) and `offset_threshold` > 0 it ends sooner where the offset head's probability for the
    pitch last peaks at or above `offset_threshold` before that (the peak's frame, the first
    frame without the note, is its offset); with `hold` > 0 only at a peak after which the frame
    head's mean over `hold_frames` frames (the peak's first) is below `hold`. A note keeps at least one frame. Its old offset is
    ignored, except with a set `only` of (pitch, offset): the notes not in it keep their offsets
    unless the head's comes more than `cut` (> 0) frames earlier. frame_probs: (T, P)."""
    from mtlib.events import FrameNote

    notes = sorted(frame_notes, key=lambda n: (n.pitch, n.onset))
    end = min(n_frames, frame_probs.shape[0])
    if offset_threshold <= 0:
        offset_probs = None
    out = []
    for i, n in enumerate(notes):
        head = _head_offset(notes, i, frame_probs, threshold, min_pitch, end, max_frames, relative)
        if offset_probs is not None:
            held = frame_probs if hold > 0 else None
            head = _offset_peak(
                n, head, offset_probs, offset_threshold, min_pitch, held, hold, hold_frames
            )
        keep = only is not None and (n.pitch, n.offset) not in only
        if keep and not (cut > 0 and head < n.offset - cut):
            out.append(n)
        else:
            out.append(FrameNote(n.onset, head, n.pitch, n.program))
    return sorted(out)


def _head_offset(notes, i, frame_probs, threshold, min_pitch, end, max_frames, relative=0.0) -> int:
    """frame_offsets' offset for notes[i] (notes sorted by pitch, then onset)."""
    n = notes[i]
    limit = notes[i + 1].onset if i + 1 < len(notes) and notes[i + 1].pitch == n.pitch else end
    limit = min(limit, end)
    if max_frames > 0:
        limit = min(limit, n.onset + max_frames)
    offset = limit
    p = n.pitch - min_pitch
    if 0 <= p < frame_probs.shape[1] and n.onset + 1 < limit:
        run = frame_probs[n.onset + 1 : limit, p]
        floor = threshold
        if relative > 0:
            # the highest so far, not the note's overall peak: the decision at a frame never
            # looks ahead of it, as the fixed threshold does not (R22: val note+offset F1 +0.004
            # CTC, +0.005 Seq2Seq at 0.3 on top of offset_hold; frame F1 +0.002 / 0.000)
            floor = np.maximum(threshold, relative * np.maximum.accumulate(run))
        below = np.flatnonzero(run < floor)
        if below.size:
            offset = n.onset + 1 + int(below[0])
    return max(offset, n.onset + 1)


def _offset_peak(
    note,
    offset: int,
    offset_probs: np.ndarray,
    threshold: float,
    min_pitch,
    frame_probs: np.ndarray | None = None,
    hold: float = 0.0,
    hold_frames: int = 4,
) -> int:
    """`offset`, or sooner the last frame f in (onset, offset) where the offset head's
    probability for the note's pitch peaks at or above `threshold`: higher than at f - 1 (so the
    tail of a release at the onset itself is not one) and not lower than at f + 1. With
    `frame_probs` and `hold` > 0, a peak after which the frame head still holds the pitch (its
    mean over frames f .. f + hold_frames - 1 is at least `hold`) does not count: on R20's
    models the offset head's cuts the frame head contradicted were wrong as often as not where
    it stayed near 0.9 (BENCHMARKS.md, R20); refusing them raised val frame F1 by 0.010 and
    note+offset F1 by 0.007-0.008 for both models (R22's models; BENCHMARKS.md, R22).

    The last peak, not the first: in a long note the head often peaks mid-note too (a pedal
    change, a bow change, a dip in a neighbour), and on R20's models the first peak caused 58-63%
    of the onset-matched notes that ended early. Ending at the last peak raised val note+offset
    F1 by 0.010 (CTC) and 0.012 (Seq2Seq), frame F1 by 0.020 and 0.013; the highest peak scored
    alike on note+offset and 0.006-0.009 lower on frame F1 (BENCHMARKS.md, R21)."""
    p = note.pitch - min_pitch
    if not 0 <= p < offset_probs.shape[1] or note.onset + 1 >= offset:
        return offset
    col = offset_probs[:, p]
    f = np.arange(note.onset + 1, offset)
    nxt = col[np.minimum(f + 1, len(col) - 1)]
    peaks = f[(col[f] >= threshold) & (col[f] > col[f - 1]) & (col[f] >= nxt)]
    if frame_probs is not None and hold > 0 and peaks.size:
        # the mean of each window frame_probs[q : q + hold_frames], from a cumulative sum
        held = np.concatenate(([0.0], np.cumsum(frame_probs[:, p], dtype=np.float64)))
        ends = np.minimum(peaks + max(hold_frames, 1), len(held) - 1)
        peaks = peaks[(held[ends] - held[peaks]) / (ends - peaks) < hold]
    return int(peaks[-1]) if peaks.size else offset


def refine_notes(
    frame_notes,
    head_probs: dict,
    cfg: DecodeConfig,
    kind: str,
    min_pitch: int,
    n_frames: int,
    orphans=(),
    unended=(),
) -> list:
    """A track's paired notes refined by the encoder's heads, the same way for both models: the
    notes of orphan OFFs recovered (`recover_orphans`, if cfg.orphan_window > 0), onsets moved to
    the onset head's peak (`refine_note_onsets`, the kind's window and threshold), the notes the
    onset head does not confirm dropped (`confirm_notes`, if cfg.confirm_threshold > 0), the
    re-onsets it does not confirm merged into the note they restart (`merge_reonsets`, if
    cfg.reonset_threshold > 0), notes
    added where the onset head peaks and no note starts (`add_head_notes`, if cfg.add_threshold >
    0; the frame head ends them, whatever cfg.frame_scope), offsets
    from the frame head (`frame_offsets`, if cfg.frame_threshold > 0: for every note, or with
    cfg.frame_scope "unended" for the notes whose (pitch, offset) is in `unended`, those that the
    tokens left without a NOTE_OFF, and for those whose OFF comes cfg.frame_cut_frames after the
    head's offset), then the offset shift and the safety limit
    (`adjust_offsets`), the notes of the frame head's runs that no note explains and the
    onset head confirms (`add_frame_notes`, if cfg.frame_add_onset > 0), and last each note ended
    by the next onset of its line (`legato_offsets`, if cfg.legato_semitones > 0). A head the
    model lacks is skipped."""
    window, threshold = decoding_for_kind(kind).onset_refinement(cfg)
    notes = list(frame_notes)
    if cfg.orphan_window > 0 and head_probs.get("onset") is not None:
        notes = recover_orphans(
            notes, orphans, head_probs["onset"], cfg.orphan_window, cfg.orphan_threshold, min_pitch
        )
    if window > 0 and head_probs.get("onset") is not None:
        notes = refine_note_onsets(notes, head_probs["onset"], window, threshold, min_pitch)
    if cfg.confirm_threshold > 0 and head_probs.get("onset") is not None:
        notes = confirm_notes(
            notes, head_probs["onset"], cfg.confirm_window, cfg.confirm_threshold, min_pitch
        )
    if cfg.reonset_threshold > 0 and head_probs.get("onset") is not None:
        notes = merge_reonsets(
            notes, head_probs["onset"], cfg.confirm_window, cfg.reonset_threshold, min_pitch
        )
    if cfg.add_threshold > 0 and head_probs.get("onset") is not None:
        notes, added = add_head_notes(
            notes, head_probs["onset"], cfg.add_window, cfg.add_threshold, min_pitch
        )
        unended = list(unended) + added
    if cfg.frame_threshold > 0 and head_probs.get("frame") is not None:
        notes = frame_offsets(
            notes,
            head_probs["frame"],
            cfg.frame_threshold,
            min_pitch,
            n_frames,
            cfg.max_note_frames,
            only=set(unended) if cfg.frame_scope == "unended" else None,
            cut=cfg.frame_cut_frames,
            offset_probs=head_probs.get("offset"),
            offset_threshold=cfg.offset_threshold,
            hold=cfg.offset_hold,
            hold_frames=cfg.offset_hold_frames,
            relative=cfg.frame_relative,
        )
    notes = adjust_offsets(notes, cfg.offset_shift_frames, n_frames, cfg.max_note_frames)
    frame, onset = head_probs.get("frame"), head_probs.get("onset")
    if cfg.frame_add_onset > 0 and frame is not None and onset is not None:
        notes = add_frame_notes(
            notes,
            frame,
            onset,
            cfg.frame_add_threshold,
            cfg.frame_add_frames,
            cfg.frame_add_onset,
            cfg.add_window,
            min_pitch,
            cfg.max_note_frames,
        )
    return legato_offsets(notes, cfg.legato_semitones)


def legato_offsets(frame_notes, semitones: int) -> list:
    """Each note ends no later than the first onset, at a frame after its own, of a note within
    `semitones` of its pitch (0 = the notes as they are): where a line moves on by step, its
    note is released as the next one is played. The labels (MusicNet's, the demo's) are key
    releases, and under a sustain pedal, in a live room or on a decaying string the sound rings
    on past it, so neither head hears where the note ended; the next note of its line does.
    Notes starting at the note's own frame are its chord, not its successor. A note keeps at
    least one frame; onsets do not move, so onset-only note F1 cannot change."""
    from mtlib.events import FrameNote

    if semitones <= 0 or not frame_notes:
        return list(frame_notes)
    onsets = np.array([n.onset for n in frame_notes])
    pitches = np.array([n.pitch for n in frame_notes])
    ends = np.array([n.offset for n in frame_notes])
    for pitch in np.unique(pitches):  # per pitch, not per note: a track has ~10^3 notes
        mine = np.flatnonzero(pitches == pitch)
        near = np.sort(onsets[np.abs(pitches - pitch) <= semitones])
        # the first onset near the pitch at a frame after each note's own
        i = np.searchsorted(near, onsets[mine], side="right")
        nxt = np.where(i < near.size, near[np.minimum(i, near.size - 1)], ends[mine])
        ends[mine] = np.minimum(ends[mine], nxt)
    return sorted(
        n if n.offset == e else FrameNote(n.onset, int(e), n.pitch, n.program)
        for n, e in zip(frame_notes, ends)
    )


def add_frame_notes(
    frame_notes,
    frame_probs: np.ndarray,
    onset_probs: np.ndarray,
    threshold: float,
    min_frames: int,
    onset_threshold: float,
    window: int,
    min_pitch: int,
    max_frames: int = 0,
) -> list:
    """The notes plus one for each run of frames where the frame head's probability for a pitch is
    at least `threshold` for at least `min_frames` frames, no note of that pitch sounds, and the
    frame before the run is not the end of a note of that pitch (the run would continue it), if
    the onset head's peak for the pitch within `window` frames of the run's start (not reaching
    back into a note) reaches `onset_threshold`. The note starts at that peak (the earliest of a
    tie) and ends where the run ends, or `max_frames` (> 0) after its start; so notes never
    overlap a note of their pitch. Onsets and Frames decodes every note this way; here it finds
    the notes the tokens and the other refinements missed. frame_probs, onset_probs: (T, P)."""
    from mtlib.events import FrameNote

    if onset_threshold <= 0 or frame_probs.size == 0:
        return list(frame_notes)
    T, P = frame_probs.shape
    covered = np.zeros((T, P), dtype=bool)
    for n in frame_notes:
        if 0 <= n.pitch - min_pitch < P:
            covered[max(n.onset, 0) : min(n.offset, T), n.pitch - min_pitch] = True
    free = (frame_probs >= threshold) & ~covered
    added = []
    for p in np.flatnonzero(free.any(axis=0)):
        edges = np.diff(np.concatenate(([0], free[:, p].astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if b - a < min_frames or (a > 0 and covered[a - 1, p]):
                continue
            lo = max(a - window, 0)
            inside = np.flatnonzero(covered[lo:a, p])  # frames of a note before the run
            lo += int(inside[-1]) + 1 if inside.size else 0
            seg = onset_probs[lo : min(a + window + 1, b), p]
            if seg.size == 0 or seg.max() < onset_threshold:
                continue
            start = lo + int(np.argmax(seg))
            end = min(b, start + max_frames) if max_frames > 0 else b
            added.append(FrameNote(start, end, int(p) + min_pitch))
    return sorted([*frame_notes, *added])


def adjust_offsets(frame_notes, shift: int, n_frames: int, max_frames: int = 0) -> list:
    """Every note's offset moved by `shift` frames and, if `max_frames` > 0, capped at
    onset + max_frames; kept after its onset (at least one frame), at most `n_frames`, and never
    past the next same-pitch note's onset, so notes stay valid."""
    from mtlib.events import FrameNote

    if (shift == 0 and max_frames <= 0) or not frame_notes:
        return list(frame_notes)
    notes = sorted(frame_notes, key=lambda n: (n.pitch, n.onset))
    out = []
    for i, n in enumerate(notes):
        nxt = (
            notes[i + 1].onset if i + 1 < len(notes) and notes[i + 1].pitch == n.pitch else n_frames
        )
        cap = n.onset + max_frames if max_frames > 0 else n_frames
        out.append(
            FrameNote(
                n.onset,
                max(n.onset + 1, min(n.offset + shift, cap, nxt, n_frames)),
                n.pitch,
                n.program,
            )
        )
    return sorted(out)


# --------------------------------------------------------------------------- Seq2Seq


class SegmentState:
    """What the constrained decoder knows about one segment's partial output."""

    __slots__ = (
        "in_ties",
        "last_tie",
        "frame",
        "active",
        "shift_run",
        "ons_here",
        "last_kind",
        "last_pitch",
        "done",
        "length",
    )

    def __init__(self):
        self.in_ties = True
        self.last_tie = -1
        self.frame = 0
        self.active: set[int] = set()
        self.shift_run = 0
        self.ons_here = 0
        self.last_kind = (
            "shift"  # kind of the last event in the current frame: "shift" | "off" | "on"
        )
        self.last_pitch = -1
        self.done = False
        self.length = 0


def allowed_mask(
    state: SegmentState, vocab, n_frames: int, cfg: DecodeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(mask of allowed ids, additive bias) for the next token of one segment.

    Mirrors the target grammar of mtlib.events: tie section (ascending NOTE_ONs, then TIE), then
    per frame: offs (ascending) before ons (ascending), TIME_SHIFTs between frames, EOS."""
    V = vocab.size
    mask = np.zeros(V, dtype=bool)
    bias = np.zeros(V, dtype=np.float32)
    on0, on1 = vocab.on_range
    off0, off1 = vocab.off_range
    sh0, sh1 = vocab.shift_range
    if state.done:
        mask[vocab.PAD] = True
        return mask, bias
    if state.length >= cfg.max_len - 1:
        mask[vocab.EOS] = True
        return mask, bias
    if state.in_ties:
        mask[on0 + state.last_tie + 1 : on1] = True
        mask[vocab.TIE] = True
        if len(state.active) >= cfg.max_active_notes:
            mask[on0:on1] = False
        return mask, bias
    P = on1 - on0
    active = np.zeros(P, dtype=bool)
    if state.active:
        active[list(state.active)] = True
    start_p = state.last_pitch + 1 if state.last_kind == "off" else 0
    if state.last_kind != "on":  # offs only before this frame's ons, ascending
        offs = active.copy()
        offs[:start_p] = False
        mask[off0:off1] = offs
    if state.ons_here < cfg.max_notes_per_frame and len(state.active) < cfg.max_active_notes:
        ons = ~active
        if state.last_kind == "on":
            ons[: state.last_pitch + 1] = False
        mask[on0:on1] = ons
    # time never reaches the segment's end: an event there would lie outside the segment (the
    # next segment's ties carry notes still sounding), so shifts stop at frame n_frames - 1
    room = n_frames - 1 - state.frame
    if room > 0:
        mask[sh0 : sh0 + min(room, sh1 - sh0)] = True
        bias[sh0:sh1] -= cfg.shift_penalty * state.shift_run
    if state.length >= cfg.min_len:
        mask[vocab.EOS] = True
        bias[vocab.EOS] += cfg.eos_ramp * (state.length - cfg.min_len)
    return mask, bias


def advance(state: SegmentState, token: int, vocab) -> None:
    """Update a segment's state with the token just emitted."""
    state.length += 1
    ev = vocab.decode(int(token))
    p0 = vocab.min_pitch
    if ev.type == "eos" or ev.type == "pad":
        state.done = True
    elif ev.type == "tie":
        state.in_ties = False
    elif ev.type == "shift":
        state.frame += ev.value
        state.shift_run += 1
        state.ons_here = 0
        state.last_kind, state.last_pitch = "shift", -1
    elif ev.type == "on":
        p = ev.value - p0
        if state.in_ties:
            state.last_tie = p
        else:
            state.ons_here += 1
            state.shift_run = 0
            state.last_kind, state.last_pitch = "on", p
        state.active.add(p)
    elif ev.type == "off":
        state.active.discard(ev.value - p0)
        state.shift_run = 0
        state.last_kind, state.last_pitch = "off", ev.value - p0


def s2s_greedy(
    model, H, mask, vocab, n_frames: list[int], cfg: DecodeConfig, constrained: bool = True
) -> list[list[int]]:
    """Greedy decoding of a batch of encoded segments (H, mask from `model.encode`; the caller
    encodes, so one encoder pass also serves the onset head), constrained unless `constrained` is False.

    Returns each segment's tokens without SOS, up to and including EOS when emitted."""
    import torch

    B = H.shape[0]
    with torch.no_grad():
        state = model.init_state(H, mask)
        prev = torch.full((B,), vocab.SOS, dtype=torch.long, device=H.device)
        states = [SegmentState() for _ in range(B)]
        out: list[list[int]] = [[] for _ in range(B)]
        for _ in range(cfg.max_len):
            logits, state, _ = model.decode_step(prev, state, H, mask)
            logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            nxt = np.zeros(B, dtype=np.int64)
            for b in range(B):
                s = states[b]
                if s.done:
                    nxt[b] = vocab.PAD
                    continue
                if constrained:
                    allowed, bias = allowed_mask(s, vocab, n_frames[b], cfg)
                    scores = np.where(allowed, logp[b] + bias, -np.inf)
                else:
                    scores = logp[b].copy()
                    scores[vocab.PAD] = -np.inf
                    scores[vocab.SOS] = -np.inf
                    if s.length >= cfg.max_len - 1:
                        scores[:] = -np.inf
                        scores[vocab.EOS] = 0
                tok = int(np.argmax(scores))
                nxt[b] = tok
                out[b].append(tok)
                advance(s, tok, vocab)
            if all(s.done for s in states):
                break
            prev = torch.as_tensor(nxt, device=H.device)
    return out


def s2s_beam(
    model, H_all, mask_all, vocab, n_frames: list[int], cfg: DecodeConfig
) -> list[list[int]]:
    """Constrained beam search over encoded segments (H, mask from `model.encode`), one segment at
    a time with the beams as the batch.

    Scores are summed log-probs (with the constraint biases) divided by length, so that a beam is
    not rewarded for stopping early, which is the failure mode free-running decoding shows."""
    import copy

    import torch

    results: list[list[int]] = []
    W = cfg.s2s_beam_width
    with torch.no_grad():
        for b in range(H_all.shape[0]):
            H, mask = H_all[b : b + 1], mask_all[b : b + 1]
            state = model.init_state(H, mask)
            beams = [([], 0.0, SegmentState(), state)]
            finished: list[tuple[list[int], float]] = []
            for _ in range(cfg.max_len):
                if not beams:
                    break
                prev = torch.tensor(
                    [(t[-1] if t else vocab.SOS) for t, _, _, _ in beams], device=H.device
                )
                st = model.stack_states([s for _, _, _, s in beams])
                logits, st, _ = model.decode_step(
                    prev, st, H.expand(len(beams), -1, -1), mask.expand(len(beams), -1)
                )
                logp = torch.log_softmax(logits.float(), -1).cpu().numpy()
                states = model.unstack_states(st, len(beams))
                cands = []
                for i, (_toks, score, seg, _) in enumerate(beams):
                    allowed, bias = allowed_mask(seg, vocab, n_frames[b], cfg)
                    sc = np.where(allowed, logp[i] + bias, -np.inf)
                    top = np.argsort(-sc)[:W]
                    for tok in top:
                        if np.isfinite(sc[tok]):
                            cands.append((score + float(sc[tok]), i, int(tok)))
                cands.sort(key=lambda c: -c[0])
                new_beams = []
                for score, i, tok in cands:
                    toks, _, seg, _ = beams[i]
                    seg2 = copy.copy(seg)
                    seg2.active = set(seg.active)
                    advance(seg2, tok, vocab)
                    if seg2.done:
                        finished.append((toks + [tok], score / (len(toks) + 1)))
                    else:
                        new_beams.append((toks + [tok], score, seg2, states[i]))
                    if len(new_beams) >= W:
                        break
                beams = new_beams
                if len(finished) >= W:
                    break
            if not finished:
                finished = [(t, s / max(1, len(t))) for t, s, _, _ in beams] or [([vocab.EOS], 0.0)]
            results.append(max(finished, key=lambda f: f[1])[0])
    return results


# --------------------------------------------------------------------------- one interface per model kind


class CTCDecoding:
    """How a CTC model's output becomes tokens, events and notes: `decoding_for_kind("ctc")`.

    The shared paths (`mtlib.transcriber.Transcriber`, evaluation) call these methods and never
    branch on the kind; the Seq2Seq counterpart is `Seq2SeqDecoding`."""

    kind = "ctc"
    DECODERS = (
        "ctc_decoder",
        ("greedy", "beam"),
    )  # the decode.* key naming the token decoder, its values

    @staticmethod
    def decode_batch(
        model, batch: dict, vocab, cfg: DecodeConfig
    ) -> tuple[list[tuple[list[int], list[int]]], dict]:
        """A batch of segments → ([(ids, emission frames)] per segment, head probs {name: (B, T, P)})."""
        out = model.infer(batch)  # under torch.no_grad (the method's decorator)
        log_probs = out["log_probs"].float().cpu().numpy()
        slot_lengths = out["lengths"].cpu().numpy()
        decoded = []
        for b in range(log_probs.shape[0]):
            ids, slots = ctc_decode(log_probs[b], int(slot_lengths[b]), cfg, vocab.ctc.blank)
            decoded.append(
                (ids.tolist(), np.asarray(model.slot_to_frame(slots), dtype=np.int64).tolist())
            )
        return decoded, out["head_probs"]

    @staticmethod
    def segment_events(
        ids, frames, n_frames: int, vocab, cfg: DecodeConfig
    ) -> tuple[list[int] | None, list, dict]:
        """One segment's ids and emission frames → (ties: None, events in segment frames, counts).
        The latency correction cfg.ctc_shift_frames is added here, before pairing."""
        from mtlib.events import ctc_to_events

        shifted = np.clip(
            np.asarray(frames, dtype=np.int64) + cfg.ctc_shift_frames, 0, max(0, n_frames - 1)
        )
        events, counts = ctc_to_events(ids, shifted.tolist(), vocab.ctc)
        return None, events, counts

    @staticmethod
    def onset_refinement(cfg: DecodeConfig) -> tuple[int, float]:
        """(window, threshold) for moving onsets to the onset head's peak."""
        return cfg.ctc_onset_window, cfg.ctc_onset_threshold

    @staticmethod
    def reference_tokens(frame_notes, start: int, n_frames: int, vocab) -> list[int]:
        """What the model should have emitted for frames [start, start + n_frames) (token F1, TER)."""
        from mtlib.events import ctc_targets

        return list(ctc_targets(frame_notes, start, n_frames, vocab.ctc)[0])


class Seq2SeqDecoding:
    """How a Seq2Seq model's output becomes tokens, events and notes: `decoding_for_kind("seq2seq")`."""

    kind = "seq2seq"
    DECODERS = ("s2s_decoder", ("constrained", "greedy", "beam"))

    @staticmethod
    def decode_batch(
        model, batch: dict, vocab, cfg: DecodeConfig
    ) -> tuple[list[tuple[list[int], None]], dict]:
        """A batch of segments → ([(tokens, None)] per segment: tokens carry their own time, head probs)."""
        import torch

        lengths = batch["feature_lengths"].tolist()
        with torch.no_grad():  # one encoder pass for both the decoder and the heads
            H, mask, _, heads = model.encode(batch)
        probs = model.encoder.head_probs(heads, batch["features"].shape[1])
        if cfg.s2s_decoder == "beam":
            seqs = s2s_beam(model, H, mask, vocab, lengths, cfg)
        else:
            seqs = s2s_greedy(
                model, H, mask, vocab, lengths, cfg, constrained=cfg.s2s_decoder == "constrained"
            )
        return [(list(toks), None) for toks in seqs], probs

    @staticmethod
    def segment_events(
        ids, frames, n_frames: int, vocab, cfg: DecodeConfig
    ) -> tuple[list[int] | None, list, dict]:
        """One segment's tokens → (tie pitches, events in segment frames, counts); events past the
        segment's end are counted and dropped."""
        from mtlib.events import tokens_to_segment_events

        return tokens_to_segment_events(ids, vocab, n_frames)

    @staticmethod
    def onset_refinement(cfg: DecodeConfig) -> tuple[int, float]:
        return cfg.s2s_onset_window, cfg.s2s_onset_threshold

    @staticmethod
    def reference_tokens(frame_notes, start: int, n_frames: int, vocab) -> list[int]:
        from mtlib.events import segment_tokens

        return list(segment_tokens(frame_notes, start, n_frames, vocab))


KIND_DECODINGS = {"ctc": CTCDecoding, "seq2seq": Seq2SeqDecoding}


def decoding_for_kind(kind: str):
    """The decoding interface (`CTCDecoding` or `Seq2SeqDecoding`) of a model kind."""
    try:
        return KIND_DECODINGS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model kind {kind!r} (known: {', '.join(KIND_DECODINGS)})"
        ) from None
