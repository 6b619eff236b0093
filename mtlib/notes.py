"""The one note type, used on both ends of the pipeline: labels in, predictions out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class Note:
    """A note: onset and offset in seconds, MIDI pitch, General MIDI program (1-based, 1 = piano).

    `program` is 0 when unknown (a transcription carries no instrument)."""

    onset: float
    offset: float
    pitch: int
    program: int = 0
    velocity: int = 80

    @property
    def duration(self) -> float:
        return self.offset - self.onset


def notes_to_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    """Notes → (intervals (N, 2) seconds, pitches (N,) in Hz): the form mir_eval expects."""
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    intervals = np.array([[n.onset, n.offset] for n in notes], dtype=float)
    pitches = 440.0 * 2.0 ** ((np.array([n.pitch for n in notes], dtype=float) - 69.0) / 12.0)
    return intervals, pitches


def sort_notes(notes: Iterable[Note]) -> list[Note]:
    """Notes ordered by onset, then pitch (the order every writer uses)."""
    return sorted(notes, key=lambda n: (n.onset, n.pitch, n.offset, n.program))
