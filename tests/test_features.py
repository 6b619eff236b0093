"""The feature function: agrees with librosa, frame count from mtlib.timebase, pitch lands in the right bin."""
from __future__ import annotations

import numpy as np
import pytest

from mtlib.features import LEVEL_REF, LOG_FLOOR, FeatureConfig, log_mel, track_features
from mtlib.timebase import num_frames

CFG = FeatureConfig(sample_rate=16000, hop_length=512, n_fft=2048, n_mels=128, fmin=30.0, fmax=8000.0)


def noisy_chord(seconds: float, rate: int = 16000) -> np.ndarray:
    """Noise plus two sines: energy in every mel bin, so log values are compared away from the floor."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    y = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t)
    return y.astype(np.float32)


@pytest.mark.parametrize("hop", [512, 256])
def test_log_mel_matches_librosa_slaney_mel(hop):
    import librosa

    cfg = FeatureConfig(hop_length=hop, level_norm=False)
    y = noisy_chord(2.0)
    ours = log_mel(y, cfg)
    mel = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=hop, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.fmax, htk=False, norm="slaney", power=2.0, center=True, pad_mode="constant",
    ).T  # (T, n_mels)
    assert ours.dtype == np.float32 and ours.shape == mel.shape
    np.testing.assert_allclose(ours, np.log(mel + LOG_FLOOR), atol=2e-3)
    # With level normalisation: the same mel power, scaled so its mean is LEVEL_REF.
    levelled = log_mel(y, FeatureConfig(hop_length=hop))
    np.testing.assert_allclose(levelled, np.log(mel * (LEVEL_REF / mel.mean()) + LOG_FLOOR), atol=2e-3)


@pytest.mark.parametrize("gain_db", [-45.0, -25.0, -10.0, 6.0])
def test_level_does_not_change_the_features(gain_db):
    """Real recordings come at any level: a file and the same file `gain_db` louder or quieter
    give the same features (within float rounding), whole or streamed."""
    y = noisy_chord(3.0)
    reference = log_mel(y, CFG)
    scaled = log_mel((y * 10 ** (gain_db / 20)).astype(np.float32), CFG)
    np.testing.assert_allclose(scaled, reference, atol=2e-3)
    assert np.isclose(np.exp(reference).mean(), LEVEL_REF, rtol=1e-3)  # the floor is LEVEL_DB below the mean


def test_silence_stays_silent_and_is_not_amplified():
    """Digital silence (or a -110 dBFS hiss) is not scaled up into a loud noise."""
    from mtlib.features import is_silent

    rng = np.random.default_rng(0)
    hiss = (3e-6 * rng.standard_normal(16000)).astype(np.float32)
    assert is_silent(log_mel(np.zeros(16000, dtype=np.float32), CFG))
    assert is_silent(log_mel(hiss, CFG))
    assert not is_silent(log_mel((1e-4 * np.sin(np.arange(16000) * 0.2)).astype(np.float32), CFG))  # -83 dBFS


@pytest.mark.parametrize("n_samples", [1, 511, 512, 513, 2047, 16000, 16000 * 3 + 7])
def test_frame_count_matches_timebase(n_samples):
    features = log_mel(np.zeros(n_samples, dtype=np.float32), CFG)
    assert features.shape == (num_frames(n_samples, CFG.sample_rate, CFG.hop_length), CFG.n_mels)
    np.testing.assert_allclose(features, np.log(LOG_FLOOR), atol=1e-5)  # silence sits on the floor


@pytest.mark.parametrize("hz", [110.0, 440.0, 1760.0, 4000.0])
def test_sine_peaks_in_its_mel_bin(hz):
    import librosa

    t = np.arange(CFG.sample_rate) / CFG.sample_rate
    features = log_mel((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), CFG)
    centres = librosa.mel_frequencies(n_mels=CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax, htk=False)[1:-1]
    expected = int(np.argmin(np.abs(centres - hz)))
    peak_bins = features[5:-5].argmax(axis=1)  # frames away from the zero-padded edges
    assert np.all(np.abs(peak_bins - expected) <= 1), (hz, expected, np.unique(peak_bins))


def test_chunked_stft_equals_one_pass_and_accepts_torch(monkeypatch):
    import torch

    import mtlib.features as features

    y = noisy_chord(3.0)
    whole = log_mel(y, CFG)
    monkeypatch.setattr(features, "CHUNK_FRAMES", 7)  # many chunks, one ragged at the end
    np.testing.assert_allclose(log_mel(torch.from_numpy(y), CFG), whole, atol=1e-4)


def test_rejects_multichannel_audio():
    with pytest.raises(ValueError, match="mono audio"):
        log_mel(np.zeros((2, 1000), dtype=np.float32), CFG)


def test_track_features_resamples_stereo_48k(tmp_path):
    import soundfile as sf

    def sine(rate, hz=440.0, amp=0.3):
        return (amp * np.sin(2 * np.pi * hz * np.arange(int(1.5 * rate)) / rate)).astype(np.float32)

    left, right = 2 * sine(48000), np.zeros(72000, dtype=np.float32)  # channels are averaged
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    features = track_features(path, CFG)
    assert features.shape == (num_frames(24000, CFG.sample_rate, CFG.hop_length), CFG.n_mels)
    reference = log_mel(sine(16000), CFG)
    strong = reference > reference.max() - 10  # bins carrying the sine (quiet bins hold resampler noise)
    np.testing.assert_allclose(features[strong], reference[strong], atol=0.05)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_gpu_matches_cpu():
    y = noisy_chord(2.0)
    np.testing.assert_allclose(log_mel(y, CFG, device="cuda"), log_mel(y, CFG), atol=1e-3)


def test_config_rejects_odd_fft_and_fmax_above_nyquist():
    with pytest.raises(ValueError, match="n_fft must be even"):
        FeatureConfig(n_fft=2047)
    with pytest.raises(ValueError, match="fmax"):
        FeatureConfig(sample_rate=16000, fmax=9000.0)
    assert FeatureConfig().describe()["mel_scale"] == "slaney"


@pytest.mark.parametrize("rate,channels,block_seconds", [(48000, 2, 0.37), (16000, 1, 0.05), (44100, 3, 10.0)])
def test_streamed_features_equal_whole_file_features(tmp_path, rate, channels, block_seconds):
    """Blocks of any size (smaller than a frame's window, or the whole file) give the same frames."""
    import soundfile as sf

    from mtlib.features import stream_track_features

    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((int(2.3 * rate) + 17, channels))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(str(path), audio, rate, subtype="FLOAT")
    streamed, file_rate = stream_track_features(path, CFG, block_seconds=block_seconds)
    whole = track_features(path, CFG)
    assert file_rate == rate and streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_streamed_features_name_an_unreadable_file(tmp_path):
    from mtlib.errors import AudioError
    from mtlib.features import stream_track_features

    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(AudioError, match=r"notes\.wav.*unreadable audio"):
        stream_track_features(path, CFG)
