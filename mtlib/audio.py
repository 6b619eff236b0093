"""Audio loading: any file libsndfile reads → mono float32 at a requested rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlib.errors import AudioError


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(sample rate, frames, channels) of an audio file, without reading its samples."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError with a terse text
        raise AudioError(path, f"unreadable audio ({exc})") from None
    return int(info.samplerate), int(info.frames), int(info.channels)


def resample(audio: np.ndarray, orig_rate: int, rate: int) -> np.ndarray:
    """Band-limited resampling (librosa's soxr_hq) of a mono float32 signal."""
    if orig_rate == rate:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=orig_rate, target_sr=rate, res_type="soxr_hq").astype(
        np.float32
    )


def load_audio(
    path: str | Path, rate: int | None = None, start: int = 0, frames: int = -1
) -> tuple[np.ndarray, int]:
    """Read `path` as mono float32 (channels averaged), resampled to `rate` if given.

    `start`/`frames` select a slice in the file's own samples (for streaming long files).
    Returns (audio, rate). Raises AudioError naming the file if it is unreadable or empty."""
    import soundfile as sf

    try:
        data, file_rate = sf.read(
            str(path), start=start, frames=frames, dtype="float32", always_2d=True
        )
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({exc})") from None
    if data.shape[0] == 0 and start == 0:
        raise AudioError(path, "empty audio (0 samples)")
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if rate is not None and rate != file_rate:
        audio = resample(audio, file_rate, rate)
        file_rate = rate
    return audio, int(file_rate)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM WAV atomically (temp file + rename)."""
    import soundfile as sf

    from mtlib.io import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
