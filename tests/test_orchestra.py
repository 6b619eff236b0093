"""The recorded instruments (mtlib.orchestra): every note sounds at its label onset and at its
pitch, long notes sustain to their offset and stop after it, velocity scales loudness, rendering is
deterministic, the demo gives them only the programs they have and never trains on them while
they play test_recorded. Needs the tonejs-instruments
packages that `scripts/setup` fetches."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import energy_onset, spectral_f0

from mtlib.assets import ORCHESTRA, AssetError, asset_dir
from mtlib.notes import Note

try:
    for _asset in ORCHESTRA.values():
        asset_dir(_asset)
except AssetError as err:
    pytest.skip(f"tonejs-instruments recordings not installed ({err})", allow_module_level=True)

from mtlib.demo import ORCHESTRA as SOURCE  # noqa: E402
from mtlib.demo import DemoConfig, draw_sources  # noqa: E402
from mtlib.orchestra import (  # noqa: E402
    BORROW_SEMITONES,
    PROGRAMS,
    choose_recording,
    clear_caches,
    file_pitch,
    recorded_pitches,
    render_orchestra,
)

RATE = 44100
# Each program's playing range in the demo (its written range, widened by the demo's +-3 transposition).
RANGES = {
    1: (21, 108),
    41: (52, 100),
    42: (45, 91),
    43: (33, 79),
    44: (25, 62),
    71: (31, 78),
    72: (47, 94),
}


def _rms(audio: np.ndarray, start: float, stop: float) -> float:
    part = audio[round(start * RATE) : round(stop * RATE)].astype(np.float64)
    return float(np.sqrt(np.mean(part**2)))


def test_every_program_has_a_range():
    assert sorted(RANGES) == sorted(PROGRAMS)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_note_sounds_from_its_onset_sample(program):
    """Over the program's whole range, short and long notes: silence up to sample round(onset *
    rate), sound from that very sample, and the -30 dB energy onset within 10 ms of the label
    (measured worst case 7.2 ms: a bassoon's breath before its tone)."""
    lo, hi = RANGES[program]
    for pitch in range(lo, hi + 1, 2):
        for seconds in (0.1, 0.5, 3.0):
            onset = 0.3 + pitch / 1000.0  # off the 2 ms grid of the envelope
            notes = [Note(onset, onset + seconds, pitch, program, 80)]
            audio = render_orchestra(notes, RATE, tail_seconds=0.2)
            start = round(onset * RATE)
            assert not audio[:start].any(), (pitch, seconds)
            assert audio[start] != 0.0, (pitch, seconds)
            assert abs(energy_onset(audio, RATE) - onset) < 0.010, (pitch, seconds)


@pytest.mark.parametrize("rate", [22050, 44100])
@pytest.mark.parametrize(
    ("program", "pitch"), [(1, 60), (41, 69), (41, 70), (42, 50), (43, 45), (72, 64)]
)
def test_note_has_its_pitch(program, pitch, rate):
    """Recorded pitches (piano C4, violin A4), shifted ones (A#4 from A4; the clarinet's E4 from D4 or F4)
    and borrowed ones (the viola's D3 on a cello recording) sound within 25 cents of equal
    temperament at any output rate. (Real players vibrate and drift: 25 cents, not 20.)"""
    audio = render_orchestra([Note(0.0, 1.5, pitch, program, 80)], rate, tail_seconds=0.0)
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    segment = audio[round(0.3 * rate) : round(1.3 * rate)]
    cents = 1200 * np.log2(spectral_f0(segment, rate, expected) / expected)
    assert abs(cents) < 25, cents


def test_a_long_note_sustains_to_its_offset_and_stops_after_it():
    """A 9 s cello note on a ~3 s recording: the loop keeps it within 10 dB of its first seconds
    up to the offset, and 0.6 s after the offset it is below -50 dB of that."""
    audio = render_orchestra([Note(0.1, 9.1, 45, 43, 90)], RATE, tail_seconds=1.0)
    early = _rms(audio, 0.5, 2.0)
    for t in np.arange(2.0, 8.6, 0.5):
        assert _rms(audio, t, t + 0.5) > early * 10 ** (-10 / 20), t
    assert _rms(audio, 9.7, 10.1) < early * 10 ** (-50 / 20)


@pytest.mark.parametrize("program", [41, 71])
def test_louder_velocity_is_louder(program):
    rms = [
        _rms(render_orchestra([Note(0.0, 1.0, 60, program, v)], RATE), 0.0, 1.0)
        for v in (20, 60, 100, 127)
    ]
    assert all(a < b for a, b in zip(rms, rms[1:])), rms


def test_render_is_deterministic_warm_or_cold():
    notes = [
        Note(0.05 * i, 0.05 * i + 0.4 + 0.3 * (i % 3), 40 + (7 * i) % 40, prog, 60 + i)
        for i, prog in enumerate([1, 41, 42, 43, 44, 71, 72] * 3)
    ]
    clear_caches()
    cold = render_orchestra(notes, RATE)
    warm = render_orchestra(notes, RATE)
    clear_caches()
    again = render_orchestra(notes, RATE)
    assert cold.dtype == np.float32
    assert np.array_equal(cold, warm) and np.array_equal(cold, again)
    assert cold.size == round(max(n.offset for n in notes) * RATE) + RATE


def test_file_names_give_pitches():
    assert file_pitch("A3") == 57
    assert file_pitch("Cs4") == 61
    assert file_pitch("C-1") == 0
    assert file_pitch("F2 v2") is None  # a second take
    assert file_pitch("index") is None
    assert min(recorded_pitches("violin")) == 55  # G3, the violin's lowest string
    assert len(recorded_pitches("cello")) == 35


def test_a_program_borrows_only_when_its_own_recordings_are_far():
    assert choose_recording(41, 69) == ("violin", 69)  # recorded
    assert choose_recording(42, 48)[0] == "cello"  # the viola's C string: violin's G3 is 7 away
    assert choose_recording(42, 69) == ("violin", 69)
    top = max(recorded_pitches("cello"))
    assert choose_recording(43, top + BORROW_SEMITONES - 1)[0] == "cello"
    assert choose_recording(43, top + 2 * BORROW_SEMITONES + 3)[0] == "violin"
    with pytest.raises(ValueError, match="program 69 has no recordings"):
        choose_recording(69, 60)


def test_the_demo_gives_them_only_the_programs_they_have():
    """Drawn with all the weight on them, the recordings play every program they have; the oboe
    and the piano get another source. The draws consume the random stream as before, so the pedal
    (drawn next) and test_unseen's audio do not depend on the weights."""
    heavy = DemoConfig(
        piano_sources={"salamander": 1e-9, SOURCE: 1.0},
        other_sources={"TimGM6mb": 1e-9, SOURCE: 1.0},
        recorded_test=False,
    )
    none = DemoConfig(other_sources={"TimGM6mb": 1.0})
    programs = [1, 41, 42, 43, 44, 69, 71, 72]
    sources = draw_sources(programs, rng := np.random.default_rng(5), heavy)
    after = rng.random()
    assert {p for p, s in sources.items() if s == SOURCE} == set(PROGRAMS)
    assert sources[69] == "TimGM6mb"
    rng = np.random.default_rng(5)
    draw_sources(programs, rng, none)
    assert rng.random() == after
    with pytest.raises(ValueError, match="give a SoundFont a positive weight too"):
        DemoConfig(other_sources={SOURCE: 1.0}, recorded_test=False)


def test_the_recorded_test_instruments_are_never_a_training_source():
    with pytest.raises(ValueError, match="must never be heard in training"):
        DemoConfig(other_sources={"TimGM6mb": 1.0, SOURCE: 0.5})
    with pytest.raises(ValueError, match="must never be heard in training"):
        DemoConfig(piano_sources={"salamander": 1.0, SOURCE: 0.1})
    DemoConfig(other_sources={"TimGM6mb": 1.0, SOURCE: 0.0})  # weight 0: never drawn
