"""Training-time augmentation in the feature domain: random gain, spectral tilt, and mixing two
segments with the union of their labels. Cheap on the CPU (no audio is touched), applied to
the train split only (`AugmentedDataset` wraps the train `SegmentDataset`; validation, the
decode sweep and evaluation read the plain dataset or whole tracks).

Features are ln(mel power + LOG_FLOOR) (`mtlib.features`), so every change is made in the power
domain, P = max(exp(x) - LOG_FLOOR, 0), and logged back with the same floor:

* gain g dB multiplies P by 10^(g/10). Bins well above the floor move by g*ln(10)/10 (what a
  plain `x + g*ln(10)/10` gives), but the floor stays where it is: real audio made louder or
  quieter still has silent bins at ln(LOG_FLOOR). Adding to the log instead would lift silence
  above the floor (a level the features never take at test time) or push it below (impossible),
  and a clamp fixes only the second.
* tilt t dB: a gain ramping linearly over the mel bins from -t/2 (lowest) to +t/2 (highest), so
  the highest bin gains t dB on the lowest and the mean level is unchanged; t > 0 brightens.
* mixing adds another train segment's power at a relative level L dB: ln(P_a + 10^(L/10) P_b +
  floor), i.e. ln(e^a + 10^(L/10) e^b) wherever the bins are well above the floor. The targets
  become the union of both segments' notes (`mix_targets`), re-encoded by the tokenize stage's
  own functions. Gain and tilt are then applied to the mixture.
* pitch shift by s semitones (constant-Q features only, where pitch is an axis): every bin moves
  s * bins_per_semitone bins up (down for s < 0), the bins it uncovers are silent (the floor),
  and every note's pitch moves by s. A shift that would take a note outside the vocabulary's
  pitch range is cut to the largest that does not. Unlike transposing the score before
  rendering (`demo.transpose`), it also moves the instrument's formants and the room's colour
  with the notes: a new timbre for free. Applied to the mixture, before gain and tilt.
* reverberation (with probability `reverb_probability`): a room's late tail in the power domain,
  P'[t] = P[t] + s * sum_{k>=1} a^k P[t-k], an exponential decay of every bin's power with a
  reverberation time T60 (a = 10^(-6 h / T60) per frame of h seconds: -60 dB after T60) and a
  tail carrying `wet` dB of the dry energy (s = 10^(wet/10) (1 - a) / a: an impulse's tail sums
  to that). The labels are unchanged, as a hall's tail is not in any score. Applied to the
  mixture (a room hears both segments), before gain and tilt; it commutes with the pitch shift.
  Only the tail after the segment's first frame exists (the segment is all it sees).
* a slow attack (with probability `attack_probability`): every bin's power through a moving
  average over the last K frames, P'[t] = (1/K) sum_{k<K} P[t-k], so each note's energy swells
  over K frames (`attack_ms`) from its onset instead of arriving at once, as a bowed string or a
  soft wind attack does, and its release lengthens by as much. The frames before the segment are
  taken to hold its first frame's power (no fade-in at the cut). The labels are unchanged: the
  note starts where its swell starts. Applied to the mixture before the reverberation (the
  instrument's attack, then the room).

* detuning by c cents (constant-Q features only, c uniform in +-`detune_cents`): every bin's
  power moves c / 100 * bins_per_semitone bins up (down for c < 0), a fractional shift by linear
  interpolation between neighbouring bins (power, not log); the labels are unchanged, as a note
  played 30 cents sharp is still that note. Real ensembles tune to A = 440-446 Hz, pianos drift,
  period bands play lower: R15's CTC model lost 0.07 / 0.12 note F1 on test_unseen played 30
  cents sharp / flat (BENCHMARKS.md). Applied to the mixture with the pitch shift, before the rest.
* a frequency mask (with probability `freq_mask_probability`, SpecAugment's frequency masking):
  one band of bins, a fraction of them uniform in `freq_mask_fraction`, placed uniformly, falls
  silent (power 0: the log floor, as a deep notch would leave it). The labels are unchanged: a
  note whose fundamental is masked must be heard from its other partials, as a timbre the
  training sources never had (a weak fundamental, a formant elsewhere) would ask. Applied last.

Every draw comes from `np.random.default_rng([seed, epoch, index])`, so an item's augmentation
depends only on the train seed, the epoch and its index: not on DataLoader workers or batch order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mtlib.events import (
    OFF,
    PAIRING_COUNTS,
    TOKEN_COUNTS,
    FrameEvent,
    FrameNote,
    NoteArrays,
    clip_to_track,
    ctc_targets,
    ctc_to_events,
    segment_tokens,
    stitch_segments,
    tokens_to_segment_events,
)
from mtlib.features import LOG_FLOOR
from mtlib.vocab import Vocabulary

LN10_OVER_10 = math.log(10.0) / 10.0  # dB of power → natural-log units
BEFORE = (
    -1
)  # segment-local onset of a note that started before the segment (a tie / a CTC OFF without ON)
# Decoding counts that must be zero for tokens written by the tokenize stage (closed_at_end is a
# note still sounding at the segment's end: expected).
_MUST_BE_ZERO = (*TOKEN_COUNTS, *(k for k in PAIRING_COUNTS if k != "closed_at_end"))


@dataclass(frozen=True)
class AugmentConfig:
    """The `train.augment` section of params.yaml. Each part is off at 0; `enabled: false`
    switches everything off."""

    enabled: bool = True
    gain_db: float = 6.0  # gain uniform in +-gain_db
    tilt_db: float = 6.0  # spectral tilt uniform in +-tilt_db (highest bin minus lowest bin)
    mix_probability: float = 0.3  # chance of adding another train segment (labels: the union)
    mix_level_db: tuple[float, float] = (
        -6.0,
        0.0,
    )  # the other segment's level, uniform in [lo, hi] dB
    pitch_shift: int = 0  # semitones, a whole number uniform in +-pitch_shift (cqt/hcqt only)
    reverb_probability: float = 0.0  # chance of a reverberation tail (0 = off)
    reverb_t60: tuple[float, float] = (0.5, 4.0)  # its reverberation time, uniform in [lo, hi] s
    reverb_wet_db: tuple[float, float] = (-12.0, 0.0)  # tail energy over dry, uniform [lo, hi] dB
    attack_probability: float = 0.0  # chance of a slow attack (0 = off)
    attack_ms: tuple[float, float] = (64.0, 256.0)  # its swell time, uniform in [lo, hi] ms
    detune_cents: float = 0.0  # detuning uniform in +-detune_cents, labels kept (cqt/hcqt only)
    freq_mask_probability: float = 0.0  # chance of a frequency mask (0 = off)
    freq_mask_fraction: tuple[float, float] = (0.02, 0.15)  # its width, a fraction of the bins

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(
                f"params.yaml: train.augment.enabled must be true or false, got {self.enabled!r}"
            )
        for key in (
            "gain_db",
            "tilt_db",
            "mix_probability",
            "reverb_probability",
            "attack_probability",
            "detune_cents",
            "freq_mask_probability",
        ):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(
                    f"params.yaml: train.augment.{key} must be a finite number, got {value!r}"
                )
            object.__setattr__(self, key, float(value))
        if not 0.0 <= self.detune_cents <= 50.0:
            raise ValueError(
                "params.yaml: train.augment.detune_cents must be in [0, 50] (0 = off; beyond 50 "
                f"cents a note is nearer its neighbour than itself), got {self.detune_cents}"
            )
        for key in ("gain_db", "tilt_db"):
            if getattr(self, key) < 0:
                raise ValueError(
                    f"params.yaml: train.augment.{key} must be >= 0 (0 = off), got {getattr(self, key)}"
                )
        if not 0.0 <= self.mix_probability <= 1.0:
            raise ValueError(
                f"params.yaml: train.augment.mix_probability must be in [0, 1] (0 = off), "
                f"got {self.mix_probability}"
            )
        self._range("mix_level_db", "dB")
        self._range("reverb_t60", "s", positive=True)
        self._range("reverb_wet_db", "dB")
        self._range("attack_ms", "ms", positive=True)
        self._range("freq_mask_fraction", "of the bins")
        if not 0.0 <= self.freq_mask_fraction[0] <= self.freq_mask_fraction[1] <= 1.0:
            raise ValueError(
                "params.yaml: train.augment.freq_mask_fraction must be [lo, hi] within [0, 1] "
                f"(a fraction of the feature bins), got {list(self.freq_mask_fraction)}"
            )
        for key in ("reverb_probability", "attack_probability", "freq_mask_probability"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(
                    f"params.yaml: train.augment.{key} must be in [0, 1] (0 = off), "
                    f"got {getattr(self, key)}"
                )
        shift = self.pitch_shift
        if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 24:
            raise ValueError(
                f"params.yaml: train.augment.pitch_shift must be a whole number of semitones in "
                f"[0, 24] (0 = off), got {shift!r}"
            )

    def _range(self, key: str, unit: str, positive: bool = False) -> None:
        """Check and normalise a [lo, hi] pair of finite numbers (> 0 if `positive`)."""
        pair = getattr(self, key)
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or any(
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or (positive and v <= 0)
                for v in pair
            )
        ):
            kind = "positive" if positive else "finite"
            raise ValueError(
                f"params.yaml: train.augment.{key} must be two {kind} numbers [lo, hi] ({unit}), "
                f"got {pair!r}"
            )
        if pair[0] > pair[1]:
            raise ValueError(f"params.yaml: train.augment.{key} needs lo <= hi, got {list(pair)}")
        object.__setattr__(self, key, (float(pair[0]), float(pair[1])))

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen."""
        return self.enabled and (
            self.gain_db > 0
            or self.tilt_db > 0
            or self.mix_probability > 0
            or self.pitch_shift > 0
            or self.reverb_probability > 0
            or self.attack_probability > 0
            or self.detune_cents > 0
            or (self.freq_mask_probability > 0 and self.freq_mask_fraction[1] > 0)
        )

    def describe(self) -> dict:
        """Plain values (for the run signature, a checkpoint's `extra`, logs). The slow attack,
        added after checkpoints had been trained, is listed only when it is on: a run without it
        keeps the signature and the checkpoint bytes it had before the option existed; so is the
        detuning and the frequency mask."""
        attack = {"attack_probability": self.attack_probability, "attack_ms": list(self.attack_ms)}
        return {
            "enabled": self.enabled,
            "gain_db": self.gain_db,
            "tilt_db": self.tilt_db,
            "mix_probability": self.mix_probability,
            "mix_level_db": list(self.mix_level_db),
            "pitch_shift": self.pitch_shift,
            "reverb_probability": self.reverb_probability,
            "reverb_t60": list(self.reverb_t60),
            "reverb_wet_db": list(self.reverb_wet_db),
            **(attack if self.attack_probability > 0 else {}),
            **({"detune_cents": self.detune_cents} if self.detune_cents > 0 else {}),
            **(
                {
                    "freq_mask_probability": self.freq_mask_probability,
                    "freq_mask_fraction": list(self.freq_mask_fraction),
                }
                if self.freq_mask_probability > 0
                else {}
            ),
        }


