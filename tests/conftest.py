"""Shared fixtures: small MusicNet-format folders written in the test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]


def sine_notes_audio(notes, rate: int, seconds: float) -> np.ndarray:
    """A mono signal with a decaying sine per note (enough for features and onset checks)."""
    t = np.arange(int(seconds * rate)) / rate
    audio = np.zeros_like(t, dtype=np.float32)
    for n in notes:
        f = 440.0 * 2 ** ((n.pitch - 69) / 12)
        m = (t >= n.onset) & (t < n.offset)
        audio[m] += (
            0.2 * np.sin(2 * np.pi * f * (t[m] - n.onset)) * np.exp(-3 * (t[m] - n.onset))
        ).astype(np.float32)
    return audio


def energy_onset(audio: np.ndarray, rate: int, level_db: float = -30.0) -> float:
    """Seconds at which a 2 ms RMS envelope first reaches `level_db` below its peak: where a
    rendered note's sound has begun (the demo's sources are held to within 10 ms of the label)."""
    win = int(0.002 * rate)
    frames = audio[: audio.size // win * win].reshape(-1, win)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return int(np.argmax(rms >= rms.max() * 10 ** (level_db / 20))) * win / rate


def spectral_f0(audio: np.ndarray, rate: int, expected_hz: float) -> float:
    """The strongest spectral peak within 4 semitones of `expected_hz` (parabolic interpolation on
    a 16x zero-padded spectrum), so a note a semitone or more off is caught, not just detuned."""
    n = 16 * audio.size
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size), n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = np.flatnonzero(
        (freqs > expected_hz * 2 ** (-4 / 12)) & (freqs < expected_hz * 2 ** (4 / 12))
    )
    k = band[np.argmax(spec[band])]
    a, b, c = np.log(spec[k - 1 : k + 2])
    return float(freqs[k] + (a - c) / (2 * (a - 2 * b + c)) * (freqs[1] - freqs[0]))


def write_musicnet_track(
    root: Path, split: str, tid: str, notes, rate: int = 44100, seconds: float = 3.0, audio=None
):
    """Write one track (WAV + label CSV) in the MusicNet layout; returns (wav, csv) paths."""
    from mtlib.audio import write_wav
    from mtlib.musicnet import write_labels

    wav = root / f"{split}_data" / f"{tid}.wav"
    csv = root / f"{split}_labels" / f"{tid}.csv"
    if audio is None:
        audio = sine_notes_audio(notes, rate, seconds)
    write_wav(wav, audio, rate)
    write_labels(csv, notes, rate)
    (root / f"{'test' if split == 'train' else 'train'}_data").mkdir(parents=True, exist_ok=True)
    (root / f"{'test' if split == 'train' else 'train'}_labels").mkdir(parents=True, exist_ok=True)
    return wav, csv


@pytest.fixture
def tiny_musicnet(tmp_path):
    """A MusicNet root with two train tracks and one test track of a few seconds of sines."""
    from mtlib.notes import Note

    root = tmp_path / "musicnet"
    for split, tid, base in (("train", "1", 60), ("train", "2", 64), ("test", "3", 67)):
        notes = [
            Note(0.25, 0.75, base, 1),
            Note(0.5, 1.5, base + 4, 41),
            Note(1.0, 2.5, base + 7, 1),
        ]
        write_musicnet_track(root, split, tid, notes)
    return root
