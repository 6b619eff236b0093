"""The one feature function: audio → log-mel spectrogram, shared by the segment stage and
`mt transcribe` (so training and inference never see two definitions of a frame).

Definition (record it with any model trained on it, see `FeatureConfig.describe`):
  * torchaudio MelSpectrogram, power 2, Hann window, `mel_scale="slaney"`, `norm="slaney"`
    (librosa's defaults, so `librosa.feature.melspectrogram(htk=False, norm="slaney")` agrees);
  * centred frames with zero padding of n_fft//2 each side (librosa's `pad_mode="constant"`),
    so frame t is centred on sample t*hop and a signal of N samples gives N//hop + 1 frames
    (`mtlib.timebase.num_frames`);
  * level normalisation (`level_norm`, on by default): the mel power of a whole file is scaled
    so that its mean is LEVEL_REF, i.e. the log floor sits LEVEL_DB below the file's mean power,
    before the log. A gain multiplies every mel power by the same factor, so a recording at
    -45 dBFS and the same one at -10 dBFS give the same features (to float rounding) and the same
    notes; real recordings come at any level, the training data at many. Digital silence (no mel
    power above SILENT_POWER) is left unscaled, so it stays silent instead of amplified noise;
  * natural log of (mel power + 1e-6): smooth at silence, and the floor sits ~80 dB below a
    moderately loud note, like librosa's usual `top_db=80`. Per-mel-bin normalisation is left to
    the model (statistics come from `mtlib.dataset.feature_stats`).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOG_FLOOR = 1e-6
LEVEL_DB = 80.0  # level_norm: the log floor sits this far below a file's mean mel power
LEVEL_REF = LOG_FLOOR * 10.0 ** (LEVEL_DB / 10.0)
SILENT_POWER = 1e-5  # no mel power above this (ln = -11.5: a -100 dBFS sine exceeds it) = digital silence
# Frames per STFT call: bounds memory on hour-long audio (one chunk's complex spectrogram is
# ~8192 x 1025 x 8 bytes = 67 MB at n_fft 2048) without changing a single value.
CHUNK_FRAMES = 8192


@dataclass(frozen=True)
class FeatureConfig:
    """The `audio` section of params.yaml: everything that defines a feature frame."""

    sample_rate: int = 16000
    hop_length: int = 512
    n_fft: int = 2048
    n_mels: int = 128
    fmin: float = 30.0
    fmax: float = 8000.0
    level_norm: bool = True  # scale each file's mel power to a fixed mean before the log (see above)

    def __post_init__(self):
        if self.n_fft % 2:  # centred frames of an odd n_fft would break T = N // hop + 1
            raise ValueError(f"params.yaml: audio.n_fft must be even, got {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"params.yaml: need 0 <= audio.fmin < audio.fmax <= sample_rate/2, "
                             f"got fmin {self.fmin}, fmax {self.fmax}, sample_rate {self.sample_rate}")

    def describe(self) -> dict[str, Any]:
        """The full feature definition as a plain dict, for checkpoints and metadata."""
        return {**asdict(self), "mel_scale": "slaney", "norm": "slaney", "power": 2.0,
                "center": True, "pad_mode": "constant", "log": f"ln(mel + {LOG_FLOOR:g})",
                "level": f"mean mel power of the file scaled to {LEVEL_REF:g}" if self.level_norm else "as recorded"}


@functools.lru_cache(maxsize=8)
def _mel_transform(cfg: FeatureConfig, device: str):
    """A torchaudio MelSpectrogram on uncentred frames (the caller pads), cached per (cfg, device)."""
    import torchaudio

    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        f_min=float(cfg.fmin), f_max=float(cfg.fmax), n_mels=cfg.n_mels,
        power=2.0, center=False, mel_scale="slaney", norm="slaney",
    )
    return transform.to(device)


def log_mel(audio, cfg: FeatureConfig, device=None) -> np.ndarray:
    """Mono audio (numpy or torch, shape (N,), at cfg.sample_rate) → float32 log-mel (T, n_mels).

    T = N // hop_length + 1. With cfg.level_norm the audio given is one file: its level is
    normalised as a whole (see the module docstring). Runs on `device` (e.g. "cuda") when given, else on the CPU; the
    result is always a numpy array on the host."""
    import torch

    device = str(torch.device(device)) if device is not None else "cpu"
    if torch.is_tensor(audio):
        samples = audio
    else:
        array = np.asarray(audio, dtype=np.float32)
        # torch cannot share a read-only buffer (e.g. a memmap): copy in that case only.
        samples = torch.from_numpy(array if array.flags.writeable else array.copy())
    if samples.ndim != 1:
        raise ValueError(f"log_mel expects mono audio of shape (N,), got shape {tuple(samples.shape)}")
    samples = samples.to(device=device, dtype=torch.float32)
    pad = cfg.n_fft // 2
    # Centre frames ourselves (zero padding) so the STFT can run in bounded-memory chunks.
    return power_to_log(_uncentred_mel_power(torch.nn.functional.pad(samples, (pad, pad)), cfg, device), cfg)


def is_silent(features: np.ndarray) -> bool:
    """Whether log-mel features (of `log_mel` or `stream_track_features`) are digital silence."""
    return features.size == 0 or float(features.max()) <= float(np.log(np.float32(SILENT_POWER) + np.float32(LOG_FLOOR)))


def power_to_log(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """A whole file's mel power (T, n_mels) → ln(power * level scale + LOG_FLOOR), in place."""
    if cfg.level_norm and power.size and float(power.max()) > SILENT_POWER:
        power *= np.float32(LEVEL_REF / float(np.mean(power, dtype=np.float64)))
    power += np.float32(LOG_FLOOR)
    return np.log(power, out=power)