# ---------------------------------------------------------------------------------------------
# Features


def to_power(features: np.ndarray) -> np.ndarray:
    """ln(P + LOG_FLOOR) → P >= 0 (float64)."""
    return np.maximum(np.exp(np.asarray(features, dtype=np.float64)) - LOG_FLOOR, 0.0)


def from_power(power: np.ndarray) -> np.ndarray:
    """P → ln(P + LOG_FLOOR) as float32."""
    return np.log(power + LOG_FLOOR).astype(np.float32)


def tilt_ramp(n_mels: int, tilt_db: float) -> np.ndarray:
    """dB per mel bin of a tilt of `tilt_db`: linear from -tilt/2 (lowest bin) to +tilt/2 (highest)."""
    if n_mels < 2:
        return np.zeros(n_mels)
    return tilt_db * (np.linspace(0.0, 1.0, n_mels) - 0.5)


def reverb_tail(power: np.ndarray, decay: float, wet_db: float) -> np.ndarray:
    """Power (T, bins) with an exponentially decaying tail added along time: decay `a` per frame,
    the tail of an impulse summing to 10^(wet_db/10) of it (see the module's docstring)."""
    from scipy.signal import lfilter  # a one-pole recursive filter along time, per bin

    if not 0.0 < decay < 1.0:
        raise ValueError(f"augment: reverb decay per frame must be in (0, 1), got {decay}")
    running = lfilter([1.0], [1.0, -decay], power, axis=0)  # sum_{k>=0} a^k P[t-k]
    scale = 10.0 ** (wet_db / 10.0) * (1.0 - decay) / decay
    return power + scale * (running - power)


