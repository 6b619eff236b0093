"""The feature function (logmel and cqt): agrees with librosa, frame count from mtlib.timebase, pitch lands in the right bin."""

from __future__ import annotations

import numpy as np
import pytest

from mtlib.features import (
    LEVEL_REF,
    LOG_FLOOR,
    FeatureConfig,
    audio_features,
    log_mel,
    silent_power,
    track_features,
)
from mtlib.timebase import num_frames

CFG = FeatureConfig(
    sample_rate=16000, hop_length=512, n_fft=2048, n_mels=128, fmin=30.0, fmax=8000.0
)
CQT = FeatureConfig(
    features="cqt", bins_per_semitone=3, cqt_fmin=27.5, cqt_octaves=8
)  # A0 up, 288 bins
BOTH = pytest.mark.parametrize("cfg", [CFG, CQT], ids=["logmel", "cqt"])


def midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def tone(hz_amps, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return sum(a * np.sin(2 * np.pi * hz * t) for hz, a in hz_amps).astype(np.float32)


def steady_spectrum_db(features: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mean power per bin (dB) over the frames whose whole window lies inside the signal."""
    edge = cfg.window_length // 2 // cfg.hop_length + 1
    return 10 * np.log10(np.exp(features[edge:-edge].astype(np.float64)).mean(axis=0))


def noisy_chord(seconds: float, rate: int = 16000) -> np.ndarray:
    """Noise plus two sines: energy in every mel bin, so log values are compared away from the floor."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    y = (
        0.05 * rng.standard_normal(t.size)
        + 0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 1000 * t)
    )
    return y.astype(np.float32)


@pytest.mark.parametrize("hop", [512, 256])
def test_log_mel_matches_librosa_slaney_mel(hop):
    import librosa

    cfg = FeatureConfig(hop_length=hop, level_norm=False)
    y = noisy_chord(2.0)
    ours = log_mel(y, cfg)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=hop,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=False,
        norm="slaney",
        power=2.0,
        center=True,
        pad_mode="constant",
    ).T  # (T, n_mels)
    assert ours.dtype == np.float32 and ours.shape == mel.shape
    np.testing.assert_allclose(ours, np.log(mel + LOG_FLOOR), atol=2e-3)
    # With level normalisation: the same mel power, scaled so its mean is LEVEL_REF.
    levelled = log_mel(y, FeatureConfig(hop_length=hop))
    np.testing.assert_allclose(
        levelled, np.log(mel * (LEVEL_REF / mel.mean()) + LOG_FLOOR), atol=2e-3
    )