def _uncentred_mel_power(padded, cfg: FeatureConfig, device: str) -> np.ndarray:
    """Mel power of every full n_fft frame of an already padded torch signal, frame t starting at
    sample t*hop: (len(padded) - n_fft) // hop + 1 frames, computed CHUNK_FRAMES at a time."""
    import torch

    n_frames = max(0, (padded.shape[0] - cfg.n_fft) // cfg.hop_length + 1)
    transform = _mel_transform(cfg, device)
    out = np.empty((n_frames, cfg.n_mels), dtype=np.float32)
    with torch.inference_mode():
        for first in range(0, n_frames, CHUNK_FRAMES):
            last = min(first + CHUNK_FRAMES, n_frames)
            chunk = padded[first * cfg.hop_length: (last - 1) * cfg.hop_length + cfg.n_fft]
            mel = transform(chunk)  # (n_mels, last - first)
            out[first:last] = mel.T.cpu().numpy()
    return out


def track_features(audio_path: str | Path, cfg: FeatureConfig, device=None) -> np.ndarray:
    """An audio file → float32 log-mel (T, n_mels): read as mono, resample to cfg.sample_rate, log_mel."""
    from mtlib.audio import load_audio

    audio, _ = load_audio(audio_path, cfg.sample_rate)
    return log_mel(audio, cfg, device)


def stream_track_features(audio_path: str | Path, cfg: FeatureConfig, device=None, block_seconds: float = 30.0) -> tuple[np.ndarray, int]:
    """`track_features` for files of any length in bounded memory: (features (T, n_mels), file rate).

    The file is read `block_seconds` at a time, each block mixed to mono and pushed through a
    streaming soxr resampler (the same HQ filter as `mtlib.audio.resample`, and the same samples:
    soxr's stream equals its one-shot call), and every frame whose n_fft window is complete is
    turned into log-mel at once. Peak memory is the features plus one block of audio, never the
    whole waveform (an hour of 44.1 kHz stereo is 1.3 GB as float32; its features are 57 MB; the
    mel power is kept until the end, where the whole file's level normalises it).
    Frames are identical in count and definition to `log_mel`: N // hop + 1 for N resampled samples."""
    import soundfile as sf
    import soxr
    import torch

    from mtlib.audio import audio_info
    from mtlib.errors import AudioError

    device = str(torch.device(device)) if device is not None else "cpu"
    rate, n_file, channels = audio_info(audio_path)
    if n_file == 0:
        raise AudioError(audio_path, "empty audio (0 samples)")
    stream = None if rate == cfg.sample_rate else soxr.ResampleStream(rate, cfg.sample_rate, 1, dtype="float32", quality="HQ")
    hop, pad = cfg.hop_length, cfg.n_fft // 2
    buf, buf_start, next_frame = np.zeros(pad, dtype=np.float32), 0, 0  # buf[0] is padded sample buf_start
    pieces: list[np.ndarray] = []

    def emit() -> None:
        nonlocal buf, buf_start, next_frame
        end = buf_start + len(buf)  # padded samples seen so far
        if end < cfg.n_fft:
            return
        last = (end - cfg.n_fft) // hop  # last frame whose window is complete
        if last < next_frame:
            return
        lo = next_frame * hop - buf_start
        window = buf[lo: last * hop + cfg.n_fft - buf_start]
        pieces.append(_uncentred_mel_power(torch.from_numpy(np.ascontiguousarray(window)).to(device), cfg, device))
        next_frame = last + 1
        cut = next_frame * hop - buf_start
        buf, buf_start = buf[cut:].copy(), buf_start + cut

    blocksize = max(cfg.n_fft, int(block_seconds * rate))
    try:
        with sf.SoundFile(str(audio_path)) as f:
            for data in f.blocks(blocksize=blocksize, dtype="float32", always_2d=True):
                mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
                y = stream.resample_chunk(np.ascontiguousarray(mono)) if stream is not None else mono
                buf = np.concatenate([buf, y.astype(np.float32, copy=False)])
                emit()
    except AudioError:
        raise
    except Exception as exc:  # libsndfile errors mid-file (truncated data)
        raise AudioError(audio_path, f"unreadable audio ({exc})") from None
    if stream is not None:
        buf = np.concatenate([buf, stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True).astype(np.float32)])
    buf = np.concatenate([buf, np.zeros(pad, dtype=np.float32)])
    emit()
    power = np.concatenate(pieces) if pieces else np.zeros((0, cfg.n_mels), np.float32)
    return power_to_log(power, cfg), rate  # the level is the whole file's, known only now
