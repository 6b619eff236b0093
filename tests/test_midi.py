"""mtlib.midi: notes → MIDI → notes keeps pitches, programs, velocities and times (to 1 ms)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.errors import MusicNetFormatError
from mtlib.midi import read_midi, write_midi
from mtlib.notes import Note, sort_notes


def test_round_trip_keeps_programs_and_times(tmp_path):
    notes = [
        Note(0.1234, 0.5678, 60, 41, 90),  # violin
        Note(0.2, 1.0, 64, 1, 70),  # piano
        Note(1.3331, 2.9, 48, 43, 80),  # cello
        Note(1.3331, 2.0, 55, 43, 81),  # cello chord
    ]
    path = tmp_path / "song.mid"
    write_midi(path, notes)
    back = read_midi(path)
    assert len(back) == len(notes)
    for a, b in zip(sort_notes(notes), back):
        assert (b.pitch, b.program, b.velocity) == (a.pitch, a.program, a.velocity)
        assert b.onset == pytest.approx(a.onset, abs=1e-3)
        assert b.offset == pytest.approx(a.offset, abs=1e-3)


def test_one_instrument_per_program_and_unknown_is_the_default(tmp_path):
    import pretty_midi

    path = tmp_path / "t.mid"
    write_midi(path, [Note(0, 1, 60, 0), Note(1, 2, 62, 0), Note(0, 1, 50, 74)], default_program=1)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert sorted(inst.program for inst in midi.instruments) == [0, 73]  # pretty_midi is 0-based
    assert {n.program for n in read_midi(path)} == {1, 74}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 30),
            st.floats(0.01, 3),
            st.integers(21, 108),
            st.integers(1, 128),
            st.integers(1, 127),
        ),
        max_size=12,
    )
)
def test_round_trip_property(tmp_path_factory, rows):
    # one note per (pitch, program) so that MIDI's on/off pairing cannot reorder overlapping notes
    unique = {(p, g): Note(t, t + d, p, g, v) for t, d, p, g, v in rows}
    notes = sort_notes(unique.values())
    path = tmp_path_factory.mktemp("midi") / "p.mid"
    write_midi(path, notes)
    back = read_midi(path)
    assert back == sort_notes(back)
    key = lambda n: (n.program, n.pitch)  # noqa: E731
    for a, b in zip(sorted(notes, key=key), sorted(back, key=key)):
        assert (b.pitch, b.program, b.velocity) == (a.pitch, a.program, a.velocity)
        assert abs(b.onset - a.onset) < 1e-3 and abs(b.offset - a.offset) < 1e-3


def test_empty_note_list_writes_a_readable_file(tmp_path):
    write_midi(tmp_path / "empty.mid", [])
    assert read_midi(tmp_path / "empty.mid") == []


def test_drum_tracks_are_skipped(tmp_path):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=0.0, end=0.1))
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=100, pitch=60, start=0.0, end=0.5))
    midi.instruments = [drums, piano]
    midi.write(str(tmp_path / "d.mid"))
    assert [n.pitch for n in read_midi(tmp_path / "d.mid")] == [60]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.mid: MIDI file not found"):
        read_midi(tmp_path / "missing.mid")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(MusicNetFormatError, match=r"bad\.mid: unreadable MIDI file"):
        read_midi(bad)
    with pytest.raises(ValueError, match="default_program 0"):
        write_midi(tmp_path / "x.mid", [], default_program=0)
    assert not (tmp_path / "x.mid").exists()


def test_write_is_atomic(tmp_path, monkeypatch):
    import pretty_midi

    path = tmp_path / "keep.mid"
    write_midi(path, [Note(0, 1, 60, 1)])
    before = path.read_bytes()

    def fail(self, filename):
        open(filename, "wb").write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", fail)
    with pytest.raises(RuntimeError):
        write_midi(path, [Note(0, 1, 62, 1)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mid"]
