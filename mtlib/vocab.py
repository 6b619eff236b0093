"""The event vocabularies: the only place that knows a token id's number.

In the style of mt3's `event_codec`: each vocabulary is a short list of `EventRange`s, and an id
is the offset of its range plus the event's value minus the range's minimum. Two vocabularies
share that arithmetic:

* `Vocabulary` (Seq2Seq): PAD=0, SOS=1, EOS=2, TIE=3, TIME_SHIFT(1..max_shift),
  NOTE_ON(min_pitch..max_pitch), NOTE_OFF(min_pitch..max_pitch).
* `CTCVocabulary` (`vocab.ctc`): blank=0, NOTE_ON(...), NOTE_OFF(...): no time shifts, since a
  CTC token's time is its emission frame.

Build one from params with `config_from(Vocabulary, section(params, "vocab"), "vocab")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class Event(NamedTuple):
    """A decoded token: its family ("pad", "sos", "eos", "tie", "blank", "shift", "on", "off")
    and its value (frames for "shift", MIDI pitch for "on"/"off", 0 otherwise)."""

    type: str
    value: int = 0

    def __str__(self) -> str:
        return (
            self.type.upper()
            if self.type in SPECIAL_TYPES
            else f"{self.type.upper()}({self.value})"
        )


SPECIAL_TYPES = ("pad", "sos", "eos", "tie", "blank")


@dataclass(frozen=True)
class EventRange:
    """One token family: every value in [min_value, max_value] gets its own id."""

    type: str
    min_value: int
    max_value: int

    @property
    def size(self) -> int:
        return self.max_value - self.min_value + 1


class _Codec:
    """Id arithmetic over an ordered list of EventRanges (mt3's Codec, without time)."""

    ranges: tuple[EventRange, ...]

    def _set_ranges(self, ranges: tuple[EventRange, ...]) -> None:
        starts, offset = {}, 0
        for r in ranges:
            if r.size < 1:
                raise ValueError(f"vocabulary: empty range {r}")
            starts[r.type] = offset
            offset += r.size
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_by_type", {r.type: r for r in ranges})
        object.__setattr__(self, "size", offset)

    def encode(self, type: str, value: int = 0) -> int:
        """The id of an event; ValueError if the type is unknown or the value out of its range."""
        r = self._by_type.get(type)
        if r is None:
            raise ValueError(
                f"{type!r} is not a token type of {self!r} (types: {', '.join(self._by_type)})"
            )
        if not r.min_value <= value <= r.max_value:
            raise ValueError(
                f"{type} value {value} outside {r.min_value}..{r.max_value} in {self!r}"
            )
        return self._starts[type] + int(value) - r.min_value

    def decode(self, token: int) -> Event:
        """The event of an id; ValueError if the id is outside [0, size)."""
        token = int(token)
        if not 0 <= token < self.size:
            raise ValueError(f"token id {token} outside 0..{self.size - 1} of {self!r}")
        for r in self.ranges:  # a handful of ranges: a linear scan is clearest
            start = self._starts[r.type]
            if token < start + r.size:
                return Event(r.type, r.min_value + token - start)
        raise AssertionError("unreachable")

    def type_range(self, type: str) -> tuple[int, int]:
        """(first id, one past the last id) of a token family."""
        start = self._starts[type]
        return start, start + self._by_type[type].size

    def is_type(self, tokens, type: str) -> np.ndarray:
        """Boolean mask of which ids in `tokens` belong to a family (vectorised)."""
        lo, hi = self.type_range(type)
        tokens = np.asarray(tokens)
        return (tokens >= lo) & (tokens < hi)

    def values(self, tokens, type: str) -> np.ndarray:
        """The values (pitch, frames) of ids of one family; ids of other families give -1."""
        lo, _ = self.type_range(type)
        tokens = np.asarray(tokens, dtype=np.int64)
        return np.where(self.is_type(tokens, type), tokens - lo + self._by_type[type].min_value, -1)

    def describe(self, tokens) -> str:
        """Ids as readable text, e.g. "ON(60) TIE SHIFT(3) OFF(60) EOS"; bad ids as "?<id>"."""
        out = []
        for t in np.asarray(tokens, dtype=np.int64).ravel():
            out.append(str(self.decode(t)) if 0 <= t < self.size else f"?{int(t)}")
        return " ".join(out)

    def note_on(self, pitch: int) -> int:
        return self.encode("on", pitch)

    def note_off(self, pitch: int) -> int:
        return self.encode("off", pitch)

    @property
    def on_range(self) -> tuple[int, int]:
        return self.type_range("on")

    @property
    def off_range(self) -> tuple[int, int]:
        return self.type_range("off")

    @property
    def n_pitches(self) -> int:
        return self._by_type["on"].size


@dataclass(frozen=True)
class CTCVocabulary(_Codec):
    """CTC targets: blank=0, NOTE_ON(p)=1+(p-min_pitch), NOTE_OFF(p)=1+P+(p-min_pitch)."""

    min_pitch: int = 21
    max_pitch: int = 108
    blank: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_pitches(self.min_pitch, self.max_pitch)
        self._set_ranges(
            (
                EventRange("blank", 0, 0),
                EventRange("on", self.min_pitch, self.max_pitch),
                EventRange("off", self.min_pitch, self.max_pitch),
            )
        )


@dataclass(frozen=True)
class Vocabulary(_Codec):
    """Seq2Seq targets: PAD, SOS, EOS, TIE, TIME_SHIFT(1..max_shift), NOTE_ON(p), NOTE_OFF(p).

    The fields are the `vocab` section of params.yaml; `ctc` is the matching CTC vocabulary."""

    max_shift: int = 64
    min_pitch: int = 21
    max_pitch: int = 108
    PAD: int = field(default=0, init=False, repr=False)
    SOS: int = field(default=1, init=False, repr=False)
    EOS: int = field(default=2, init=False, repr=False)
    TIE: int = field(default=3, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_pitches(self.min_pitch, self.max_pitch)
        if self.max_shift < 1:
            raise ValueError(
                f"params.yaml: vocab.max_shift must be at least 1, got {self.max_shift}"
            )
        self._set_ranges(
            (
                EventRange("pad", 0, 0),
                EventRange("sos", 0, 0),
                EventRange("eos", 0, 0),
                EventRange("tie", 0, 0),
                EventRange("shift", 1, self.max_shift),
                EventRange("on", self.min_pitch, self.max_pitch),
                EventRange("off", self.min_pitch, self.max_pitch),
            )
        )
        object.__setattr__(self, "ctc", CTCVocabulary(self.min_pitch, self.max_pitch))

    def shift(self, frames: int) -> int:
        return self.encode("shift", frames)

    def shifts(self, frames: int) -> list[int]:
        """TIME_SHIFT ids that advance `frames` >= 0 frames: full max_shift steps, then the rest."""
        full, rest = divmod(int(frames), self.max_shift)
        return [self.shift(self.max_shift)] * full + ([self.shift(rest)] if rest else [])

    @property
    def shift_range(self) -> tuple[int, int]:
        return self.type_range("shift")

    def config(self) -> dict[str, int]:
        """The constructor arguments (for a checkpoint or stats.json: rebuild with Vocabulary(**cfg))."""
        return {
            "max_shift": self.max_shift,
            "min_pitch": self.min_pitch,
            "max_pitch": self.max_pitch,
        }


def _check_pitches(min_pitch: int, max_pitch: int) -> None:
    if not 0 <= min_pitch <= max_pitch <= 127:
        raise ValueError(
            f"params.yaml: need 0 <= vocab.min_pitch <= vocab.max_pitch <= 127, "
            f"got {min_pitch}..{max_pitch}"
        )
