"""A random, seeded "recording chain" for the demo pieces: the dry SoundFont / sampler renders are
played into a room, through a tilted EQ and maybe a light compressor, picked up with background
noise and set to a random level, so the models hear the rooms, levels, EQ and noise of real
recordings instead of one clean synthetic sound.

Labels are written from the note list and are not changed here, so nothing in the chain may move
the audio in time. Checked for pedalboard 0.9.26 (tests/test_recording.py checks it again):
  * Reverb (JUCE's Freeverb) adds the dry signal back with no delay and no gain ramp at the start;
    only the wet part comes later (its early comb taps start ~25 ms after the direct sound, as a
    room's reflections do). The output is cut to the input's length: the demo keeps a tail after
    the last note-off, and the cut reverb tail beyond it carries no label.
  * LowShelfFilter / HighShelfFilter are causal biquads: no latency, the impulse peak stays at
    lag 0 (phase shift near the pivot only).
  * Compressor (JUCE dsp::Compressor) has no look-ahead: it only changes the gain after it
    detects a peak, never delays the signal.
  * The noise is added, and the level set, sample for sample.

Order, as in a real recording: room → microphone/EQ tilt → (bus) compression → background noise
(room tone, preamp hiss, rumble) → output level. The noise comes after the compressor so the drawn
SNR is what is heard: a compressor would otherwise pump the noise up in quiet passages.

Level: the chain's RMS (dBFS) is met unless its peaks would pass PEAK_CEILING; then the piece is
scaled down to put its peak exactly at the ceiling (never clipped, never limited: a limiter would
change the note attacks the models learn onsets from), and `record` returns the chain with
`actual_level_db` set to the level the piece really has. Only loud draws are affected: on test
music with a 19 dB crest factor, 9% of the default chains were scaled down, by 1.2 dB median and
2.6 dB at most. apply_chain on 60 s at 44.1 kHz, every stage on: ~0.3 s on one CPU core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

NOISE_COLORS: dict[str, float] = {
    "white": 0.0,
    "pink": 1.0,
    "brown": 2.0,
}  # power ∝ 1 / f**exponent
NOISE_LOW_HZ = (
    20.0  # noise below this is removed: brown noise would otherwise put most of its power
)
# under 20 Hz, which no one hears (and the features drop: audio.fmin is 30 Hz), so the SNR would lie
WORK_RMS_DB = -20.0  # the piece is brought to this RMS before the chain, so a drawn compressor
# threshold means "dB relative to the piece's RMS" whatever level the renderer produced
PEAK_CEILING = 10 ** (-0.1 / 20)  # -0.1 dBFS: the loudest sample a recorded piece may have
DRY_LEVEL = 0.5  # pedalboard Reverb scales dry_level by 2: 0.5 is the dry signal at unity gain
REVERB_WIDTH = (
    1.0  # mono output: width only scales the wet part (x0.5 at 0); 1 = wet_level as given
)

_RANGE_BOUNDS: dict[str, tuple[float, float]] = {  # what each range may span, to catch typos
    "level_db": (-120.0, 0.0),  # RMS above 0 dBFS cannot fit in [-1, 1]
    "room_size": (0.0, 1.0),
    "damping": (0.0, 1.0),
    "wet": (0.0, 1.0),
    "tilt_db": (-24.0, 24.0),
    "tilt_pivot_hz": (20.0, 20000.0),
    "compress_threshold_db": (-40.0, 40.0),
    "compress_ratio": (1.0, 100.0),
    "compress_attack_ms": (0.01, 1000.0),
    "compress_release_ms": (1.0, 5000.0),
    "noise_snr_db": (-20.0, 140.0),
}


@dataclass(frozen=True)
class RecordingConfig:
    """params.yaml `demo.recording:`; each (low, high) pair is a uniform range one piece draws from
    (tilt_pivot_hz log-uniform). The defaults are the training chain. A stage is off when its range
    allows nothing: wet (0, 0), tilt_db (0, 0), compress_probability 0, noise_colors []."""

    level_db: tuple[float, float] = (-45.0, -12.0)  # final RMS, dBFS
    room_size: tuple[float, float] = (0.05, 0.75)  # Freeverb size: RT60 ~0.5 s .. ~1.9 s (measured)
    damping: tuple[float, float] = (0.2, 0.8)  # high-frequency damping of the reverb tail
    wet: tuple[float, float] = (0.0, 0.35)  # reverb wet level; the dry signal stays at unity gain
    tilt_db: tuple[float, float] = (
        -6.0,
        6.0,
    )  # low shelf -x/2 dB, high shelf +x/2 dB: + is brighter
    tilt_pivot_hz: tuple[float, float] = (500.0, 2000.0)  # both shelves' corner frequency
    compress_probability: float = 0.5  # chance of light compression
    compress_threshold_db: tuple[float, float] = (
        0.0,
        9.0,
    )  # relative to the piece's RMS (peak detector)
    compress_ratio: tuple[float, float] = (1.5, 4.0)
    compress_attack_ms: tuple[float, float] = (5.0, 30.0)  # slow enough to let note attacks through
    compress_release_ms: tuple[float, float] = (50.0, 300.0)
    noise_snr_db: tuple[float, float] = (
        20.0,
        60.0,
    )  # background noise vs the music, RMS over the piece
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")  # one drawn per piece, equal odds

    def __post_init__(self) -> None:
        for name in _RANGE_BOUNDS:
            object.__setattr__(self, name, _checked_range(name, getattr(self, name)))
        p = self.compress_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(
                f"demo.recording.compress_probability must be a number in [0, 1], got {p!r}"
            )
        object.__setattr__(self, "compress_probability", float(p))
        object.__setattr__(self, "noise_colors", _checked_colors(self.noise_colors))


def _checked_range(name: str, value: Any) -> tuple[float, float]:
    """A (low, high) pair of finite numbers inside _RANGE_BOUNDS[name]; YAML gives a list."""
    where = f"demo.recording.{name}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{where} must be a [low, high] pair, got {value!r}")
    if any(
        isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        for v in value
    ):
        raise ValueError(f"{where} must hold two finite numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"{where}: low {low} is above high {high}")
    bound_low, bound_high = _RANGE_BOUNDS[name]
    if low < bound_low or high > bound_high:
        raise ValueError(
            f"{where} must lie within [{bound_low}, {bound_high}], got [{low}, {high}]"
        )
    return low, high


def _checked_colors(value: Any) -> tuple[str, ...]:
    """Known noise colour names; an empty list turns the noise off."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"demo.recording.noise_colors must be a list of names, got {value!r}")
    unknown = [c for c in value if c not in NOISE_COLORS]
    if unknown:
        raise ValueError(
            f"demo.recording.noise_colors: unknown colour(s) {unknown!r}; "
            f"known: {', '.join(NOISE_COLORS)}"
        )
    return tuple(value)


