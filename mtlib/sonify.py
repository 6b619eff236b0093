"""Hear a transcription: its notes rendered with the project's own synthesis, and an A/B file with
the recording on the left and the transcription on the right (`mt transcribe --sonify`).

The synthesis is the demo data's (`mtlib.demo.render_piece`): a note without an instrument (a
transcription carries none, program 0) or a piano note plays on the sampled grand, any other
General MIDI program through the TimGM6mb SoundFont, both sample-accurate, so a note sounds
from round(onset * rate) like the labels the models learnt from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtlib.notes import Note

SONIFY_SOUNDFONT = "TimGM6mb"  # instruments other than piano
AB_PEAK = 0.98  # the A/B file is scaled down as a whole if either side would clip


def sonify(notes: Sequence[Note], sample_rate: int, n_samples: int) -> np.ndarray:
    """Mono float32 of exactly `n_samples` (the input's length: a note ringing past its end is
    cut, silence fills the rest); all zeros for no notes."""
    from dataclasses import replace

    from mtlib.demo import SAMPLER, render_piece

    out = np.zeros(n_samples, np.float32)
    if not notes:
        return out
    played = [replace(n, program=n.program or 1) for n in notes]  # unknown instrument: piano
    sources = {p: SAMPLER if p == 1 else SONIFY_SOUNDFONT for p in {n.program for n in played}}
    audio = render_piece(played, sources, sample_rate)[:n_samples]
    out[: audio.size] = audio
    return out


def ab_pair(original: np.ndarray, sonified: np.ndarray) -> np.ndarray:
    """(n, 2) float32: the recording (mono) left, the transcription right at the recording's RMS
    level, both scaled together below AB_PEAK so neither clips and their balance is kept."""
    original = np.asarray(original, np.float32)
    rms = [
        float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
        for x in (original, sonified)
    ]
    right = sonified * np.float32(rms[0] / rms[1]) if rms[1] > 0 else sonified
    pair = np.stack([original, right.astype(np.float32)], axis=1)
    peak = float(np.abs(pair).max()) if pair.size else 0.0
    return pair * np.float32(AB_PEAK / peak) if peak > AB_PEAK else pair
