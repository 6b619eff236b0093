"""Recorded instruments: notes played through recordings of a real piano, violin, cello, double
bass, clarinet and bassoon, instruments that sound like instruments, not like a General MIDI
SoundFont. The demo's `test_recorded` split plays the test pieces on them (no training piece does
by default: a real timbre the models never heard); `demo.other_sources` may also train on them.

The recordings are tonejs-instruments' (Nicholas Brosowsky, collected from public-domain sources,
edited for consistency; samples CC BY 3.0), one npm package per instrument
(`tonejs-instrument-<name>-mp3`, fetched and checksum-verified by `mtlib.assets`). What they are
(measured on all 86 files used here):

- One mono MP3 per recorded pitch, 44.1 kHz, a single dynamic: a piano C1-C8 chromatically (85
  files, 2-16 s, each ringing out; not the Salamander grand of mtlib.sampler), violin G3-C7 every 2-5 semitones
  (15 files, 11-17 s), cello C2-C5 nearly chromatic (35, 2.4-4.3 s), double bass F#1-B3 (13, 6.6-17
  s), clarinet D3-F#6 every 3-4 semitones (11, 7-12 s), bassoon G2-C5 (10, 5.5-11 s). Each is one
  long note, bowed or blown, with its own attack and a natural end. Cello files named "... v2"
  (a second take) are not used.
- Attacks are real: -30 dB of the note's peak is reached 26-68 ms after the first decoded sample
  (100-180 ms for a few wind notes), -6 dB 30-590 ms after it (cello slowest): a bowed note swells.

How a note is played (hand-written: no library here plays a multi-sample instrument from MP3s;
tinysoundfont needs a SoundFont):

- Which recording: the instrument's recorded pitch nearest the note, read as if recorded at 44.1
  kHz * 2**(semitones / 12) and resampled to `sample_rate` in one soxr pass (as mtlib.sampler does).
  A program may borrow from a related instrument when its own recordings are far away
  (`PROGRAMS`: the viola from violin and cello, the cello's top from the violin, the double bass's
  top from the cello), at a cost of BORROW_SEMITONES semitones of shift per step down the list.
- Onset: each recording is trimmed, when loaded, to start 1 ms before its first 5 ms within
  ONSET_DB of the recording's loudest 5 ms (`onset_index`), so the note's -30 dB energy onset lies on its label
  (tests/test_orchestra.py: within 10 ms, as for the SoundFonts and the sampled piano). The slow
  swell after it is kept: that is what a bowed string sounds like.
- Length: a note longer than its recording's sustain (the first SUSTAIN_FRACTION of it, before the
  recorded ending) repeats the sustain's second half, cross-faded over LOOP_CROSSFADE_SECONDS.
- Release: at the note's offset the sound decays to -60 dB in RELEASE_SECONDS (strings ring a
  little longer than reeds stop; the piano's damper). Under a sustain pedal the demo moves a piano
  note's sounding offset to the pedal lift (`mtlib.demo.sounding_until`); its label keeps the key
  release.
- Velocity: amplitude (velocity / 127) ** 2, as General MIDI synthesisers scale it (the
  recordings have one dynamic).

Decoding is held to 16-bit (libsndfile's MP3 decoder is read as int16): the same bits whichever
decoder routine the CPU selects. Decoded, trimmed recordings and resampled tones are cached per
process; a cache hit or miss gives the same bits.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mtlib.assets import ORCHESTRA, asset_dir
from mtlib.notes import Note
from mtlib.sampler import PREROLL_SECONDS, _ByteLru, _decay, _frozen, _mono, trim_from
from mtlib.timebase import seconds_to_samples

# GM program (1-based) → the instruments whose recordings may play it, own first.
PROGRAMS: dict[int, tuple[str, ...]] = {
    1: ("piano",),
    41: ("violin",),
    42: ("violin", "cello"),  # the viola: no recordings of its own; violin above G3, cello below
    43: ("cello", "violin"),
    44: ("contrabass", "cello"),
    71: ("bassoon",),
    72: ("clarinet",),
}
BORROW_SEMITONES = 4  # a borrowed instrument's recording counts as this many semitones further away
RELEASE_SECONDS = {  # to -60 dB after the label's offset (for the piano: its damper)
    "piano": 0.15,
    "violin": 0.25,
    "cello": 0.3,
    "contrabass": 0.35,
    "clarinet": 0.1,
    "bassoon": 0.1,
}
ONSET_DB = -27.0  # the trimmed recording starts 1 ms before the first 5 ms this close to its peak
ONSET_WINDOW = 5  # 1 ms frames averaged (onset_index)
SUSTAIN_FRACTION = 0.8  # of a trimmed recording: what comes after is its recorded ending
LOOP_CROSSFADE_SECONDS = 0.1
TONE_CACHE_BYTES = 256 * 2**20
NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_FILE_NAME = re.compile(r"^([A-G])(s?)(-?\d)$")  # "A3", "Cs4" (C#4); "F2 v2" (a second take) is not


def programs() -> tuple[int, ...]:
    """The GM programs these recordings can play."""
    return tuple(sorted(PROGRAMS))


def file_pitch(stem: str) -> int | None:
    """MIDI pitch of a recording's file name ("A3" → 57, "Cs4" → 61); None for other files."""
    m = _FILE_NAME.match(stem)
    if not m:
        return None
    letter, sharp, octave = m.groups()
    return 12 * (int(octave) + 1) + NOTE_NAMES[letter] + (1 if sharp else 0)


