"""Notes ↔ Standard MIDI files (pretty_midi): what `mt transcribe` and `evaluate` hand to a user.

Note.program is a 1-based General MIDI program (1 = piano, 41 = violin), 0 = unknown;
pretty_midi's Instrument.program is 0-based. One instrument track per program.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mtlib.errors import MusicNetFormatError
from mtlib.notes import Note, sort_notes

if TYPE_CHECKING:
    import pretty_midi

# 960 ticks per quarter at 120 bpm is ~0.52 ms per tick, so note times survive a round trip to
# well under 1 ms (pretty_midi's default of 220 ticks gives 2.3 ms ticks).
RESOLUTION = 960
TEMPO = 120.0


def to_pretty_midi(notes: Sequence[Note], default_program: int = 1) -> pretty_midi.PrettyMIDI:
    """Notes as a `pretty_midi.PrettyMIDI`, one instrument per GM program, at RESOLUTION and TEMPO.

    Notes with program 0 (unknown, e.g. a transcription) get `default_program` (1 = piano)."""
    import pretty_midi

    if not 1 <= default_program <= 128:
        raise ValueError(f"default_program {default_program} is not a 1-based GM program (1-128)")
    midi = pretty_midi.PrettyMIDI(resolution=RESOLUTION, initial_tempo=TEMPO)
    instruments: dict[int, pretty_midi.Instrument] = {}
    for note in sort_notes(notes):
        program = note.program or default_program
        if program not in instruments:
            name = pretty_midi.program_to_instrument_name(program - 1)
            instruments[program] = pretty_midi.Instrument(program=program - 1, name=name)
        instruments[program].notes.append(
            pretty_midi.Note(
                velocity=int(note.velocity),
                pitch=int(note.pitch),
                start=float(note.onset),
                end=float(note.offset),
            )
        )
    midi.instruments = [instruments[p] for p in sorted(instruments)]
    return midi


def write_midi(path: str | Path, notes: Sequence[Note], default_program: int = 1) -> None:
    """Write notes as a MIDI file (`to_pretty_midi`), atomically."""
    from mtlib.io import atomic_path

    try:
        midi = to_pretty_midi(notes, default_program)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    with atomic_path(path) as tmp:
        midi.write(str(tmp))


def read_midi(path: str | Path) -> list[Note]:
    """A MIDI file → notes (seconds, via its tempo map), programs 1-based; drum tracks are skipped
    (their note numbers name percussion sounds, not pitches)."""
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MIDI file not found")
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except (
        Exception
    ) as exc:  # mido/pretty_midi raise OSError, ValueError, EOFError... for bad files
        raise MusicNetFormatError(path, f"unreadable MIDI file ({exc})") from None
    return sort_notes(
        Note(float(n.start), float(n.end), int(n.pitch), int(inst.program) + 1, int(n.velocity))
        for inst in midi.instruments
        if not inst.is_drum
        for n in inst.notes
    )
