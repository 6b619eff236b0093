"""A sampled grand piano: notes played through the Salamander Grand Piano V3 recordings of a
Yamaha C5 (Alexander Holm, CC BY 3.0; fetched by `mtlib.assets`), for realistic piano audio.

What the recordings are (measured on all 480 note files and 88 release files):

- Notes: 16 velocity layers x 30 keys (A0, then every minor third up to C8), Ogg Vorbis, 48 kHz,
  stereo, 2.6-25.9 s long (each rings out into the noise floor). Downmixed to mono, (L+R)/2.
- Leading silence: the first sample above 1e-4 comes 0.06-6.8 ms in (median 0.8 ms), but what
  follows is key and action noise at -70..-20 dB; the hammer blow (the first 1 ms whose RMS is
  within 20 dB of the loudest 1 ms of the attack) comes 4-56 ms in (median 13.5 ms, 95th
  percentile 26 ms; the C1 files latest, 36-56 ms). Each recording is trimmed, when loaded, to
  start 1 ms before that blow, with a 1 ms fade-in from above zero: a note sounds from exactly
  sample round(onset * rate). Its -30 dB energy onset (2 ms windows, as tests/test_demo.py
  measures) then lies -0.9..+1.3 ms from the label (all 88 keys x 7 velocities, 44.1 kHz).
- Releases: rel1..rel88.ogg, 48 kHz stereo, 0.40-0.46 s, peak-normalised (peaks 0.43-1.0). They
  are broadband thumps of key and damper with no partials of any key (fitting every key's
  harmonic comb to each file finds no relation to N; the spectral centroid, 380-700 Hz, rises
  only weakly with N, correlation 0.36), so which key each belongs to cannot be heard; relN is
  played for key 20 + N (N=1: A0), as Salamander's SFZ maps them. They are loudest 60-250 ms in
  and are played from their first sample.

How a note is played (as Salamander's SFZ does, where it says; the rest is ours):

- Pitch: the nearest recorded key (at most 1 semitone away; keys outside A0..C8, which a piano
  lacks, are stretched from the end recordings) is read as if recorded at 48 kHz * 2**(semitones
  / 12) and resampled to `sample_rate`: pitch and rate change in one soxr pass. Salamander's own
  per-recording tuning corrections (a few cents) are not applied.
- Velocity: a continuous layer position (1..16), interpolated between the centres of the velocity
  ranges the SFZ gives the layers (1-26, 27-34, ..., 121-127); the two neighbouring layers are
  mixed linearly. Layers keep their recorded loudness (about 20 dB from layer 1 to layer 16).
- Release: the damper falls at the key release or, if the sustain pedal is down then, when the
  pedal lifts. The sound then decays to -60 dB in 150 ms (A0) .. 60 ms (E6) and stops. Keys from
  F6 (MIDI 89) up have no dampers (the SFZ lets them ring) and ring on. The key's release
  recording plays when the damper falls, at -37 dB with 82 % velocity tracking, 2 dB quieter per
  second the note was held (the SFZ's volume, amp_veltrack, rt_decay). A new strike of a key cuts
  its previous sound with a 30 ms decay. No note rings longer than MAX_RING_SECONDS.
- Labels keep the KEY release (note.offset); only the sound rings on under the pedal, as on a
  real piano and in MusicNet/Disklavier labels.

Speed (one shared 2-core CPU): recordings are decoded lazily (only the head a tone needs, one
(layer, key) file at a time) and each resampled (pitch, layer, rate) tone is cached in-process (up
to TONE_CACHE_BYTES), so a warm render is slicing, an envelope and adding. 60 s of two-hand tonal
piano (480 notes, pedal): 2.1 s cold (193 tones, 92 MB), 0.04 s warm, 0.7 s for a second such
piece. 60 s of random dense notes (610 notes, MIDI 36-96, velocities 40-110, pedal): 6.1 s cold
(556 tones, 309 MB), 0.08 s warm. Same input, same bits.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from mtlib.assets import PIANO_LAYERS, PIANO_RELEASE, asset_dir
from mtlib.notes import Note
from mtlib.timebase import seconds_to_samples

LOWEST_KEY, HIGHEST_KEY = 21, 108  # A0, C8: the recorded keys are LOWEST_KEY + 3k
GRID_STEP = 3
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Velocity range of each layer, from Salamander V3's SFZ (lovel/hivel per layer).
LAYER_VELOCITIES = (
    (1, 26),
    (27, 34),
    (35, 36),
    (37, 43),
    (44, 46),
    (47, 50),
    (51, 56),
    (57, 64),
    (65, 72),
    (73, 80),
    (81, 88),
    (89, 96),
    (97, 104),
    (105, 112),
    (113, 120),
    (121, 127),
)
_LAYER_CENTRES = np.array([(lo + hi) / 2 for lo, hi in LAYER_VELOCITIES])

FIRST_UNDAMPED_KEY = 89  # F6: the SFZ lets the regions centred on F#6 and above ring (no dampers)
DAMPER_SECONDS = (
    0.150,
    0.060,
)  # decay to -60 dB at A0 and at the highest damped key, linear between
RESTRIKE_SECONDS = 0.030  # a new strike of a sounding key: the old sound decays this fast
RELEASE_DB, RELEASE_VELTRACK, RELEASE_DB_PER_SECOND = -37.0, 0.82, 2.0  # the SFZ's release group

ATTACK_DB = -20.0  # the hammer blow: first 1 ms this close to the attack's loudest 1 ms
PREROLL_SECONDS = 0.001  # kept before the blow, faded in
ATTACK_SEARCH_SECONDS = 0.25  # the attack's loudest 1 ms is looked for in this head of a recording
TONE_SECONDS = (1.0, 2.0, 4.0, 8.0)  # tone lengths made: the shortest that covers a note's need
MAX_RING_SECONDS = TONE_SECONDS[-1]  # no note rings longer (the last 0.5 s fade out): bounds memory
TONE_CACHE_BYTES = (
    512 * 2**20
)  # resampled tones kept per process (1 s of tone is 176 kB at 44.1 kHz)
REPEDAL_DELAY = (0.010, 0.060)  # a generated pedal change follows its note onset by this much


@dataclass(frozen=True)
class PedalConfig:
    """How `pedal_passages` draws a sustain pedal for a piece whose score has none."""

    probability: float = (
        0.7  # chance a piece is played with generated pedal (when the score has none)
    )
    min_seconds: float = 0.8  # pedal-down passage lengths, uniform in [min, max]
    max_seconds: float = 3.0
    gap_seconds: float = 0.05  # pedal up this long between passages (a quick re-pedal)


# ---------------------------------------------------------------------------------------------
# Generated sustain pedal


def pedal_passages(
    notes: Sequence[Note], rng: np.random.Generator, cfg: PedalConfig = PedalConfig()
) -> list[tuple[float, float]]:
    """Generated sustain-pedal (down, up) intervals in seconds, sorted, non-overlapping, inside
    [first onset, last offset]; empty with probability 1 - cfg.probability.

    Pedal changes sit where pianists put them: the pedal goes down 10-60 ms after a note onset and,
    after a passage of about U(min, max) seconds, comes up 10-60 ms after the onset nearest that
    length (so the new harmony is caught and the old one cleared), to go down again `gap` later.
    Where no onset falls in [min, max] (a long-held chord), it comes up at the drawn length and
    goes down again after the next onset."""
    if not notes or rng.random() >= cfg.probability:
        return []
    onsets = np.unique(np.array([n.onset for n in notes], dtype=float))
    end = max(n.offset for n in notes)
    passages: list[tuple[float, float]] = []
    down = onsets[0] + rng.uniform(*REPEDAL_DELAY)
    while down < end:
        target = down + rng.uniform(cfg.min_seconds, cfg.max_seconds)
        change = _nearest_onset(onsets, down + cfg.min_seconds, down + cfg.max_seconds, target)
        up = min(end, target if change is None else change + rng.uniform(*REPEDAL_DELAY))
        passages.append((float(down), float(up)))
        if change is not None:
            down = up + cfg.gap_seconds
            continue
        later = onsets[onsets >= up]
        if later.size == 0:
            break
        down = later[0] + rng.uniform(*REPEDAL_DELAY)
    return passages


def _nearest_onset(onsets: np.ndarray, lo: float, hi: float, target: float) -> float | None:
    """The onset in [lo, hi] nearest `target`, or None when there is none."""
    inside = onsets[(onsets >= lo) & (onsets <= hi)]
    return None if inside.size == 0 else float(inside[np.argmin(np.abs(inside - target))])


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class _Voice:
    """One note's sound: when its damper falls and when (and how fast) its sound is cut."""

    note: Note
    release: float  # damper falls: the key release, or the pedal lift it waits for
    stop: float  # the sound starts to decay: `release`, the same key's next strike, or inf (no damper)
    fade: float  # seconds from `stop` to -60 dB
    release_noise: bool  # the key's release recording plays at `release`