def slow_attack(power: np.ndarray, frames: int) -> np.ndarray:
    """Power (T, bins) through a moving average over the last `frames` frames along time, the
    frames before the first taken to hold the first frame's power (see the module's docstring)."""
    from scipy.ndimage import uniform_filter1d  # a running mean along time, per bin

    if frames < 1:
        raise ValueError(f"augment: a slow attack needs >= 1 frame, got {frames}")
    if frames == 1 or len(power) == 0:
        return power
    # origin shifts the window to [t - frames + 1, t]; mode "nearest" repeats the first frame
    return uniform_filter1d(power, frames, axis=0, mode="nearest", origin=(frames - 1) // 2)


def attack_frames(attack_ms: float, frame_seconds: float) -> int:
    """Frames of a swell of `attack_ms` milliseconds (at least 1: no swell)."""
    return max(1, round(attack_ms / 1000.0 / frame_seconds))


def reverb_decay(t60: float, frame_seconds: float) -> float:
    """Power decay per frame for a reverberation time of `t60` s: 60 dB down after t60."""
    return 10.0 ** (-6.0 * frame_seconds / t60)


def augment_features(
    features: np.ndarray,
    gain_db: float = 0.0,
    tilt_db: float = 0.0,
    other: np.ndarray | None = None,
    level_db: float = 0.0,
    reverb: tuple[float, float] | None = None,
    attack: int = 1,
    mask: tuple[int, int] | None = None,
) -> np.ndarray:
    """Log-mel (T, n_mels) → the same with `other` (same shape) added at `level_db` (if given),
    a slow attack over `attack` frames (1 = none), a reverberation tail (`reverb`: decay per
    frame, wet dB; None = none), then gain and tilt applied, then the bins [start, stop) of
    `mask` silenced (None = none), all in the power domain with the log floor kept; float32."""
    power = to_power(features)
    if other is not None:
        if other.shape != power.shape:
            raise ValueError(f"augment: mixing features of shape {other.shape} into {power.shape}")
        power = power + 10.0 ** (level_db / 10.0) * to_power(other)
    if attack > 1:
        power = slow_attack(power, attack)
    if reverb is not None:
        power = reverb_tail(power, *reverb)
    db = gain_db + tilt_ramp(power.shape[-1], tilt_db)  # (n_mels,)
    if np.any(db != 0):
        power = power * 10.0 ** (db / 10.0)
    if mask is not None:
        power[..., mask[0] : mask[1]] = 0.0
    return from_power(power)


def mask_band(n_bins: int, width: float, position: float) -> tuple[int, int] | None:
    """The bins [start, stop) of a frequency mask `width` (a fraction) of `n_bins` wide, its start
    `position` (in [0, 1)) of the way through the starts that keep it inside; None if it is
    narrower than one bin."""
    bins = min(n_bins, round(width * n_bins))
    if bins < 1:
        return None
    start = min(n_bins - bins, int(position * (n_bins - bins + 1)))
    return start, start + bins


def shift_bins(features: np.ndarray, bins: int) -> np.ndarray:
    """Features (T, n_bins) with every bin moved `bins` up (down if negative); the bins it
    uncovers hold the floor, ln(LOG_FLOOR), and those pushed past the edge are dropped."""
    out = np.full_like(features, math.log(LOG_FLOOR))
    n = features.shape[-1]
    if abs(bins) >= n:
        return out
    if bins >= 0:
        out[:, bins:] = features[:, : n - bins]
    else:
        out[:, :bins] = features[:, -bins:]
    return out


def shift_semitones(notes: Sequence[FrameNote], semitones: int, vocab: Vocabulary) -> int:
    """`semitones`, cut to the largest shift (same sign) that keeps every note in the vocabulary's
    pitch range."""
    if not notes:
        return semitones
    low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
    return int(np.clip(semitones, vocab.min_pitch - low, vocab.max_pitch - high))


# ---------------------------------------------------------------------------------------------
# Targets ↔ notes


def segment_notes(
    tokens: Sequence[int],
    ctc_tokens: Sequence[int],
    ctc_frames: Sequence[int],
    n_frames: int,
    vocab: Vocabulary,
    where: str = "segment",
) -> list[FrameNote]:
    """A segment's targets → its notes in segment frames, the inverse of the tokenize stage's
    `segment_tokens` + `ctc_targets` at start 0: re-encoding them gives the same targets.

    Notes from the Seq2Seq tokens (tie pitches start at BEFORE = -1; notes still sounding at the
    end close at n_frames), plus a BEFORE..0 note for each CTC NOTE_OFF at frame 0 (a note ending
    exactly at the segment's start: Seq2Seq leaves it out, CTC keeps its OFF). ValueError naming
    `where` if the targets do not decode cleanly (they were not written by tokenize)."""
    ties, events, counts = tokens_to_segment_events(tokens, vocab, n_frames)
    # A lone segment: open its tied notes in a one-frame segment just before it, as stitching
    # across a boundary would.
    before = [FrameEvent(0, 1, p) for p in ties]
    notes, pairing = stitch_segments([(BEFORE, None, before), (0, ties, events)], n_frames)
    ctc_events, ctc_counts = ctc_to_events(ctc_tokens, ctc_frames, vocab.ctc)
    bad = {
        k: v
        for c in (counts, pairing, ctc_counts)
        for k, v in c.items()
        if k in _MUST_BE_ZERO and v
    }
    if bad:
        raise ValueError(
            f"augment: {where}: targets do not decode cleanly ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
            f"rerun tokenize"
        )
    notes += [FrameNote(BEFORE, 0, e.pitch) for e in ctc_events if e.frame == 0 and e.kind == OFF]
    return notes


def union_notes(*note_lists: Sequence[FrameNote]) -> list[FrameNote]:
    """The notes of several segments as one note list with one note per pitch at a time.

    A pitch sounds wherever any input note of that pitch sounds, and every distinct onset starts
    a note: a note still sounding when another of its pitch starts ends there, and the later
    note lasts to the end of the overlapping run (notes with the same onset merge into the
    longest). So the result is canonical (`canonical_frame_notes` changes nothing) and its
    tokens are a valid sequence. Sorted by onset, then pitch."""
    by_pitch: dict[int, list[FrameNote]] = {}
    for notes in note_lists:
        for n in notes:
            by_pitch.setdefault(n.pitch, []).append(n)
    out: list[FrameNote] = []
    for pitch, group in by_pitch.items():
        group.sort(key=lambda n: (n.onset, -n.offset))
        run: list[list[int]] = []  # [onset, offset] of this pitch's resolved notes
        for n in group:
            if run and n.onset == run[-1][0]:
                run[-1][1] = max(run[-1][1], n.offset)
            elif run and n.onset < run[-1][1]:
                end = max(run[-1][1], n.offset)
                run[-1][1] = n.onset
                run.append([n.onset, end])
            else:
                run.append([n.onset, n.offset])
        out += [FrameNote(a, b, pitch) for a, b in run]
    return sorted(out, key=lambda n: (n.onset, n.pitch, n.offset))


def segment_targets(
    notes: Sequence[FrameNote], n_frames: int, vocab: Vocabulary
) -> dict[str, np.ndarray]:
    """Segment-frame notes → both models' targets, exactly as the tokenize stage builds them
    (`tokenize_track`: canonical NoteArrays, `segment_tokens`, `ctc_targets`), as int64 arrays."""
    arrays = NoteArrays.from_frame_notes(notes)
    ctc_ids, ctc_frames = ctc_targets(arrays, 0, n_frames, vocab.ctc)
    return {
        "tokens": np.asarray(segment_tokens(arrays, 0, n_frames, vocab), dtype=np.int64),
        "ctc_tokens": ctc_ids.astype(np.int64),
        "ctc_frames": ctc_frames.astype(np.int64),
    }


def item_notes(item: dict, n_frames: int, vocab: Vocabulary) -> list[FrameNote]:
    """A SegmentDataset item's notes in its frames, clipped to its first `n_frames` frames."""
    length = int(item["features"].shape[0])
    where = f"track {item.get('track')} segment {item.get('segment')}"
    notes = segment_notes(
        item["tokens"], item["ctc_tokens"], item["ctc_frames"], length, vocab, where
    )
    return notes if n_frames >= length else clip_to_track(notes, n_frames)[0]


def mix_targets(item: dict, other: dict, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Targets of `item` mixed with `other` (as long or longer; cut to item's length): the union
    of both segments' notes (`union_notes`), re-encoded for both models."""
    n = int(item["features"].shape[0])
    return segment_targets(
        union_notes(item_notes(item, n, vocab), item_notes(other, n, vocab)), n, vocab
    )


# ---------------------------------------------------------------------------------------------
# Dataset


def detune_bins(features: np.ndarray, bins: float) -> np.ndarray:
    """Features (T, n_bins) with every bin's power moved `bins` up (a fraction allowed; down if
    negative) by linear interpolation between neighbouring bins; what it uncovers is silent (the
    floor) and what passes the edge is dropped. Whole numbers give `shift_bins` exactly."""
    whole = math.floor(bins)
    frac = bins - whole
    if frac == 0.0:
        return shift_bins(features, whole)
    power = to_power(features)
    pad = np.zeros((power.shape[0], 1))
    # out[k] = (1 - frac) * P[k - whole] + frac * P[k - whole - 1]: P shifted by whole, then by one more
    lower = np.concatenate([pad, power[:, :-1]], axis=1)
    mixed = (1.0 - frac) * power + frac * lower
    return shift_bins(from_power(mixed), whole)


class AugmentDraw(NamedTuple):
    """What one item gets in one epoch: partner None = no mixing; semitones: the pitch shift
    drawn (before it is cut to keep the item's notes in range); reverb_t60 0 = no reverberation."""

    gain_db: float
    tilt_db: float
    partner: int | None
    level_db: float
    semitones: int = 0
    reverb_t60: float = 0.0  # 0 = no reverberation
    reverb_wet_db: float = 0.0
    attack_ms: float = 0.0  # 0 = no slow attack
    detune_cents: float = 0.0
    mask_fraction: float = 0.0  # 0 = no frequency mask
    mask_position: float = 0.0  # where the mask starts, in [0, 1) of the starts that keep it in


class AugmentedDataset:
    """The train `SegmentDataset` with `AugmentConfig`'s augmentation, drawn per (seed, epoch,
    index). Call `set_epoch(epoch)` before each epoch's DataLoader is made (the DataLoader hands
    workers a copy of this object when iterated, so the epoch travels with it). With the config
    inactive, items are the base dataset's, unchanged.

    Mixing partners: any other segment at least as long as the item (cut to its length), so
    full-length segments mix with full-length ones. `bins_per_semitone`: the features' bins per
    semitone when they have a pitch axis (constant-Q), 0 when not (log-mel: no pitch shift).
    `frame_seconds`: the features' hop in seconds (needed by the reverberation only)."""

    def __init__(
        self,
        base,
        cfg: AugmentConfig,
        seed: int,
        vocab: Vocabulary,
        bins_per_semitone: int = 0,
        frame_seconds: float = 0.0,
    ):
        if int(seed) < 0:
            raise ValueError(f"augment: the seed must be >= 0, got {seed}")
        for key in ("pitch_shift", "detune_cents"):
            if cfg.enabled and getattr(cfg, key) > 0 and bins_per_semitone <= 0:
                raise ValueError(
                    f"params.yaml: train.augment.{key} needs features with a pitch axis "
                    "(audio.features: cqt or hcqt); set it to 0 for logmel"
                )
        if (
            cfg.enabled
            and (cfg.reverb_probability > 0 or cfg.attack_probability > 0)
            and not frame_seconds > 0
        ):
            raise ValueError(
                "augment: the reverberation and the slow attack need the features' "
                "frame_seconds > 0"
            )
        self.base, self.cfg, self.seed, self.vocab = base, cfg, int(seed), vocab
        self.frame_seconds = float(frame_seconds)
        self.bins_per_semitone = int(bins_per_semitone)
        self.epoch = 0
        lengths = np.asarray(base.lengths("n_frames"), dtype=np.int64)
        self._order = np.argsort(lengths, kind="stable")  # partners of i: _order[_first[i]:] bar i
        self._first = np.searchsorted(lengths[self._order], lengths, side="left")
        self._rank = np.empty_like(self._order)
        self._rank[self._order] = np.arange(len(lengths))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def lengths(self, key: str = "n_frames") -> np.ndarray:
        return self.base.lengths(key)

    def draw(self, index: int) -> AugmentDraw:
        """This epoch's augmentation of item `index`. Fifteen uniforms are always drawn in the
        same order, so switching one part off leaves the others' draws unchanged (and the first
        five are what they were before the pitch shift, the sixth, existed; the first six what
        they were before the reverberation, the next three; the first nine what they were before
        the slow attack, the next two; the first eleven before the detuning, the twelfth; the
        first twelve before the frequency mask, the last three: `random(15)[:9] == random(9)`)."""
        u = np.random.default_rng([self.seed, self.epoch, int(index)]).random(15)
        u_mix, u_partner, u_level, u_gain, u_tilt, u_shift, u_rev, u_t60, u_wet, u_att, u_ms = u[
            :11
        ]
        u_detune, u_mask, u_width, u_where = u[11:]
        cfg = self.cfg
        if not cfg.enabled:
            return AugmentDraw(0.0, 0.0, None, 0.0)
        partner = None
        first = int(self._first[index])
        n_partners = len(self._order) - first - 1  # every item is among its own candidates
        if u_mix < cfg.mix_probability and n_partners > 0:
            k = first + int(u_partner * n_partners)
            k += k >= self._rank[index]  # skip the item itself
            partner = int(self._order[k])
        lo, hi = cfg.mix_level_db
        reverb = u_rev < cfg.reverb_probability
        (t_lo, t_hi), (w_lo, w_hi) = cfg.reverb_t60, cfg.reverb_wet_db
        a_lo, a_hi = cfg.attack_ms
        m_lo, m_hi = cfg.freq_mask_fraction
        masked = u_mask < cfg.freq_mask_probability
        return AugmentDraw(
            cfg.gain_db * (2 * u_gain - 1),
            cfg.tilt_db * (2 * u_tilt - 1),
            partner,
            lo + (hi - lo) * u_level if partner is not None else 0.0,
            int(u_shift * (2 * cfg.pitch_shift + 1)) - cfg.pitch_shift,
            t_lo + (t_hi - t_lo) * u_t60 if reverb else 0.0,
            w_lo + (w_hi - w_lo) * u_wet if reverb else 0.0,
            a_lo + (a_hi - a_lo) * u_ms if u_att < cfg.attack_probability else 0.0,
            cfg.detune_cents * (2 * u_detune - 1),
            m_lo + (m_hi - m_lo) * u_width if masked else 0.0,
            float(u_where) if masked else 0.0,
        )

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        if not self.cfg.active:
            return item
        d = self.draw(index)
        if d == AugmentDraw(0.0, 0.0, None, 0.0):  # nothing drawn for this item
            return item
        out = dict(item)
        features, other = item["features"], None
        n = int(features.shape[0])
        if d.partner is not None:
            partner = self.base[d.partner]
            other = partner["features"][:n]
            out.update(mix_targets(item, partner, self.vocab))
        if d.semitones != 0:
            # a bin shift commutes with the bin-wise power sum: shift both, then mix them once
            notes = item_notes(out, n, self.vocab)
            semitones = shift_semitones(notes, d.semitones, self.vocab)
            shifted = [FrameNote(x.onset, x.offset, x.pitch + semitones) for x in notes]
            out.update(segment_targets(shifted, n, self.vocab))
            bins = semitones * self.bins_per_semitone
            features = shift_bins(features, bins)
            other = None if other is None else shift_bins(other, bins)
        if d.detune_cents != 0:
            bins = d.detune_cents / 100.0 * self.bins_per_semitone
            features = detune_bins(features, bins)
            other = None if other is None else detune_bins(other, bins)
        reverb = None
        if d.reverb_t60 > 0:
            reverb = (reverb_decay(d.reverb_t60, self.frame_seconds), d.reverb_wet_db)
        attack = attack_frames(d.attack_ms, self.frame_seconds) if d.attack_ms > 0 else 1
        mask = None
        if d.mask_fraction > 0:
            mask = mask_band(int(features.shape[-1]), d.mask_fraction, d.mask_position)
        out["features"] = augment_features(
            features, d.gain_db, d.tilt_db, other, d.level_db, reverb, attack, mask
        )
        return out
