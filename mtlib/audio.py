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


def finite_samples(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """(`samples` with NaN and ±Inf set to 0, how many were). One NaN would otherwise spread
    through the spectrogram window by window (a 23 ms burst took every note of its 4 s segment)
    and defeat the silence check; zeroing is the choice here because the rest of the file is
    still good audio. `warn_nonfinite` says so. Costs one isfinite pass when all are finite."""
    bad = ~np.isfinite(samples)
    if not bad.any():
        return samples, 0
    return np.where(bad, np.float32(0), samples), int(bad.sum())


def warn_nonfinite(path: str | Path, n: int) -> None:
    if n:
        import warnings

        warnings.warn(f"{path}: {n} NaN/Inf sample(s) set to 0", stacklevel=3)


def declared_frames(path: str | Path) -> int | None:
    """Frames a RIFF/WAVE file's header announces (its data chunk's size / block align), or None
    for other formats and streaming headers (size 0 or 0xFFFFFFFF).

    Written by hand: libsndfile (and so soundfile) silently clamps the frame count of a cut-off
    WAV to the bytes present, so a half-copied file would read as a shorter, valid one."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def check_length(path: str | Path, n_read: int) -> None:
    """AudioError if the file held fewer frames (`n_read`) than its header announces
    (`declared_frames`: a cut-off copy); nothing to check for formats it cannot read."""
    n_header = declared_frames(path)
    if n_header is not None and n_read < n_header:
        raise AudioError(
            path,
            f"truncated: the header announces {n_header} samples per channel, the data holds "
            f"{n_read} ({n_read / max(n_header, 1):.0%}); the file was cut off",
        )


def resample(audio: np.ndarray, orig_rate: int, rate: int) -> np.ndarray:
    """Band-limited resampling (librosa's soxr_hq) of a mono float32 signal, computed in float64
    and rounded to float32: soxr's float32 filter runs in whichever vector routine the CPU
    offers, float64's differences do not survive the rounding (the same samples on every host)."""
    if orig_rate == rate:
        return audio
    import librosa

    return librosa.resample(
        audio.astype(np.float64), orig_sr=orig_rate, target_sr=rate, res_type="soxr_hq"
    ).astype(np.float32)


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
    if start == 0 and frames < 0:
        check_length(path, data.shape[0])
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    audio, n_bad = finite_samples(np.ascontiguousarray(audio, dtype=np.float32))
    warn_nonfinite(path, n_bad)
    if rate is not None and rate != file_rate:
        audio = resample(audio, file_rate, rate)
        file_rate = rate
    return audio, int(file_rate)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM WAV atomically (temp file + rename): mono (n,) or (n, channels)."""
    _write_pcm16(path, audio, rate, "WAV")


def write_flac(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """`write_wav` as FLAC: half the size, and every current browser plays it (the report page)."""
    _write_pcm16(path, audio, rate, "FLAC")


def _write_pcm16(path: str | Path, audio: np.ndarray, rate: int, fmt: str) -> None:
    import soundfile as sf

    from mtlib.io import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format=fmt)
