"""The one feature function: audio → log spectrogram (log-mel or log-CQT), shared by the segment
stage and `mt transcribe` (so training and inference never see two definitions of a frame).

Definition (record it with any model trained on it, see `FeatureConfig.describe`):
  * `audio.features: logmel` (the default): torchaudio MelSpectrogram, power 2, Hann window,
    `mel_scale="slaney"`, `norm="slaney"` (librosa's defaults, so
    `librosa.feature.melspectrogram(htk=False, norm="slaney")` agrees). Its n_mels bins are
    ~23 Hz apart below 1 kHz, so below about G4 neighbouring semitones share a bin;
  * `audio.features: cqt`: a constant-Q transform (nnAudio's CQT1992v2: one Hann-windowed
    complex kernel per bin, L1-normalised and scaled by sqrt(kernel length) as librosa.cqt's
    default `scale=True`, so `librosa.cqt` agrees), `bins_per_semitone` bins per semitone
    from `cqt_fmin` (A0 = 27.5 Hz: bin (midi - 21) * bins_per_semitone is centred on that
    pitch) over `cqt_octaves` octaves, power |CQT|^2. Pitch is an axis in every register; the
    price is time resolution at the bottom (the A0 kernel is Q*sr/fmin samples, ~1.9 s at the
    defaults; `cqt_filter_scale` < 1 shortens every kernel by that factor) and compute;
  * `audio.features: hcqt`: the same log-CQT (the stored features are identical), read by the
    model as a harmonic CQT as in Basic Pitch (Bittner et al. 2022): one input channel per
    entry of `harmonics`, channel h shifted down by round(bins_per_octave * log2 h) bins, so
    the h-th harmonic of the pitch at bin k sits at bin k of channel h and the first 3x3
    convolution sees a note's partials in one place (`FeatureConfig.harmonic_shifts`,
    `mtlib.models.encoder.harmonic_stack`). Stacking in the model keeps the features on disk
    at one channel; bins shifted past the top read as the per-bin training mean (0 after the
    encoder's normalisation);
  * centred frames with zero padding of window//2 each side (librosa's `pad_mode="constant"`;
    the window is n_fft for logmel, the CQT's kernel width for cqt), so frame t is centred on
    sample t*hop and a signal of N samples gives N//hop + 1 frames (`mtlib.timebase.num_frames`)
    for either kind;
  * level normalisation (`level_norm`, on by default): the power (mel or CQT) of a whole file is
    scaled so that its mean is LEVEL_REF, i.e. the log floor sits LEVEL_DB below the file's mean
    power, before the log. A gain multiplies every power by the same factor, so a recording at
    -45 dBFS and the same one at -10 dBFS give the same features (to float rounding) and the same
    notes; real recordings come at any level, the training data at many. Digital silence (no
    power above `silent_power(cfg)`) is left unscaled, so it stays silent instead of amplified noise;
  * natural log of (power + 1e-6): smooth at silence, and the floor sits ~80 dB below a
    moderately loud note, like librosa's usual `top_db=80`. Per-bin normalisation is left to
    the model (statistics come from `mtlib.dataset.feature_stats`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOG_FLOOR = 1e-6
LEVEL_DB = 80.0  # level_norm: the log floor sits this far below a file's mean power
LEVEL_REF = LOG_FLOOR * 10.0 ** (LEVEL_DB / 10.0)
SILENT_POWER = 1e-5  # logmel: no mel power above this (ln = -11.5: a -100 dBFS sine exceeds it) = digital silence
# cqt: the same meaning on the CQT's scale (a sine of amplitude A has power A^2/4 * kernel length
# in its bin, white noise of std s ~1.5 s^2 in every bin). Measured at the defaults: a -100 dBFS
# sine gives 3e-9 in the top bin (shortest kernel, ~120 samples; 1.5e-9 at cqt_filter_scale 0.5),
# 2e-8 at 1 kHz, 7e-7 at A0; 10 s of -110 dBFS hiss peaks at 1.6e-10.
SILENT_POWER_CQT = 1e-9
# Frames per STFT / CQT call: bounds memory on hour-long audio without changing a single value.
# The CQT's strided convolution unfolds its input on the CPU (kernel width x frames, float64:
# 32768 x 512 x 8 bytes = 134 MB per chunk at the defaults; 8192 frames took 2 GB more).
CHUNK_FRAMES = 512
FEATURE_KINDS = ("logmel", "cqt", "hcqt")
HANN_BANDWIDTH = 1.50018  # Hann window's equivalent noise bandwidth in DFT bins (librosa's value)


@dataclass(frozen=True)
class FeatureConfig:
    """The `audio` section of params.yaml: everything that defines a feature frame.

    `features` picks the front end: "logmel" (n_fft, n_mels, fmin, fmax apply) or "cqt"
    (bins_per_semitone, cqt_fmin, cqt_octaves, cqt_filter_scale apply). `n_bins` is the feature
    dimension either way. The cqt defaults span A0 (27.5 Hz) to ~A8 (top bin 6.9 kHz) at 3 bins
    per semitone, 288 bins: eight whole octaves are the most that stay below the 8 kHz Nyquist
    of 16 kHz audio (a ninth would reach 13.8 kHz); past the piano's top C8 (4.2 kHz) they keep
    harmonics up to 6.9 kHz (the 2nd harmonic of notes up to A7), as the mel front end keeps 8 kHz."""

    sample_rate: int = 16000
    hop_length: int = 512
    n_fft: int = 2048
    n_mels: int = 128
    fmin: float = 30.0
    fmax: float = 8000.0
    level_norm: bool = True  # scale each file's power to a fixed mean before the log (see above)
    features: str = "logmel"  # "logmel" | "cqt" | "hcqt"
    bins_per_semitone: int = 3  # cqt: bins per semitone (36 per octave at 3)
    cqt_fmin: float = 27.5  # cqt: centre of the lowest bin, Hz (A0)
    cqt_octaves: int = (
        8  # cqt: octaves above cqt_fmin; n_bins = 12 * bins_per_semitone * cqt_octaves
    )
    cqt_filter_scale: float = (
        1.0  # cqt: kernel lengths x this (< 1: sharper in time, blurrier in pitch)
    )
    # hcqt: the harmonics stacked as input channels (0.5: the sub-octave, as Basic Pitch)
    harmonics: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)

    def __post_init__(self):
        object.__setattr__(self, "harmonics", tuple(float(h) for h in self.harmonics))  # YAML list
        if self.features == "hcqt":
            positive = bool(self.harmonics) and all(h > 0 for h in self.harmonics)
            shifts = self.harmonic_shifts if positive else ()
            if not positive or len(set(shifts)) < len(shifts):
                raise ValueError(
                    f"params.yaml: audio.harmonics must be distinct positive harmonics a bin or "
                    f"more apart, got {list(self.harmonics)}"
                )
        if self.features not in FEATURE_KINDS:
            raise ValueError(
                f"params.yaml: audio.features must be one of {', '.join(FEATURE_KINDS)}, got {self.features!r}"
            )
        if self.n_fft % 2:  # centred frames of an odd n_fft would break T = N // hop + 1
            raise ValueError(f"params.yaml: audio.n_fft must be even, got {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"params.yaml: need 0 <= audio.fmin < audio.fmax <= sample_rate/2, "
                f"got fmin {self.fmin}, fmax {self.fmax}, sample_rate {self.sample_rate}"
            )
        for key in ("bins_per_semitone", "cqt_octaves"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"params.yaml: audio.{key} must be a whole number >= 1, got {value!r}"
                )
        if not self.cqt_fmin > 0:
            raise ValueError(f"params.yaml: audio.cqt_fmin must be > 0 Hz, got {self.cqt_fmin}")
        if not self.cqt_filter_scale > 0:
            raise ValueError(
                f"params.yaml: audio.cqt_filter_scale must be > 0, got {self.cqt_filter_scale}"
            )
        if self.is_cqt:
            edge = self.cqt_fmax * (
                1 + 0.5 * HANN_BANDWIDTH / self.cqt_q
            )  # the top kernel's upper band edge
            if edge > self.sample_rate / 2:
                raise ValueError(
                    f"params.yaml: audio.cqt_octaves = {self.cqt_octaves} octaves from audio.cqt_fmin = {self.cqt_fmin} Hz "
                    f"reach {self.cqt_fmax:.0f} Hz (band edge {edge:.0f} Hz), above the Nyquist frequency "
                    f"{self.sample_rate / 2:g} Hz of audio.sample_rate {self.sample_rate}; use fewer octaves or a lower cqt_fmin"
                )

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        """A config from a stored dict (features/config.json, a checkpoint): keys it does not know
        (derived values stored beside the settings, e.g. n_bins) are ignored."""
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    @property
    def n_bins(self) -> int:
        """The feature dimension: n_mels for logmel, the number of CQT bins for cqt."""
        return (
            self.n_mels
            if self.features == "logmel"
            else 12 * self.bins_per_semitone * self.cqt_octaves
        )

    @property
    def is_cqt(self) -> bool:
        """Whether the features are a log-CQT (cqt, or hcqt: the same features, stacked by the model)."""
        return self.features in ("cqt", "hcqt")

    @property
    def harmonic_shifts(self) -> tuple[int, ...]:
        """hcqt: the bin shift of each harmonic's channel, round(bins_per_octave * log2 h); () otherwise."""
        if self.features != "hcqt":
            return ()
        return tuple(round(self.cqt_bins_per_octave * math.log2(h)) for h in self.harmonics)

    @property
    def cqt_bins_per_octave(self) -> int:
        return 12 * self.bins_per_semitone

    @property
    def cqt_q(self) -> float:
        """The CQT's quality factor as nnAudio defines it: filter_scale / (2^(1/bins_per_octave) - 1)."""
        return float(self.cqt_filter_scale) / (2.0 ** (1.0 / self.cqt_bins_per_octave) - 1.0)

    @property
    def cqt_fmax(self) -> float:
        """Centre of the top CQT bin, Hz."""
        return float(self.cqt_fmin) * 2.0 ** (
            (12 * self.bins_per_semitone * self.cqt_octaves - 1) / self.cqt_bins_per_octave
        )

    @property
    def window_length(self) -> int:
        """Samples of audio behind one frame: n_fft for logmel; for cqt the CQT's kernel width,
        the power of two at or above its longest (lowest) kernel, ceil(Q * sr / cqt_fmin) samples
        (nnAudio's rule; `_cqt_transform` checks that nnAudio agrees)."""
        if self.features == "logmel":
            return self.n_fft
        longest = math.ceil(self.cqt_q * self.sample_rate / self.cqt_fmin)
        return int(2 ** math.ceil(math.log2(longest)))

    def describe(self) -> dict[str, Any]:
        """The full feature definition as a plain dict, for checkpoints and metadata (harmonics
        only for hcqt: they do not define a logmel or cqt frame)."""
        level = (
            f"mean power of the file scaled to {LEVEL_REF:g}" if self.level_norm else "as recorded"
        )
        settings = asdict(self)
        if self.features != "hcqt":
            del settings["harmonics"]
        if self.features == "logmel":
            return {
                **settings,
                "n_bins": self.n_bins,
                "mel_scale": "slaney",
                "norm": "slaney",
                "power": 2.0,
                "center": True,
                "pad_mode": "constant",
                "log": f"ln(mel + {LOG_FLOOR:g})",
                "level": level.replace("mean power", "mean mel power"),
            }
        stack = (
            {"harmonic_shifts": list(self.harmonic_shifts), "stacked": "by the model's encoder"}
            if self.features == "hcqt"
            else {}
        )
        return {
            **settings,
            **stack,
            "n_bins": self.n_bins,
            "cqt": "nnAudio CQT1992v2: Hann kernels, L1-normalised, x sqrt(kernel length) (librosa.cqt scale=True)",
            "cqt_bins_per_octave": self.cqt_bins_per_octave,
            "cqt_q": self.cqt_q,
            "cqt_fmax": self.cqt_fmax,
            "window_length": self.window_length,
            "power": 2.0,
            "center": True,
            "pad_mode": "constant",
            "log": f"ln(|cqt|^2 + {LOG_FLOOR:g})",
            "level": level,
        }