# The unseen-timbre test split is recorded in a hall larger and wetter than any training room:
# room_size 0.85-0.92 (Freeverb RT60 ~2.8-4.2 s, measured) against training's 0.05-0.75
# (~0.5-1.9 s), and wet 0.3-0.45 against 0-0.35. Everything else is the training chain, so a
# score drop on that split is the room's doing.
UNSEEN_ROOM = RecordingConfig(room_size=(0.85, 0.92), wet=(0.3, 0.45))


@dataclass(frozen=True)
class Chain:
    """One piece's drawn recording settings, plain numbers for the metadata and logs.

    actual_level_db is None until `record` sets it: the RMS the piece really got, below level_db
    when the drawn level would have pushed the peak over PEAK_CEILING. The compressor values are
    drawn even when compress is False, so every piece uses the same number of draws."""

    level_db: float
    room_size: float
    damping: float
    wet: float
    tilt_db: float
    tilt_pivot_hz: float
    compress: bool
    compress_threshold_db: float
    compress_ratio: float
    compress_attack_ms: float
    compress_release_ms: float
    noise_color: str | None  # None: no noise
    noise_snr_db: float
    actual_level_db: float | None = None

    def describe(self) -> dict[str, Any]:
        """The settings as a flat dict of plain Python values (JSON/CSV-ready)."""
        return asdict(self)


def draw_chain(rng: np.random.Generator, cfg: RecordingConfig) -> Chain:
    """One piece's settings from `cfg`, in a fixed order of draws (same rng state → same chain)."""

    def uniform(name: str) -> float:
        low, high = getattr(cfg, name)
        return float(rng.uniform(low, high))

    level, room, damping, wet, tilt = (
        uniform(n) for n in ("level_db", "room_size", "damping", "wet", "tilt_db")
    )
    pivot = float(
        np.exp(rng.uniform(*np.log(cfg.tilt_pivot_hz)))
    )  # log-uniform: frequencies are heard in ratios
    compress = bool(rng.random() < cfg.compress_probability)
    threshold, ratio, attack, release = (
        uniform(n)
        for n in (
            "compress_threshold_db",
            "compress_ratio",
            "compress_attack_ms",
            "compress_release_ms",
        )
    )
    snr = uniform("noise_snr_db")
    color = str(cfg.noise_colors[rng.integers(len(cfg.noise_colors))]) if cfg.noise_colors else None
    return Chain(
        level,
        room,
        damping,
        wet,
        tilt,
        pivot,
        compress,
        threshold,
        ratio,
        attack,
        release,
        color,
        snr,
    )


def apply_chain(
    audio: np.ndarray, sample_rate: int, chain: Chain, rng: np.random.Generator
) -> np.ndarray:
    """Dry mono float32 → recorded mono float32 in [-1, 1], same length, not shifted in time.
    The noise is drawn from `rng`. See `record` for the level actually reached."""
    return record(audio, sample_rate, chain, rng)[0]


def record(
    audio: np.ndarray, sample_rate: int, chain: Chain, rng: np.random.Generator
) -> tuple[np.ndarray, Chain]:
    """apply_chain, also returning the chain with actual_level_db filled in (for the metadata).
    A silent piece stays silent: it has no level to set and no music to measure an SNR against."""
    x = _checked_audio(audio, sample_rate, chain)
    if not np.any(x):
        return x.copy(), replace(chain, actual_level_db=None)
    x = _scaled_to_rms(x, WORK_RMS_DB)
    x = _room(x, sample_rate, chain)
    x = _tilt(x, sample_rate, chain)
    x = _compress(x, sample_rate, chain)
    x = _add_noise(x, sample_rate, chain, rng)
    out, actual_db = _set_level(x, chain.level_db)
    return out, replace(chain, actual_level_db=actual_db)