def render_piano(
    notes: Sequence[Note],
    sample_rate: int = 44100,
    pedal: Sequence[tuple[float, float]] = (),
    tail_seconds: float = 1.0,
) -> np.ndarray:
    """Mono float32, not normalised: the notes played on the sampled grand, each sounding from
    sample round(onset * sample_rate). `pedal` holds sustain-pedal (down, up) seconds.

    Labels keep the KEY release (note.offset); under the pedal the sound rings on until the pedal
    lifts (or the same key is struck again), as on a real piano and in MusicNet/Disklavier labels.
    The result is round(last damper time * rate) + round(tail_seconds * rate) samples long, where
    the last damper time is the last offset, or the pedal lift it waits for. Same input, same bits."""
    if any(n.onset < 0 for n in notes):
        raise ValueError("render_piano: a note starts before 0 s")
    voices = _voices(notes, pedal)
    end = max((v.release for v in voices), default=0.0)
    out = np.zeros(
        seconds_to_samples(end, sample_rate) + seconds_to_samples(tail_seconds, sample_rate),
        np.float32,
    )
    for voice in voices:
        _add_tone(out, voice, sample_rate)
        if voice.release_noise:
            _add_release_noise(out, voice, sample_rate)
    return out


def _voices(notes: Sequence[Note], pedal: Sequence[tuple[float, float]]) -> list[_Voice]:
    """Each note's damper and cut times, from the pedal and the same key's next strike."""
    passages = sorted(pedal)
    downs = [down for down, _ in passages]
    by_key = sorted(notes, key=lambda n: (n.pitch, n.onset, n.offset, n.velocity))
    voices = []
    for i, note in enumerate(by_key):
        follower = by_key[i + 1] if i + 1 < len(by_key) else None
        next_strike = (
            follower.onset if follower is not None and follower.pitch == note.pitch else math.inf
        )
        release = _damper_time(note.offset, passages, downs)
        damped_at = release if note.pitch < FIRST_UNDAMPED_KEY else math.inf
        if next_strike < damped_at:
            voices.append(
                _Voice(note, release, next_strike, RESTRIKE_SECONDS, release < next_strike)
            )
        else:
            voices.append(_Voice(note, release, damped_at, _damper_seconds(note.pitch), True))
    return voices