def silent_power(cfg: FeatureConfig | None = None) -> float:
    """The power at or below which a whole file counts as digital silence (None: logmel's)."""
    return SILENT_POWER_CQT if cfg is not None and cfg.is_cqt else SILENT_POWER


@functools.lru_cache(maxsize=8)
def _mel_transform(cfg: FeatureConfig, device: str):
    """A torchaudio MelSpectrogram on uncentred frames (the caller pads), cached per (cfg, device).

    Built in float64: torch computes the filterbank with vectorised log/exp routines whose float32
    results differ in the last bit from one CPU's code path to another's (MKL's), and those
    weights would carry the difference into every feature."""
    import torch
    import torchaudio

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            f_min=float(cfg.fmin),
            f_max=float(cfg.fmax),
            n_mels=cfg.n_mels,
            power=2.0,
            center=False,
            mel_scale="slaney",
            norm="slaney",
        )
    finally:
        torch.set_default_dtype(previous)
    return transform.to(device=device, dtype=_transform_dtype(device))


def _transform_dtype(device: str):
    """float64 on the CPU (`_uncentred_power` says why), float32 on CUDA."""
    import torch

    return torch.float32 if device.startswith("cuda") else torch.float64


@functools.lru_cache(maxsize=8)
def _cqt_transform(cfg: FeatureConfig, device: str):
    """nnAudio's CQT1992v2 on uncentred frames (the caller pads), complex output, cached per (cfg, device).

    nnAudio over librosa.cqt: it is torch (runs on the GPU beside the model, as the mel front end
    does) and computes every frame as one plain strided convolution with the full-length kernels,
    so a frame depends only on the window_length samples around it: chunked and streamed frames
    equal whole-file ones, with no multirate resampling in between (librosa's early downsampling)."""
    from nnAudio.features import CQT1992v2

    transform = CQT1992v2(
        sr=cfg.sample_rate,
        hop_length=cfg.hop_length,
        fmin=float(cfg.cqt_fmin),
        n_bins=cfg.n_bins,
        bins_per_octave=cfg.cqt_bins_per_octave,
        filter_scale=float(cfg.cqt_filter_scale),
        norm=1,
        window="hann",
        center=False,
        trainable=False,
        output_format="Complex",
        verbose=False,
    )
    if transform.kernel_width != cfg.window_length:
        raise RuntimeError(
            f"nnAudio's CQT kernels are {transform.kernel_width} samples wide, "
            f"FeatureConfig.window_length says {cfg.window_length}: nnAudio changed its kernel rule"
        )
    return transform.to(device=device, dtype=_transform_dtype(device))