def _checked_audio(audio: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
    """Mono, finite float32; a pivot at or over Nyquist would make the shelf filters meaningless."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"recording chain: expected mono audio (1-D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("recording chain: audio holds NaN or infinite samples")
    if chain.tilt_pivot_hz >= sample_rate / 2:
        raise ValueError(
            f"recording chain: tilt pivot {chain.tilt_pivot_hz:.0f} Hz is at or over "
            f"Nyquist for {sample_rate} Hz audio"
        )
    return x.astype(np.float32, copy=False)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _scaled_to_rms(x: np.ndarray, rms_db: float) -> np.ndarray:
    """x with RMS at rms_db dBFS (no clipping: float, before the output stage)."""
    return (x * (10 ** (rms_db / 20) / _rms(x))).astype(np.float32)


def _room(x: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
    """Freeverb room: the dry signal at unity gain, undelayed, plus the wet tail (skipped at wet 0
    so a dry chain is bit-exact)."""
    if chain.wet <= 0:
        return x
    from pedalboard import Reverb

    reverb = Reverb(
        room_size=chain.room_size,
        damping=chain.damping,
        wet_level=chain.wet,
        dry_level=DRY_LEVEL,
        width=REVERB_WIDTH,
    )
    return reverb(x, sample_rate)


def _tilt(x: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
    """EQ tilt about the pivot: low shelf -tilt/2 dB, high shelf +tilt/2 dB (a brighter or darker
    microphone / room / master); the two ends differ by tilt dB."""
    if chain.tilt_db == 0:
        return x
    from pedalboard import HighShelfFilter, LowShelfFilter, Pedalboard

    board = Pedalboard(
        [
            LowShelfFilter(cutoff_frequency_hz=chain.tilt_pivot_hz, gain_db=-chain.tilt_db / 2),
            HighShelfFilter(cutoff_frequency_hz=chain.tilt_pivot_hz, gain_db=chain.tilt_db / 2),
        ]
    )
    return board(x, sample_rate)


def _compress(x: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
    """Light downward compression; the threshold is relative to this signal's RMS, so it acts on
    the louder passages of every piece alike."""
    if not chain.compress:
        return x
    from pedalboard import Compressor

    threshold = 20 * math.log10(_rms(x)) + chain.compress_threshold_db
    compressor = Compressor(
        threshold_db=threshold,
        ratio=chain.compress_ratio,
        attack_ms=chain.compress_attack_ms,
        release_ms=chain.compress_release_ms,
    )
    return compressor(x, sample_rate)


def _add_noise(
    x: np.ndarray, sample_rate: int, chain: Chain, rng: np.random.Generator
) -> np.ndarray:
    """Background noise at chain.noise_snr_db below the music's RMS (over the whole piece)."""
    if chain.noise_color is None:
        return x
    noise = colored_noise(x.size, sample_rate, chain.noise_color, rng)
    scale = _rms(x) / 10 ** (chain.noise_snr_db / 20)
    return (x + scale * noise).astype(np.float32)


def colored_noise(n: int, sample_rate: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """n samples of unit-RMS Gaussian noise with power ∝ 1/f**NOISE_COLORS[color], nothing below
    NOISE_LOW_HZ. Hand-written (white noise shaped in the FFT domain, ~10 lines) rather than a new
    dependency: colorednoise is not in requirements.txt, and the low cut and the rng are ours."""
    if color not in NOISE_COLORS:
        raise ValueError(f"unknown noise colour {color!r}; known: {', '.join(NOISE_COLORS)}")
    from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

    size = next_fast_len(n, real=True)  # a prime length would make the FFT several times slower
    spectrum = rfft(rng.standard_normal(size, dtype=np.float32))  # float32: half the FFT time
    freqs = rfftfreq(size, 1 / sample_rate)
    gain = np.zeros(freqs.size, np.float32)
    audible = freqs >= NOISE_LOW_HZ
    gain[audible] = freqs[audible] ** (-NOISE_COLORS[color] / 2)
    noise = irfft(spectrum * gain, size)[:n]
    return (noise / max(_rms(noise), 1e-30)).astype(np.float32)


def _set_level(x: np.ndarray, level_db: float) -> tuple[np.ndarray, float]:
    """x at level_db dBFS RMS, or lower if its peak would pass PEAK_CEILING (scaled down, never
    clipped); returns the audio and its actual RMS in dBFS."""
    gain = 10 ** (level_db / 20) / _rms(x)
    peak = float(np.max(np.abs(x)))
    gain = min(gain, PEAK_CEILING / peak)
    out = np.clip(x * gain, -1.0, 1.0).astype(np.float32)  # the clip only guards float rounding
    return out, 20 * math.log10(_rms(out))