def _damper_time(
    key_release: float, passages: list[tuple[float, float]], downs: list[float]
) -> float:
    """When the damper falls: at the key release, unless the pedal is down then (until it lifts)."""
    i = bisect.bisect_right(downs, key_release) - 1
    if i >= 0 and key_release < passages[i][1]:
        return passages[i][1]
    return key_release


def _damper_seconds(pitch: int) -> float:
    """Damping time (to -60 dB): long bass strings carry more energy and damp more slowly."""
    x = np.clip((pitch - LOWEST_KEY) / (FIRST_UNDAMPED_KEY - 1 - LOWEST_KEY), 0.0, 1.0)
    return float(DAMPER_SECONDS[0] + x * (DAMPER_SECONDS[1] - DAMPER_SECONDS[0]))


def _add_tone(out: np.ndarray, voice: _Voice, rate: int) -> None:
    """Mix the note's two velocity layers from its onset sample on, decayed from `stop`.

    Hand-written because no library here plays a sampler: SoundFont synths (tinysoundfont) take
    one sample per velocity range, with no cross-fade between layers and no Ogg recordings."""
    note = voice.note
    start = seconds_to_samples(note.onset, rate)
    stop = (
        max(seconds_to_samples(voice.stop, rate) - start, 0)
        if math.isfinite(voice.stop)
        else out.size
    )
    fade = seconds_to_samples(voice.fade, rate)
    need = min(out.size - start, stop + fade)
    if need <= 0:
        return
    seconds = _tone_seconds(need / rate)
    parts = [
        (w, _tone(note.pitch, layer, rate, seconds)) for layer, w in _layer_weights(note.velocity)
    ]
    n = min(need, max(tone.size for _, tone in parts))
    sound = np.zeros(n, np.float32)
    for weight, tone in parts:
        m = min(n, tone.size)
        sound[:m] += np.float32(weight) * tone[:m]
    if stop < n:
        sound[stop:] *= _decay(fade)[: n - stop]
    out[start : start + n] += sound


