"""The sampled piano (mtlib.sampler): notes sound at their label onset, at their pitch, louder for
higher velocity, ringing under the pedal and damped without it; generated pedal is sane;
rendering is deterministic. Needs the Salamander samples that `scripts/setup` fetches."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import energy_onset, spectral_f0

from mtlib.assets import PIANO_LAYERS, PIANO_RELEASE, AssetError, asset_dir
from mtlib.notes import Note

try:
    for _asset in (*PIANO_LAYERS, PIANO_RELEASE):
        asset_dir(_asset)
except AssetError as err:
    pytest.skip(f"Salamander piano samples not installed ({err})", allow_module_level=True)

from mtlib.sampler import PedalConfig, clear_caches, pedal_passages, render_piano  # noqa: E402

RATE = 44100


def _rms(audio: np.ndarray, start: float, stop: float, rate: int = RATE) -> float:
    return float(
        np.sqrt(np.mean(audio[round(start * rate) : round(stop * rate)].astype(np.float64) ** 2))
    )


@pytest.mark.parametrize("velocity", [25, 80, 127])
def test_note_sounds_from_its_onset_sample(velocity):
    """Across the keyboard (on and off the sample grid, damped and undamped keys): silence up to
    sample round(onset * rate), sound from that very sample, and the -30 dB energy onset within
    10 ms of the label."""
    for pitch in (21, 23, 35, 47, 60, 61, 74, 88, 97, 108):
        onset = 0.3 + pitch / 1000.0  # off the 2 ms grid of the envelope
        audio = render_piano([Note(onset, onset + 0.5, pitch, 1, velocity)], RATE, tail_seconds=0.2)
        start = round(onset * RATE)
        assert not audio[:start].any(), (pitch, velocity)
        assert audio[start] != 0.0, (pitch, velocity)
        assert abs(energy_onset(audio, RATE) - onset) < 0.010, (pitch, velocity)


@pytest.mark.parametrize("rate", [22050, 44100])
@pytest.mark.parametrize("pitch", [61, 62, 69])
def test_note_has_its_pitch(pitch, rate):
    """Off-grid keys (61 from C4 up, 62 from D#4 down) and a grid key sound within 20 cents of
    equal temperament, at any output rate (the 48 kHz files are resampled)."""
    audio = render_piano([Note(0.0, 1.2, pitch, 1, 80)], rate, tail_seconds=0.0)
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    cents = 1200 * np.log2(
        spectral_f0(audio[round(0.1 * rate) : round(1.0 * rate)], rate, expected) / expected
    )
    assert abs(cents) < 20, cents


@pytest.mark.parametrize("pitch", [40, 60, 84])
def test_louder_velocity_is_louder(pitch):
    rms = [
        _rms(render_piano([Note(0.0, 1.0, pitch, 1, v)], RATE), 0.0, 1.0)
        for v in (20, 60, 100, 127)
    ]
    assert all(a < b for a, b in zip(rms, rms[1:])), rms


def test_pedal_makes_a_note_ring_past_its_key_release_and_dampers_stop_it():
    note = Note(0.1, 0.6, 60, 1, 90)
    held = render_piano([note], RATE, pedal=[(0.05, 2.0)])
    dry = render_piano([note], RATE)
    loud = _rms(dry, 0.1, 0.6)
    after = _rms(held, 0.9, 1.9)  # from 0.3 s after the key release to 0.1 s before the pedal lift
    assert after > 0.03 * loud  # still ringing (above -30 dB; measured -21 dB)
    assert _rms(dry, 0.9, 1.9) < min(
        0.003 * loud, 0.01 * after
    )  # damped: below -50 dB (measured -72 dB)
    assert _rms(held, 2.3, 3.0) < 0.003 * loud  # the pedal lift damps it too
    assert held.size == round(3.0 * RATE)  # ends tail_seconds after the pedal lift it waited for
    assert dry.size == round(1.6 * RATE)


@pytest.mark.parametrize("pitch", [86, 89, 96])
def test_only_keys_from_f6_up_ring_on_without_pedal(pitch):
    """F6 (MIDI 89) and up have no dampers on a grand: released at 0.4 s, such a key sounds at
    0.9-1.4 s just as if it were still held; a damped key (86) is silent by then."""
    released = render_piano([Note(0.1, 0.4, pitch, 1, 90)], RATE, tail_seconds=1.5)
    held = render_piano([Note(0.1, 1.4, pitch, 1, 90)], RATE, tail_seconds=0.5)
    ratio = _rms(released, 0.9, 1.4) / _rms(held, 0.9, 1.4)
    assert (ratio > 0.9) if pitch >= 89 else (ratio < 0.001), ratio


def test_restrike_cuts_the_previous_sound_of_the_key():
    """Under the pedal, a struck-again key's old sound gives way: the sum with both strikes is
    quieter after the second strike than the first strike left to ring, plus the second alone."""
    pedal = [(0.0, 3.0)]
    first, second = Note(0.1, 0.3, 48, 1, 100), Note(1.0, 1.2, 48, 1, 100)
    both = render_piano([first, second], RATE, pedal=pedal)
    apart = render_piano([first], RATE, pedal=pedal) + render_piano([second], RATE, pedal=pedal)
    assert _rms(both, 1.05, 2.0) < 0.9 * _rms(apart, 1.05, 2.0)
    assert np.array_equal(both[: round(1.0 * RATE)], apart[: round(1.0 * RATE)])


def test_render_is_deterministic_warm_or_cold():
    rng = np.random.default_rng(3)
    notes = [
        Note(
            t,
            t + float(rng.uniform(0.1, 1.0)),
            int(rng.integers(30, 100)),
            1,
            int(rng.integers(20, 128)),
        )
        for t in np.sort(rng.uniform(0.0, 4.0, 40))
    ]
    pedal = pedal_passages(notes, np.random.default_rng(4), PedalConfig(probability=1.0))
    first = render_piano(notes, RATE, pedal)
    again = render_piano(notes, RATE, pedal)  # every tone now comes from the cache
    clear_caches()
    cold = render_piano(notes, RATE, pedal)
    assert first.dtype == np.float32 and np.abs(first).max() > 0.1
    assert np.array_equal(first, again) and np.array_equal(first, cold)


def test_a_longer_tone_starts_with_the_shorter_one():
    """The cache serves a note from any cached tone at least as long as it needs. That keeps the
    output independent of the cache only because a longer tone's head is the shorter tone, bit
    for bit (the Vorbis decoder and soxr stream from the start): checked here."""
    from mtlib.sampler import TONE_SECONDS, _make_tone

    for pitch, layer in ((22, 3), (61, 9), (100, 16)):
        short = _make_tone(pitch, layer, RATE, TONE_SECONDS[0])
        longest = _make_tone(pitch, layer, RATE, TONE_SECONDS[-1])
        assert short.size < longest.size and np.array_equal(short, longest[: short.size])


def _chords(n: int = 40, step: float = 0.25) -> list[Note]:
    """Two-note chords every `step` seconds, the second note 5 ms late (like jittered timing)."""
    return [
        Note(i * step + d, i * step + d + 0.4, p, 1, 80)
        for i in range(n)
        for d, p in ((0.0, 60), (0.005, 64))
    ]


def test_pedal_passages_are_seeded_sorted_and_inside_the_piece():
    notes = _chords()
    cfg = PedalConfig(probability=1.0)
    passages = pedal_passages(notes, np.random.default_rng(7), cfg)
    assert passages == pedal_passages(notes, np.random.default_rng(7), cfg)
    assert passages != pedal_passages(notes, np.random.default_rng(8), cfg)
    assert len(passages) >= 3
    first_onset, last_offset = min(n.onset for n in notes), max(n.offset for n in notes)
    assert first_onset < passages[0][0] and passages[-1][1] <= last_offset
    for (down, up), (next_down, _) in zip(passages, passages[1:]):
        assert down < up < next_down
        assert next_down - up == pytest.approx(cfg.gap_seconds)  # a quick re-pedal


def test_pedal_changes_follow_note_onsets_and_passage_lengths():
    """Every pedal lift but the last lies 10-60 ms after a note onset (a harmony change), and the
    passages last min..max seconds (plus that delay)."""
    notes = _chords()
    onsets = np.array(sorted({n.onset for n in notes}))
    cfg = PedalConfig(probability=1.0, min_seconds=0.8, max_seconds=2.0)
    for seed in range(5):
        passages = pedal_passages(notes, np.random.default_rng(seed), cfg)
        for down, up in passages[:-1]:
            assert np.any((up - onsets >= 0.010) & (up - onsets <= 0.060)), (seed, up)
            assert cfg.min_seconds <= up - down <= cfg.max_seconds + 0.060, (seed, down, up)


def test_pedal_probability():
    notes = _chords(8)
    assert pedal_passages(notes, np.random.default_rng(0), PedalConfig(probability=0.0)) == []
    assert pedal_passages([], np.random.default_rng(0), PedalConfig(probability=1.0)) == []
    pedalled = [
        bool(pedal_passages(notes, np.random.default_rng(s), PedalConfig(probability=0.7)))
        for s in range(400)
    ]
    assert 0.6 < np.mean(pedalled) < 0.8