@functools.cache
def recorded_pitches(instrument: str) -> dict[int, Path]:
    """{MIDI pitch: file} of an instrument's recordings (AssetError if its package is missing)."""
    folder = asset_dir(ORCHESTRA[instrument])
    found = {}
    for path in sorted(folder.glob("*.mp3")):
        pitch = file_pitch(path.stem)
        if pitch is not None:
            found[pitch] = path
    if not found:
        raise FileNotFoundError(f"{folder}: no recordings named like A3.mp3 for {instrument}")
    return found


def choose_recording(program: int, pitch: int) -> tuple[str, int]:
    """(instrument, recorded pitch) that plays `pitch` for `program`: the least shift, a borrowed
    instrument's recordings counting BORROW_SEMITONES further per step down PROGRAMS' list; ties go
    to the lower recording (read faster, it stays brighter, not duller)."""
    if program not in PROGRAMS:
        raise ValueError(f"program {program} has no recordings (these have: {programs()})")
    best = None
    for rank, instrument in enumerate(PROGRAMS[program]):
        for recorded in recorded_pitches(instrument):
            cost = (abs(pitch - recorded) + BORROW_SEMITONES * rank, recorded)
            if best is None or cost < best[0]:
                best = (cost, instrument, recorded)
    assert best is not None
    return best[1], best[2]


def render_orchestra(
    notes: Sequence[Note], sample_rate: int = 44100, tail_seconds: float = 1.0
) -> np.ndarray:
    """Mono float32, not normalised: each note on its program's recordings, sounding from sample
    round(onset * sample_rate) and released at its offset. The result is round(last offset *
    rate) + round(tail_seconds * rate) samples long. Same input, same bits."""
    if any(n.onset < 0 for n in notes):
        raise ValueError("render_orchestra: a note starts before 0 s")
    end = max((n.offset for n in notes), default=0.0)
    out = np.zeros(
        seconds_to_samples(end, sample_rate) + seconds_to_samples(tail_seconds, sample_rate),
        np.float32,
    )
    for note in sorted(notes, key=lambda n: (n.onset, n.program, n.pitch, n.offset)):
        _add_note(out, note, sample_rate)
    return out