@contextlib.contextmanager
def _ieee_fp32_convolution(device: str):
    """cuDNN convolutions in full float32 on a CUDA device: torch lets them use TF32 by default,
    whose 10-bit mantissa over a 32768-tap kernel would bury a quiet bin under a loud neighbour's
    rounding (the CPU, and the mel front end's FFT, are unaffected)."""
    import torch

    if not device.startswith("cuda"):
        yield
        return
    conv = torch.backends.cudnn.conv
    previous = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = previous


def audio_features(audio, cfg: FeatureConfig, device=None) -> np.ndarray:
    """Mono audio (numpy or torch, shape (N,), at cfg.sample_rate) → float32 features (T, cfg.n_bins):
    log-mel or log-CQT as cfg.features says.

    T = N // hop_length + 1. With cfg.level_norm the audio given is one file: its level is
    normalised as a whole (see the module docstring). Runs on `device` (e.g. "cuda") when given,
    else on the CPU; the result is always a numpy array on the host."""
    import torch

    device = str(torch.device(device)) if device is not None else "cpu"
    if torch.is_tensor(audio):
        samples = audio
    else:
        array = np.asarray(audio, dtype=np.float32)
        # torch cannot share a read-only buffer (e.g. a memmap): copy in that case only.
        samples = torch.from_numpy(array if array.flags.writeable else array.copy())
    if samples.ndim != 1:
        raise ValueError(
            f"audio_features expects mono audio of shape (N,), got shape {tuple(samples.shape)}"
        )
    samples = samples.to(device=device, dtype=torch.float32)
    pad = cfg.window_length // 2
    # Centre frames ourselves (zero padding) so the transform can run in bounded-memory chunks.
    return power_to_log(
        _uncentred_power(torch.nn.functional.pad(samples, (pad, pad)), cfg, device), cfg
    )


