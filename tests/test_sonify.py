"""mtlib.sonify: a transcription rendered at the input's rate and length, its notes sounding
where the transcription puts them, and the level-matched A/B file."""

from __future__ import annotations

import numpy as np
import pytest

from mtlib.notes import Note
from mtlib.sonify import AB_PEAK, ab_pair, sonify


def energy_onset(audio: np.ndarray, rate: int, level_db: float = -30.0) -> float:
    """Seconds at which a 2 ms RMS envelope first reaches `level_db` below its peak."""
    win = int(0.002 * rate)
    frames = audio[: audio.size // win * win].reshape(-1, win)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return int(np.argmax(rms >= rms.max() * 10 ** (level_db / 20))) * win / rate


@pytest.mark.parametrize("rate", [44100, 16000])
def test_notes_sound_where_the_transcription_puts_them(rate):
    """Unknown instrument (program 0) plays as piano, a violin (41) through the SoundFont; each
    note's energy onset lies within 10 ms of its onset; the length is the input's."""
    notes = [Note(0.5, 0.9, 60, 0), Note(1.7, 2.1, 67, 41), Note(2.9, 3.3, 72, 0)]
    n = int(3.6 * rate)
    audio = sonify(notes, rate, n)
    assert audio.shape == (n,) and audio.dtype == np.float32 and np.isfinite(audio).all()
    for note in notes:
        a, b = int((note.onset - 0.3) * rate), int((note.onset + 0.5) * rate)
        assert abs(a / rate + energy_onset(audio[a:b], rate) - note.onset) < 0.010, note
    assert np.abs(audio[: int(0.45 * rate)]).max() < 1e-4  # nothing before the first note
    short = sonify(notes, rate, int(1.0 * rate))  # a note ringing past the end is cut
    assert short.size == rate and np.array_equal(short[: int(0.6 * rate)], audio[: int(0.6 * rate)])
    assert not sonify([], rate, 100).any()


def test_ab_pair_is_the_recording_left_and_the_transcription_right_at_its_level():
    rng = np.random.default_rng(0)
    original = (0.05 * rng.standard_normal(8000)).astype(np.float32)
    rendered = (0.5 * rng.standard_normal(8000)).astype(np.float32)
    pair = ab_pair(original, rendered)
    assert pair.shape == (8000, 2)
    np.testing.assert_array_equal(pair[:, 0], original)
    rms = np.sqrt(np.mean(pair.astype(np.float64) ** 2, axis=0))
    assert rms[1] == pytest.approx(rms[0], rel=1e-5)
    loud = ab_pair(original * 30, rendered)  # would clip: both scaled together
    assert np.abs(loud).max() == pytest.approx(AB_PEAK, rel=1e-5)
    lrms = np.sqrt(np.mean(loud.astype(np.float64) ** 2, axis=0))
    assert lrms[1] == pytest.approx(lrms[0], rel=1e-5)
    silent = ab_pair(original, np.zeros(8000, np.float32))  # nothing transcribed: silence right
    assert not silent[:, 1].any()