def test_cqt_matches_librosa_cqt():
    """Same scale (librosa.cqt's default L1 kernels x sqrt(length)) and the same frames (a one-frame
    shift gives a median difference ~0.6); librosa's Q is ~1% higher and it downsamples per
    octave, so values agree to a few percent, not to float rounding."""
    import librosa

    cfg = FeatureConfig(features="cqt", level_norm=False)
    rng = np.random.default_rng(0)
    n = 3 * cfg.sample_rate
    envelope = np.repeat(rng.uniform(0.2, 1.0, n // 2000 + 1), 2000)[
        :n
    ]  # level steps: frames differ
    y = (0.1 * rng.standard_normal(n) * envelope).astype(np.float32)
    ours = audio_features(y, cfg)
    power = (
        np.abs(
            librosa.cqt(
                y,
                sr=cfg.sample_rate,
                hop_length=cfg.hop_length,
                fmin=cfg.cqt_fmin,
                n_bins=cfg.n_bins,
                bins_per_octave=cfg.cqt_bins_per_octave,
                pad_mode="constant",
            )
        ).T
        ** 2
    )
    assert ours.dtype == np.float32 and ours.shape == power.shape == (
        num_frames(n, cfg.sample_rate, cfg.hop_length),
        288,
    )
    diff = ours - np.log(power + LOG_FLOOR)
    assert np.median(np.abs(diff)) < 0.05 and abs(float(diff.mean())) < 0.05


@BOTH
@pytest.mark.parametrize("gain_db", [-45.0, -25.0, -10.0, 6.0])
def test_level_does_not_change_the_features(gain_db, cfg):
    """Real recordings come at any level: a file and the same file `gain_db` louder or quieter
    give the same features (within float rounding), whole or streamed."""
    y = noisy_chord(3.0)
    reference = audio_features(y, cfg)
    scaled = audio_features((y * 10 ** (gain_db / 20)).astype(np.float32), cfg)
    np.testing.assert_allclose(scaled, reference, atol=2e-3)
    assert np.isclose(
        np.exp(reference).mean(), LEVEL_REF, rtol=1e-3
    )  # the floor is LEVEL_DB below the mean


def test_silence_stays_silent_and_is_not_amplified():
    """Digital silence (or a -110 dBFS hiss) is not scaled up into a loud noise."""
    from mtlib.features import is_silent

    rng = np.random.default_rng(0)
    hiss = (3e-6 * rng.standard_normal(16000)).astype(np.float32)
    assert is_silent(log_mel(np.zeros(16000, dtype=np.float32), CFG))
    assert is_silent(log_mel(hiss, CFG))
    assert not is_silent(
        log_mel((1e-4 * np.sin(np.arange(16000) * 0.2)).astype(np.float32), CFG)
    )  # -83 dBFS


@pytest.mark.parametrize("filter_scale", [1.0, 0.5])
def test_cqt_silence_stays_silent_and_quiet_tones_do_not(filter_scale):
    """The CQT's power scale is not the mel's: its own threshold keeps -110 dBFS hiss silent and a
    -100 dBFS sine audible in every register, up to the top (shortest, least gain) bin."""
    from mtlib.features import is_silent

    cfg = FeatureConfig(features="cqt", cqt_filter_scale=filter_scale)
    rng = np.random.default_rng(0)
    assert is_silent(audio_features(np.zeros(16000, dtype=np.float32), cfg), cfg)
    assert is_silent(
        audio_features((3e-6 * rng.standard_normal(5 * 16000)).astype(np.float32), cfg), cfg
    )
    for hz in (midi_hz(21), 1000.0, cfg.cqt_fmax):
        features = audio_features(tone([(hz, 1e-5)], 3.0), cfg)  # -100 dBFS
        assert not is_silent(features, cfg), hz
        assert np.isclose(
            np.exp(features).mean(), LEVEL_REF, rtol=1e-3
        )  # so it was level-normalised


@BOTH
@pytest.mark.parametrize("n_samples", [1, 511, 512, 513, 2047, 16000, 16000 * 3 + 7])
def test_frame_count_matches_timebase(n_samples, cfg):
    features = audio_features(np.zeros(n_samples, dtype=np.float32), cfg)
    assert features.shape == (num_frames(n_samples, cfg.sample_rate, cfg.hop_length), cfg.n_bins)
    np.testing.assert_allclose(features, np.log(LOG_FLOOR), atol=1e-5)  # silence sits on the floor


@BOTH
@pytest.mark.parametrize("frame", [3, 40])
def test_frame_t_is_centred_on_sample_t_hop(cfg, frame):
    """A click at sample frame*hop is loudest, in every bin, in that frame (centred windows)."""
    y = np.zeros(100 * cfg.hop_length, dtype=np.float32)
    y[frame * cfg.hop_length] = 1.0
    features = audio_features(y, FeatureConfig(**{**vars(cfg), "level_norm": False}))
    assert np.all(features.argmax(axis=0) == frame), np.unique(features.argmax(axis=0))


@pytest.mark.parametrize("hz", [110.0, 440.0, 1760.0, 4000.0])
def test_sine_peaks_in_its_mel_bin(hz):
    import librosa

    t = np.arange(CFG.sample_rate) / CFG.sample_rate
    features = log_mel((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), CFG)
    centres = librosa.mel_frequencies(
        n_mels=CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax, htk=False
    )[1:-1]
    expected = int(np.argmin(np.abs(centres - hz)))
    peak_bins = features[5:-5].argmax(axis=1)  # frames away from the zero-padded edges
    assert np.all(np.abs(peak_bins - expected) <= 1), (hz, expected, np.unique(peak_bins))


@pytest.mark.parametrize("pitch", [21, 28, 33, 45, 60, 84, 108])
def test_sine_peaks_in_its_cqt_bin(pitch):
    """Pitch is an axis: MIDI pitch p (A0 = 21) peaks in bin (p - 21) * bins_per_semitone, low notes too."""
    features = audio_features(tone([(midi_hz(pitch), 0.5)], 4.0), CQT)
    expected = (pitch - 21) * CQT.bins_per_semitone
    edge = CQT.window_length // 2 // CQT.hop_length + 1
    peak_bins = features[edge:-edge].argmax(
        axis=1
    )  # frames whose whole kernel lies inside the tone
    assert np.all(peak_bins == expected), (pitch, expected, np.unique(peak_bins))


def test_cqt_resolves_a_low_semitone_that_logmel_merges():
    """A1 and A#1 together (55 and 58.3 Hz): two peaks in the CQT with a dip between them, one
    peak in the mel spectrum, whose bins there are 23 Hz apart (the point of the cqt front end)."""
    import librosa

    y = tone([(midi_hz(33), 0.3), (midi_hz(34), 0.3)], 4.0)
    cqt = steady_spectrum_db(audio_features(y, CQT), CQT)
    a1, as1 = (33 - 21) * 3, (34 - 21) * 3
    assert (
        cqt[a1 - 2 : a1 + 2].argmax() == 2 and cqt[as1 - 1 : as1 + 3].argmax() == 1
    )  # a peak on each note
    assert (
        cqt[a1 + 1 : as1].max() < min(cqt[a1], cqt[as1]) - 3.0
    )  # a valley of at least 3 dB between them

    mel = steady_spectrum_db(log_mel(y, CFG), CFG)
    centres = librosa.mel_frequencies(
        n_mels=CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax, htk=False
    )[1:-1]
    low = mel[centres < 250]
    peaks = [
        i
        for i in range(len(low))
        if low[i] >= low[max(i - 1, 0)] and low[i] >= low[min(i + 1, len(low) - 1)]
    ]
    assert len(peaks) == 1  # both notes in one mel peak


@BOTH
def test_chunked_transform_equals_one_pass_and_accepts_torch(monkeypatch, cfg):
    import torch

    import mtlib.features as features

    y = noisy_chord(3.0)
    whole = audio_features(y, cfg)
    monkeypatch.setattr(features, "CHUNK_FRAMES", 7)  # many chunks, one ragged at the end
    assert audio_features(torch.from_numpy(y), cfg).tobytes() == whole.tobytes()


def test_rejects_multichannel_audio():
    with pytest.raises(ValueError, match="mono audio"):
        log_mel(np.zeros((2, 1000), dtype=np.float32), CFG)
    with pytest.raises(ValueError, match="audio.features = logmel"):  # log_mel means it
        log_mel(np.zeros(1000, dtype=np.float32), CQT)


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
    strong = (
        reference > reference.max() - 10
    )  # bins carrying the sine (quiet bins hold resampler noise)
    np.testing.assert_allclose(features[strong], reference[strong], atol=0.05)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
@BOTH
def test_gpu_matches_cpu(cfg):
    """Also that the CQT's 32768-tap convolution runs in full float32 on the GPU (not TF32)."""
    y = noisy_chord(2.0)
    np.testing.assert_allclose(
        audio_features(y, cfg, device="cuda"), audio_features(y, cfg), atol=1e-3
    )


@BOTH
def test_features_do_not_depend_on_the_cpus_blas_code_path(tmp_path, cfg):
    """The same features, to the bit, when MKL takes another code path (MKL_CBWR=COMPATIBLE: the
    SSE2 kernels every x86 CPU runs), as on a host of another vendor or cache size: in float32
    the CQT's 32768-tap sums came out in another order there and the features differed in their
    last bits, so every model trained on them did."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    audio = (
        tone([(55.0, 0.3), (440.0, 0.1), (1318.5, 0.05)], 3.0) + 0.01 * rng.normal(size=48000)
    ).astype(np.float32)
    np.save(tmp_path / "audio.npy", audio)
    script = (
        "import sys, numpy as np; from mtlib.features import FeatureConfig, audio_features; "
        f"np.save(sys.argv[1], audio_features(np.load(sys.argv[2]), FeatureConfig(**{cfg.__dict__!r})))"
    )
    runs = {}
    for name, env in {"default": {}, "compatible": {"MKL_CBWR": "COMPATIBLE"}}.items():
        out = tmp_path / f"{name}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(out), str(tmp_path / "audio.npy")],
            env={**os.environ, **env},
            check=True,
        )
        runs[name] = np.load(out)
    assert runs["default"].tobytes() == runs["compatible"].tobytes()
    assert runs["default"].tobytes() == audio_features(audio, cfg).tobytes()  # and in-process


def test_config_rejects_odd_fft_and_fmax_above_nyquist():
    with pytest.raises(ValueError, match="n_fft must be even"):
        FeatureConfig(n_fft=2047)
    with pytest.raises(ValueError, match="fmax"):
        FeatureConfig(sample_rate=16000, fmax=9000.0)
    assert FeatureConfig().describe()["mel_scale"] == "slaney"


def test_config_validates_the_cqt_settings():
    with pytest.raises(
        ValueError, match=r"audio\.features must be one of logmel, cqt, hcqt, got 'stft'"
    ):
        FeatureConfig(features="stft")
    for key, bad in (
        ("bins_per_semitone", 0),
        ("cqt_octaves", 0),
        ("bins_per_semitone", 2.5),
        ("cqt_octaves", True),
    ):
        with pytest.raises(ValueError, match=rf"audio\.{key} must be a whole number >= 1"):
            FeatureConfig(features="cqt", **{key: bad})
    with pytest.raises(ValueError, match=r"audio\.cqt_fmin must be > 0"):
        FeatureConfig(features="cqt", cqt_fmin=0.0)
    with pytest.raises(ValueError, match=r"audio\.cqt_filter_scale must be > 0"):
        FeatureConfig(features="cqt", cqt_filter_scale=0.0)
    # A ninth octave from A0 (to 13.8 kHz), or eight at 12 kHz audio, pass the Nyquist frequency.
    with pytest.raises(
        ValueError, match=r"audio\.cqt_octaves = 9 .* above the Nyquist frequency 8000 Hz"
    ):
        FeatureConfig(features="cqt", cqt_octaves=9)
    with pytest.raises(ValueError, match=r"Nyquist frequency 6000 Hz"):
        FeatureConfig(features="cqt", sample_rate=12000, fmax=6000.0)
    FeatureConfig(
        features="logmel", cqt_octaves=9
    )  # the cqt range does not concern a logmel front end
    assert (
        FeatureConfig(features="cqt", cqt_octaves=7, sample_rate=12000, fmax=6000.0).n_bins
        == 7 * 36
    )


def test_hcqt_is_the_cqt_with_harmonic_shifts_for_the_model():
    """hcqt stores the cqt's features exactly; the model stacks its harmonics at bins
    round(36 * log2 h) apart (3 bins per semitone)."""
    hcqt = FeatureConfig(features="hcqt")
    assert hcqt.harmonic_shifts == (-36, 0, 36, 57, 72, 84)  # 0.5, 1, 2, 3, 4, 5
    assert CQT.harmonic_shifts == () and CFG.harmonic_shifts == ()
    assert (hcqt.n_bins, hcqt.window_length, silent_power(hcqt)) == (
        288,
        32768,
        silent_power(CQT),
    )
    assert FeatureConfig(features="hcqt", harmonics=[1, 2]).harmonics == (1.0, 2.0)  # YAML list
    assert hcqt.describe()["harmonic_shifts"] == [-36, 0, 36, 57, 72, 84]
    assert "harmonics" not in CQT.describe() and "harmonics" not in CFG.describe()
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert np.array_equal(audio_features(audio, hcqt), audio_features(audio, CQT))
    for bad in ([], [0.0, 1.0], [1.0, 1.001]):
        with pytest.raises(ValueError, match=r"audio\.harmonics must be distinct positive"):
            FeatureConfig(features="hcqt", harmonics=bad)


def test_n_bins_window_and_describe():
    assert (CFG.n_bins, CFG.window_length) == (128, 2048)
    assert (CQT.n_bins, CQT.window_length) == (
        288,
        32768,
    )  # the A0 kernel: ceil(51.4 * 16000 / 27.5) = 29929 samples
    assert FeatureConfig(features="cqt", bins_per_semitone=2, cqt_filter_scale=0.5).n_bins == 192
    assert FeatureConfig(features="cqt", cqt_filter_scale=0.5).window_length == 16384
    mel, cqt = CFG.describe(), CQT.describe()
    assert mel["features"] == "logmel" and mel["n_bins"] == 128 and mel["mel_scale"] == "slaney"
    assert {
        k: cqt[k]
        for k in (
            "features",
            "bins_per_semitone",
            "cqt_fmin",
            "cqt_octaves",
            "cqt_filter_scale",
            "n_bins",
        )
    } == {
        "features": "cqt",
        "bins_per_semitone": 3,
        "cqt_fmin": 27.5,
        "cqt_octaves": 8,
        "cqt_filter_scale": 1.0,
        "n_bins": 288,
    }
    assert cqt["window_length"] == 32768 and "nnAudio" in cqt["cqt"] and "mel_scale" not in cqt
    assert round(cqt["cqt_fmax"]) == 6906


def test_cqt_config_round_trips_through_params_features_dir_and_checkpoint(tmp_path):
    """params.yaml `audio:` → segment stage's config.json → checkpoint → Transcriber.load: the same cqt FeatureConfig,
    and the model's input width is its n_bins."""
    import json

    from mtlib.decode import DecodeConfig
    from mtlib.models import build_model, save_checkpoint
    from mtlib.params import config_from
    from mtlib.segments import SegmentConfig, read_feature_config, write_feature_config
    from mtlib.transcriber import Transcriber
    from mtlib.vocab import Vocabulary

    cfg = config_from(
        FeatureConfig,
        {
            "sample_rate": 16000,
            "hop_length": 512,
            "features": "cqt",
            "bins_per_semitone": 3,
            "cqt_fmin": 27.5,
            "cqt_octaves": 8,
            "cqt_filter_scale": 0.5,
        },
        "audio",
    )
    write_feature_config(tmp_path / "config.json", cfg, SegmentConfig())
    assert json.loads((tmp_path / "config.json").read_text())["audio"]["features"] == "cqt"
    fcfg, seg_frames = read_feature_config(tmp_path)
    assert fcfg == cfg and fcfg.n_bins == 288
    vocab = Vocabulary()

    def checkpoint(path, features: dict, n_bins: int):
        model = build_model(
            "ctc",
            {
                "encoder": {"cnn_channels": [4, 4], "lstm_hidden": 8, "proj_dim": 8},
                "n_mels": n_bins,
                "n_pitches": vocab.ctc.n_pitches,
            },
            vocab,
        )
        save_checkpoint(
            path,
            model,
            {
                "kind": "ctc",
                "features": features,
                "seg_frames": seg_frames,
                "vocab": {"max_shift": 64, "min_pitch": 21, "max_pitch": 108},
            },
        )
        t = Transcriber.load(
            path, device="cpu", decoding=DecodeConfig()
        )  # no decoding bundle: no warning
        return t.model, t.kind, t.features

    loaded, kind, lcfg = checkpoint(tmp_path / "m.pt", fcfg.describe(), fcfg.n_bins)
    assert kind == "ctc" and lcfg == cfg and loaded.encoder.cfg.n_mels == lcfg.n_bins
    # A checkpoint from before the cqt option (no `features` key) still loads as logmel.
    new_keys = {
        "features",
        "bins_per_semitone",
        "cqt_fmin",
        "cqt_octaves",
        "cqt_filter_scale",
        "n_bins",
    }
    old = {k: v for k, v in CFG.describe().items() if k not in new_keys}
    assert checkpoint(tmp_path / "old.pt", old, 128)[2] == CFG


@BOTH
@pytest.mark.parametrize(
    "rate,channels,block_seconds", [(48000, 2, 0.37), (16000, 1, 0.05), (44100, 3, 10.0)]
)
def test_streamed_features_equal_whole_file_features(tmp_path, rate, channels, block_seconds, cfg):
    """Blocks of any size (smaller than a frame's window, or the whole file) give the same frames."""
    import soundfile as sf

    from mtlib.features import stream_track_features

    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((int(2.3 * rate) + 17, channels))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(str(path), audio, rate, subtype="FLOAT")
    streamed, file_rate = stream_track_features(path, cfg, block_seconds=block_seconds)
    whole = track_features(path, cfg)
    assert file_rate == rate and streamed.shape == whole.shape and whole.shape[1] == cfg.n_bins
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_streamed_features_name_an_unreadable_file(tmp_path):
    from mtlib.errors import AudioError
    from mtlib.features import stream_track_features

    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(AudioError, match=r"notes\.wav.*unreadable audio"):
        stream_track_features(path, CFG)