def log_mel(audio, cfg: FeatureConfig, device=None) -> np.ndarray:
    """`audio_features` for a logmel config: float32 log-mel (T, n_mels)."""
    if cfg.features != "logmel":
        raise ValueError(
            f"log_mel needs audio.features = logmel, got {cfg.features!r}; use audio_features"
        )
    return audio_features(audio, cfg, device)


def is_silent(features: np.ndarray, cfg: FeatureConfig | None = None) -> bool:
    """Whether features (of `audio_features` or `stream_track_features` with `cfg`; None: logmel) are digital silence."""
    floor = np.log(np.float32(silent_power(cfg)) + np.float32(LOG_FLOOR))
    return features.size == 0 or float(features.max()) <= float(floor)


def power_to_log(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """A whole file's power (T, n_bins) float32 → ln(power * level scale + LOG_FLOOR) as float32,
    in place. The log is taken in float64 (CHUNK_FRAMES rows at a time) and rounded: float32 log
    routines differ in the last bit between CPUs' vector units, a float64 one's difference does
    not survive the rounding."""
    scale = 1.0
    if cfg.level_norm and power.size and float(power.max()) > silent_power(cfg):
        scale = float(np.float32(LEVEL_REF / float(np.mean(power, dtype=np.float64))))
    for first in range(0, power.shape[0], CHUNK_FRAMES):
        rows = power[first : first + CHUNK_FRAMES].astype(np.float64)
        rows *= scale
        rows += LOG_FLOOR
        power[first : first + CHUNK_FRAMES] = np.log(rows)
    return power


def _uncentred_power(padded, cfg: FeatureConfig, device: str) -> np.ndarray:
    """Mel or CQT power of every full window of an already padded torch signal, frame t starting
    at sample t*hop: (len(padded) - window_length) // hop + 1 frames, computed CHUNK_FRAMES at a time.

    On the CPU the transform runs in float64 and the power is rounded to float32: every CQT value
    is a sum of up to window_length (32768 at the defaults) products, whose order the BLAS picks
    by the CPU's code path and cache sizes, so float32 features differed in their last bits from
    one host to another, and so did every model trained on them. Float64's differences do not
    survive the rounding: the features, and so the models, are the same on every host
    (tests/test_features.py forces another BLAS code path; BENCHMARKS.md). On CUDA it stays
    float32 (in full IEEE precision, `_ieee_fp32_convolution`)."""
    import torch

    window = cfg.window_length
    n_frames = max(0, (padded.shape[0] - window) // cfg.hop_length + 1)
    cqt = cfg.is_cqt
    transform = _cqt_transform(cfg, device) if cqt else _mel_transform(cfg, device)
    padded = padded.to(_transform_dtype(device))
    out = np.empty((n_frames, cfg.n_bins), dtype=np.float32)
    with torch.inference_mode(), _ieee_fp32_convolution(device if cqt else "cpu"):
        for first in range(0, n_frames, CHUNK_FRAMES):
            last = min(first + CHUNK_FRAMES, n_frames)
            chunk = padded[first * cfg.hop_length : (last - 1) * cfg.hop_length + window]
            if cqt:
                spec = transform(chunk)[0]  # (n_bins, last - first, 2): real and imaginary parts
                power = spec.square().sum(-1)
            else:
                power = transform(chunk)  # (n_mels, last - first)
            out[first:last] = power.T.cpu().numpy()
    return out


def track_features(audio_path: str | Path, cfg: FeatureConfig, device=None) -> np.ndarray:
    """An audio file → float32 features (T, n_bins): read as mono, resample to cfg.sample_rate, audio_features."""
    from mtlib.audio import load_audio

    audio, _ = load_audio(audio_path, cfg.sample_rate)
    return audio_features(audio, cfg, device)


def stream_track_features(
    audio_path: str | Path, cfg: FeatureConfig, device=None, block_seconds: float = 30.0
) -> tuple[np.ndarray, int]:
    """`track_features` for files of any length in bounded memory: (features (T, n_bins), file rate).

    The file is read `block_seconds` at a time, each block mixed to mono and pushed through a
    streaming soxr resampler (the same HQ filter as `mtlib.audio.resample`, and the same samples:
    soxr's stream equals its one-shot call), and every frame whose window (n_fft, or the CQT's
    kernel width) is complete is turned into power at once; the samples kept between blocks are
    the last window's. Peak memory is the features plus one block of audio plus one window,
    never the whole waveform (an hour of 44.1 kHz stereo is 1.3 GB as float32; its features are
    57 MB as 128 mels, 130 MB as 288 CQT bins; the power is kept until the end, where the whole
    file's level normalises it). Frames are identical in count and definition to
    `audio_features`: N // hop + 1 for N resampled samples."""
    import soundfile as sf
    import soxr
    import torch

    from mtlib.audio import audio_info, check_length, finite_samples, warn_nonfinite
    from mtlib.errors import AudioError

    device = str(torch.device(device)) if device is not None else "cpu"
    rate, n_file, channels = audio_info(audio_path)
    if n_file == 0:
        raise AudioError(audio_path, "empty audio (0 samples)")
    stream = (
        None
        if rate == cfg.sample_rate
        else soxr.ResampleStream(rate, cfg.sample_rate, 1, dtype="float64", quality="HQ")
    )
    frames = _FrameStream(cfg, device)
    blocksize = max(cfg.n_fft, int(block_seconds * rate))
    n_read = n_bad = 0
    try:
        with sf.SoundFile(str(audio_path)) as f:
            for data in f.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                n_read += data.shape[0]
                mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
                mono, bad = finite_samples(mono)
                n_bad += bad
                if stream is not None:  # in float64, as mtlib.audio.resample
                    mono = stream.resample_chunk(mono.astype(np.float64)).astype(np.float32)
                frames.push(mono)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile errors mid-file (truncated data)
        raise AudioError(audio_path, f"unreadable audio ({exc})") from None
    check_length(audio_path, n_read)
    warn_nonfinite(audio_path, n_bad)
    if stream is not None:
        frames.push(
            stream.resample_chunk(np.zeros(0, dtype=np.float64), last=True).astype(np.float32)
        )
    power = frames.finish()
    return power_to_log(power, cfg), rate  # the level is the whole file's, known only now


class _FrameStream:
    """Samples in, power of every frame whose window is complete out (stream_track_features):
    the padded signal is kept from the next frame's first sample on, so memory is one block plus
    one window. `finish` adds the closing zero padding and returns every frame's power."""

    def __init__(self, cfg: FeatureConfig, device: str):
        self.cfg, self.device = cfg, device
        self.buf = np.zeros(cfg.window_length // 2, dtype=np.float32)  # the opening padding
        self.buf_start = 0  # buf[0] is padded sample buf_start
        self.next_frame = 0
        self.pieces: list[np.ndarray] = []

    def push(self, samples: np.ndarray) -> None:
        import torch

        self.buf = np.concatenate([self.buf, samples.astype(np.float32, copy=False)])
        hop, window = self.cfg.hop_length, self.cfg.window_length
        end = self.buf_start + len(self.buf)  # padded samples seen so far
        if end < window:
            return
        last = (end - window) // hop  # last frame whose window is complete
        if last < self.next_frame:
            return
        lo = self.next_frame * hop - self.buf_start
        chunk = torch.from_numpy(
            np.ascontiguousarray(self.buf[lo : last * hop + window - self.buf_start])
        )
        self.pieces.append(_uncentred_power(chunk.to(self.device), self.cfg, self.device))
        self.next_frame = last + 1
        cut = self.next_frame * hop - self.buf_start
        self.buf, self.buf_start = self.buf[cut:].copy(), self.buf_start + cut

    def finish(self) -> np.ndarray:
        self.push(np.zeros(self.cfg.window_length // 2, dtype=np.float32))
        if not self.pieces:
            return np.zeros((0, self.cfg.n_bins), np.float32)
        return np.concatenate(self.pieces)