def _tone_seconds(need: float) -> float:
    """The shortest tone length that covers `need` seconds (the longest if none does)."""
    return next((s for s in TONE_SECONDS if s >= need), TONE_SECONDS[-1])


def _layer_weights(velocity: int) -> list[tuple[int, float]]:
    """(layer 1..16, weight) of the one or two layers a velocity mixes, weights summing to 1."""
    position = float(np.interp(velocity, _LAYER_CENTRES, np.arange(1, len(LAYER_VELOCITIES) + 1)))
    low = math.floor(position)
    frac = position - low
    return [(layer, w) for layer, w in ((low, 1.0 - frac), (low + 1, frac)) if w > 0.0]


def _add_release_noise(out: np.ndarray, voice: _Voice, rate: int) -> None:
    """The key's release recording at the damper time, quieter for soft and long-held notes."""
    note = voice.note
    start = seconds_to_samples(voice.release, rate)
    if start >= out.size:
        return
    held = max(voice.release - note.onset, 0.0)
    db = RELEASE_DB - RELEASE_DB_PER_SECOND * held
    gain = 10 ** (db / 20) * (
        (1 - RELEASE_VELTRACK) + RELEASE_VELTRACK * (note.velocity / 127) ** 2
    )
    noise = _release_tone(int(np.clip(note.pitch, LOWEST_KEY, HIGHEST_KEY)), rate)
    n = min(noise.size, out.size - start)
    out[start : start + n] += np.float32(gain) * noise[:n]


@functools.cache
def _decay(n: int) -> np.ndarray:
    """n gains falling exponentially from 1 towards -60 dB, shifted to end at 0 (a damper: fast,
    but not a click)."""
    t = np.arange(n, dtype=np.float64) / max(n, 1)
    curve = (10.0 ** (-3.0 * t) - 1e-3) / (1.0 - 1e-3)
    return _frozen(curve.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Recordings: loaded lazily, trimmed, resampled and cached


def clear_caches() -> None:
    """Forget every loaded recording and resampled tone (frees their memory)."""
    _TONES.clear()
    _release_tone.cache_clear()
    _decay.cache_clear()


def sample_key(pitch: int) -> int:
    """The recorded key a pitch is played from: the nearest on the minor-third grid."""
    step = round((min(max(pitch, LOWEST_KEY), HIGHEST_KEY) - LOWEST_KEY) / GRID_STEP)
    return LOWEST_KEY + GRID_STEP * step


def note_file(key: int, layer: int) -> str:
    """File name of a recorded key in a layer, e.g. 'D#1v8.ogg' for MIDI 27, layer 8."""
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}v{layer}.ogg"