def _add_note(out: np.ndarray, note: Note, rate: int) -> None:
    instrument, recorded = choose_recording(note.program, note.pitch)
    tone = _tone(instrument, recorded, note.pitch, rate)
    start = seconds_to_samples(note.onset, rate)
    held = max(seconds_to_samples(note.offset, rate) - start, 1)
    fade = seconds_to_samples(RELEASE_SECONDS[instrument], rate)
    n = min(held + fade, out.size - start)
    if n <= 0:
        return
    sound = _sustained(tone, n, rate)
    if held < n:
        sound[held:] *= _decay(fade)[: n - held]
    out[start : start + n] += np.float32((note.velocity / 127) ** 2) * sound


def _sustained(tone: np.ndarray, n: int, rate: int) -> np.ndarray:
    """The first n samples of the tone (a writable copy); past its sustain, the sustain's second
    half again and again, each repeat cross-faded into the last over LOOP_CROSSFADE_SECONDS."""
    sustain = int(tone.size * SUSTAIN_FRACTION)
    if n <= sustain or sustain < 4:
        out = np.zeros(n, np.float32)
        m = min(n, tone.size)
        out[:m] = tone[:m]
        return out
    loop = tone[sustain // 2 : sustain]
    xf = min(seconds_to_samples(LOOP_CROSSFADE_SECONDS, rate), loop.size // 2)
    ramp = np.linspace(0.0, 1.0, xf, dtype=np.float32)
    out = np.zeros(n + loop.size, np.float32)
    out[:sustain] = tone[:sustain]
    pos = sustain
    while pos < n:
        out[pos - xf : pos] = out[pos - xf : pos] * (1 - ramp) + loop[:xf] * ramp
        out[pos : pos + loop.size - xf] = loop[xf:]
        pos += loop.size - xf
    return out[:n]


_TONES = _ByteLru(TONE_CACHE_BYTES)


def _tone(instrument: str, recorded: int, pitch: int, rate: int) -> np.ndarray:
    key = (instrument, recorded, pitch, rate)
    cached = _TONES.get(key)
    if cached is not None:
        return cached[1]
    ratio = 2.0 ** ((pitch - recorded) / 12.0)
    audio, file_rate = _recording(instrument, recorded)
    tone = soxr.resample(audio, file_rate * ratio, rate, quality="HQ").astype(np.float32)
    tone = _frozen(tone)
    _TONES.put(key, (math.inf, tone))
    return tone


@functools.lru_cache(maxsize=128)
def _recording(instrument: str, recorded: int) -> tuple[np.ndarray, int]:
    """The recording, mono float32 from 16-bit decoding, trimmed to start PREROLL_SECONDS before
    its onset (`onset_index`; later if that is digital silence), the preroll faded in from above
    zero."""
    path = recorded_pitches(instrument)[recorded]
    pcm, file_rate = sf.read(path, dtype="int16", always_2d=True)
    audio = _mono(pcm.astype(np.float32)) / np.float32(32768)
    start = max(onset_index(audio, file_rate) - seconds_to_samples(PREROLL_SECONDS, file_rate), 0)
    start += int(np.argmax(audio[start:] != 0))  # past digital silence: the first sample is sound
    return _frozen(trim_from(audio, start, file_rate)), file_rate


def onset_index(audio: np.ndarray, rate: int) -> int:
    """Sample index where the note begins: the first 1 ms frame from which the next ONSET_WINDOW
    frames' mean power is within ONSET_DB of the loudest such mean. A reed or bow starts with 10-30
    ms of breath or bow noise hovering around -30 dB; averaging over 5 ms finds where the tone
    rises out of it rather than its first louder millisecond (a 1 ms criterion put the rendered
    -30 dB onset up to 31 ms after the label)."""
    win = max(rate // 1000, 1)
    n = audio.size // win * win
    power = np.mean(audio[:n].astype(np.float64).reshape(-1, win) ** 2, axis=1)
    k = min(ONSET_WINDOW, power.size)
    ahead = np.convolve(power, np.ones(k) / k, mode="valid")
    return int(np.argmax(ahead >= ahead.max() * 10 ** (ONSET_DB / 10))) * win


def clear_caches() -> None:
    """Forget every decoded recording and resampled tone."""
    _TONES.clear()
    _recording.cache_clear()
    recorded_pitches.cache_clear()
