"""Samples ↔ seconds ↔ frames: the one home of every time conversion.

MusicNet labels hold sample indices at the audio file's own rate (44.1 kHz); features are
computed after resampling to `sample_rate` with hop `hop_length`. A label at sample `s` of a file
at `file_rate` lies in feature frame floor(s * sample_rate / file_rate / hop_length).
"""

from __future__ import annotations

import math

import numpy as np


def samples_to_seconds(samples, file_rate: int):
    """Sample indices at `file_rate` → seconds."""
    return (
        np.asarray(samples, dtype=float) / float(file_rate)
        if np.ndim(samples)
        else samples / float(file_rate)
    )


def seconds_to_samples(seconds, rate: int):
    """Seconds → nearest sample index at `rate` (what a MusicNet CSV stores)."""
    if np.ndim(seconds):
        return np.rint(np.asarray(seconds, dtype=float) * rate).astype(np.int64)
    return int(round(seconds * rate))


def sample_to_frame(samples, file_rate: int, sample_rate: int, hop_length: int):
    """Sample index in a file at `file_rate` → feature frame after resampling to `sample_rate`.

    floor(samples * sample_rate / file_rate / hop_length), computed in exact integer arithmetic
    so that a label exactly on a frame boundary never falls one frame early."""
    if np.ndim(samples):
        s = np.asarray(samples, dtype=np.int64)
        return (s * int(sample_rate)) // (int(file_rate) * int(hop_length))
    return (int(samples) * int(sample_rate)) // (int(file_rate) * int(hop_length))


def seconds_to_frame(seconds, sample_rate: int, hop_length: int):
    """Seconds → the feature frame containing that instant."""
    fps = sample_rate / hop_length
    if np.ndim(seconds):
        return np.floor(np.asarray(seconds, dtype=float) * fps + 1e-9).astype(np.int64)
    return int(math.floor(seconds * fps + 1e-9))


def frame_to_seconds(frames, sample_rate: int, hop_length: int):
    """Feature frame index → the time of its start in seconds."""
    if np.ndim(frames):
        return np.asarray(frames, dtype=float) * hop_length / sample_rate
    return frames * hop_length / sample_rate


def frames_per_second(sample_rate: int, hop_length: int) -> float:
    return sample_rate / hop_length


def num_frames(num_samples: int, sample_rate: int, hop_length: int) -> int:
    """Frames the feature function yields for `num_samples` samples at `sample_rate` (centered STFT)."""
    return num_samples // hop_length + 1