class _ByteLru:
    """A least-recently-used cache of (seconds, tone) bounded by the bytes of its tones (they
    differ 8x in size, so a count would bound memory badly)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: OrderedDict[tuple, tuple[float, np.ndarray]] = OrderedDict()

    def get(self, key: tuple) -> tuple[float, np.ndarray] | None:
        if key in self.items:
            self.items.move_to_end(key)
        return self.items.get(key)

    def put(self, key: tuple, value: tuple[float, np.ndarray]) -> None:
        if key in self.items:
            self.bytes -= self.items.pop(key)[1].nbytes
        self.items[key] = value
        self.bytes += value[1].nbytes
        while self.bytes > self.max_bytes and len(self.items) > 1:
            self.bytes -= self.items.popitem(last=False)[1][1].nbytes

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0


_TONES = _ByteLru(TONE_CACHE_BYTES)


def _tone(pitch: int, layer: int, rate: int, seconds: float) -> np.ndarray:
    """`pitch` in `layer` at `rate`, at least `seconds` long where the recording allows: the
    cached tone if it is long enough, else one made `seconds` long that replaces it.

    A longer tone is used for a shorter need: its head is bit-identical to the shorter tone (the
    Vorbis decoder and soxr both stream from the start; tests/test_sampler.py checks it), so the
    output does not depend on what the cache holds."""
    key = (pitch, layer, rate)
    cached = _TONES.get(key)
    if cached is not None and cached[0] >= seconds:
        return cached[1]
    tone = _make_tone(pitch, layer, rate, seconds)
    _TONES.put(key, (seconds, tone))
    return tone


def _make_tone(pitch: int, layer: int, rate: int, seconds: float) -> np.ndarray:
    """The recorded key nearest `pitch` in `layer`, trimmed to its hammer blow, shifted to `pitch`
    and resampled to `rate` in one soxr pass (read as if taken at file_rate * 2**(semitones/12)),
    cut to `seconds` (faded out over its last 0.5 s at MAX_RING_SECONDS).

    Only the head of the file that this needs is decoded; the result depends on nothing but the
    arguments, so a cache miss or hit gives the same bits."""
    key = sample_key(pitch)
    ratio = 2.0 ** ((pitch - key) / 12.0)
    path = asset_dir(PIANO_LAYERS[layer - 1]) / "audio" / note_file(key, layer)
    with sf.SoundFile(path) as f:
        file_rate = f.samplerate
        frames = min(f.frames, math.ceil((ATTACK_SEARCH_SECONDS + seconds * ratio) * file_rate))
        audio = _mono(f.read(frames, dtype="float32", always_2d=True))
    trimmed = _trim_to_attack(audio, file_rate)
    tone = soxr.resample(trimmed, file_rate * ratio, rate, quality="HQ").astype(np.float32)
    tone = tone[: seconds_to_samples(seconds, rate)].copy()
    if seconds >= MAX_RING_SECONDS and tone.size == seconds_to_samples(seconds, rate):
        fade = seconds_to_samples(0.5, rate)
        tone[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return _frozen(tone)


def attack_index(audio: np.ndarray, rate: int) -> int:
    """Sample index of the hammer blow: the first 1 ms frame whose RMS is within ATTACK_DB of the
    loudest 1 ms of the first ATTACK_SEARCH_SECONDS. Before it lie silence and key and action noise."""
    win = max(rate // 1000, 1)
    n = min(audio.size, seconds_to_samples(ATTACK_SEARCH_SECONDS, rate)) // win * win
    head = audio[:n].astype(np.float64).reshape(-1, win)
    rms = np.sqrt(np.mean(head**2, axis=1))
    return int(np.argmax(rms >= rms.max() * 10 ** (ATTACK_DB / 20))) * win


def _trim_to_attack(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop everything before PREROLL_SECONDS ahead of the hammer blow (`trim_from`)."""
    preroll = seconds_to_samples(PREROLL_SECONDS, rate)
    return trim_from(audio, max(attack_index(audio, rate) - preroll, 0), rate)


def trim_from(audio: np.ndarray, start: int, rate: int) -> np.ndarray:
    """A copy of audio[start:] whose first PREROLL_SECONDS fade in (a ramp that starts above 0, so
    the first output sample is already sound). mtlib.orchestra trims its recordings with it too."""
    trimmed = audio[start:].copy()
    n = min(seconds_to_samples(PREROLL_SECONDS, rate), trimmed.size)
    trimmed[:n] *= np.arange(1, n + 1, dtype=np.float32) / (n + 1)
    return trimmed


@functools.cache
def _release_tone(key: int, rate: int) -> np.ndarray:
    """The release recording of a key (relN is key 20 + N), mono, resampled to `rate`."""
    path = asset_dir(PIANO_RELEASE) / "audio" / f"rel{key - LOWEST_KEY + 1}.ogg"
    audio, file_rate = sf.read(path, dtype="float32", always_2d=True)
    return _frozen(soxr.resample(_mono(audio), file_rate, rate, quality="HQ").astype(np.float32))


def _mono(frames: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,): the channels' mean (stereo as a sum: numpy's strided mean is 5x slower)."""
    if frames.shape[1] == 2:
        return (frames[:, 0] + frames[:, 1]) * np.float32(0.5)
    return frames.mean(axis=1, dtype=np.float32)


def _frozen(a: np.ndarray) -> np.ndarray:
    """Cached arrays are shared between notes: make them read-only."""
    a.setflags(write=False)
    return a
