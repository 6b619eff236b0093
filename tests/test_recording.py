"""The demo's recording chain: seeded and reproducible, meets the drawn level and SNR, tilts the
spectrum the drawn way, and never moves the audio in time (the labels stay as rendered)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml
from scipy.signal import correlate, welch

from mtlib.recording import (
    NOISE_COLORS,
    PEAK_CEILING,
    UNSEEN_ROOM,
    Chain,
    RecordingConfig,
    apply_chain,
    colored_noise,
    draw_chain,
    record,
)

SR = 44100
ONE_MS = SR // 1000

# Every stage on and strong: the heaviest training room, full tilt, a fast compressor, noise.
HEAVY = Chain(
    level_db=-25.0,
    room_size=0.75,
    damping=0.5,
    wet=0.35,
    tilt_db=6.0,
    tilt_pivot_hz=1000.0,
    compress=True,
    compress_threshold_db=0.0,
    compress_ratio=4.0,
    compress_attack_ms=5.0,
    compress_release_ms=50.0,
    noise_color="white",
    noise_snr_db=40.0,
)
DRY = replace(HEAVY, wet=0.0, tilt_db=0.0, compress=False, noise_color=None)


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def notes(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Music-like test audio: decaying sines at random times and pitches (crest factor ~15-20 dB)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros(t.size)
    for onset in rng.uniform(0, seconds - 0.2, size=int(8 * seconds)):
        f = 440 * 2 ** (rng.integers(-24, 24) / 12)
        on = t >= onset
        x[on] += (
            rng.uniform(0.2, 1)
            * np.sin(2 * np.pi * f * (t[on] - onset))
            * np.exp(-4 * (t[on] - onset))
        )
    return (0.1 * x).astype(np.float32)


def band_db(x: np.ndarray, low: float, high: float) -> float:
    f, p = welch(x, SR, nperseg=4096)
    return 10 * np.log10(p[(f >= low) & (f < high)].mean())


# ---------------------------------------------------------------- seeding


def test_same_seed_is_bit_identical_and_another_seed_differs():
    x, cfg = notes(), RecordingConfig()

    def run(seed: int) -> tuple[Chain, np.ndarray]:
        rng = np.random.default_rng(seed)
        chain = draw_chain(rng, cfg)
        return chain, apply_chain(x, SR, chain, rng)

    (c1, y1), (c2, y2), (c3, y3) = run(7), run(7), run(8)
    assert c1 == c2 and y1.tobytes() == y2.tobytes()
    assert c1 != c3 and not np.array_equal(y1, y3)
    # the noise comes from the rng given to apply_chain: same chain, other rng → other noise
    other = apply_chain(x, SR, c1, np.random.default_rng(99))
    assert not np.array_equal(y1, other)


def test_draws_stay_in_the_configured_ranges():
    cfg = RecordingConfig()
    chains = [draw_chain(np.random.default_rng(s), cfg) for s in range(200)]
    for name in (
        "level_db",
        "room_size",
        "damping",
        "wet",
        "tilt_db",
        "tilt_pivot_hz",
        "compress_threshold_db",
        "compress_ratio",
        "compress_attack_ms",
        "compress_release_ms",
        "noise_snr_db",
    ):
        low, high = getattr(cfg, name)
        values = np.array([getattr(c, name) for c in chains])
        assert values.min() >= low and values.max() <= high, name
        assert values.max() - values.min() > 0.8 * (high - low), f"{name} does not cover its range"
    assert {c.noise_color for c in chains} == set(cfg.noise_colors)
    assert 0.35 < np.mean([c.compress for c in chains]) < 0.65
    assert all(c.actual_level_db is None for c in chains)


def test_stages_turned_off_in_the_config_are_off():
    cfg = RecordingConfig(wet=[0, 0], tilt_db=[0, 0], compress_probability=0, noise_colors=[])
    x = notes()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        chain = draw_chain(rng, cfg)
        assert chain.noise_color is None and not chain.compress
        y = apply_chain(x, SR, chain, rng)
        gain = float(y @ x) / float(x @ x)  # only a gain is left: the output is the input scaled
        np.testing.assert_allclose(y, gain * x, atol=1e-6)


def test_describe_is_plain_json():
    chain = draw_chain(np.random.default_rng(0), RecordingConfig())
    d = chain.describe()
    assert json.loads(json.dumps(d)) == d
    assert all(v is None or type(v) in (float, bool, str) for v in d.values())
    _, done = record(notes(), SR, chain, np.random.default_rng(0))
    assert type(done.describe()["actual_level_db"]) is float


# ---------------------------------------------------------------- level


@pytest.mark.parametrize("level", [-45.0, -30.0, -20.0])
def test_the_drawn_level_is_met(level):
    y, done = record(notes(), SR, replace(HEAVY, level_db=level), np.random.default_rng(0))
    assert abs(rms_db(y) - level) < 0.5
    assert done.actual_level_db == pytest.approx(level, abs=0.01)
    assert np.abs(y).max() <= 1.0 and y.dtype == np.float32 and y.shape == (2 * SR,)


def test_a_level_too_loud_for_the_peaks_is_scaled_down_not_clipped():
    x = np.zeros(SR, np.float32)
    x[::4410] = 0.5  # clicks: crest factor ~20 dB, so -12 dBFS RMS would put peaks near +8 dBFS
    y, done = record(x, SR, replace(DRY, level_db=-12.0), np.random.default_rng(0))
    assert np.abs(y).max() == pytest.approx(PEAK_CEILING, rel=1e-5)
    assert done.actual_level_db < -12.0 - 3
    assert done.actual_level_db == pytest.approx(rms_db(y), abs=0.01)
    np.testing.assert_allclose(y, x * (y[0] / x[0]), atol=1e-7)  # scaled only: every click intact


def test_silence_stays_silent_and_bad_audio_is_refused():
    y, done = record(np.zeros(1000, np.float32), SR, HEAVY, np.random.default_rng(0))
    assert not np.any(y) and done.actual_level_db is None
    with pytest.raises(ValueError, match="mono"):
        apply_chain(np.zeros((2, 100), np.float32), SR, HEAVY, np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        apply_chain(np.full(100, np.nan, np.float32), SR, HEAVY, np.random.default_rng(0))
    with pytest.raises(ValueError, match="Nyquist"):
        apply_chain(notes(0.5), 1600, HEAVY, np.random.default_rng(0))


# ---------------------------------------------------------------- timing


@pytest.mark.parametrize("tilt", [-6.0, 6.0])
@pytest.mark.parametrize("compress", [False, True])
def test_a_burst_starts_where_it_started(tilt, compress):
    start = SR // 2 + 123
    x = np.zeros(SR + SR // 2, np.float32)
    t = np.arange(SR // 2) / SR
    x[start : start + t.size] = (
        0.3 * np.cos(2 * np.pi * 220 * t) * np.exp(-3 * t)
    )  # full level at its first sample
    chain = replace(HEAVY, tilt_db=tilt, compress=compress, noise_snr_db=60.0)
    y = np.abs(apply_chain(x, SR, chain, np.random.default_rng(0)))
    floor = y[: start - ONE_MS].max()  # the noise before the burst
    onset = int(np.argmax(y > 10 * floor))
    assert abs(onset - start) <= ONE_MS


@pytest.mark.parametrize("tilt", [-6.0, 6.0])
def test_a_click_train_is_not_shifted(tilt):
    rng = np.random.default_rng(3)
    x = np.zeros(2 * SR, np.float32)
    x[np.cumsum(rng.integers(2000, 9000, size=15))] = 1.0  # irregular gaps: no periodic ambiguity
    y = apply_chain(x, SR, replace(HEAVY, tilt_db=tilt), np.random.default_rng(0))
    xcorr = correlate(y, x, mode="full", method="fft")
    assert int(np.argmax(np.abs(xcorr))) - (x.size - 1) == 0


# ---------------------------------------------------------------- room and compressor


def test_larger_rooms_ring_longer():
    """Energy 0.3-0.8 s after a burst ends, relative to the burst: none dry, more in each larger
    room (the unseen hall rings longer than the largest training room)."""
    x = np.zeros(2 * SR, np.float32)
    x[: SR // 4] = colored_noise(SR // 4, SR, "white", np.random.default_rng(0))
    quiet = replace(DRY, level_db=-30.0)
    after = slice(SR // 4 + int(0.3 * SR), SR // 4 + int(0.8 * SR))
    dry = apply_chain(x, SR, quiet, np.random.default_rng(0))
    assert not np.any(dry[SR // 4 :])  # dry: digital silence after the burst
    tails = []
    for room in (0.05, 0.75, UNSEEN_ROOM.room_size[0]):
        y = apply_chain(x, SR, replace(quiet, room_size=room, wet=0.35), np.random.default_rng(0))
        tails.append(rms_db(y[after]) - rms_db(y[: SR // 4]))
    assert tails[0] + 10 < tails[1] < tails[2] - 3


def test_compression_narrows_loud_against_quiet():
    x = np.zeros(2 * SR, np.float32)
    t = np.arange(SR // 2) / SR
    x[: t.size] = 0.5 * np.sin(2 * np.pi * 330 * t)  # loud passage
    x[SR : SR + t.size] = 0.05 * np.sin(2 * np.pi * 330 * t)  # quiet passage, 20 dB down

    def spread(compress: bool) -> float:
        y = apply_chain(x, SR, replace(DRY, compress=compress), np.random.default_rng(0))
        return rms_db(y[SR // 4 : SR // 2]) - rms_db(y[SR + SR // 4 : SR + SR // 2])

    assert spread(False) == pytest.approx(20.0, abs=0.1)
    assert spread(True) < 20.0 - 3  # threshold at the RMS, ratio 4: the loud passage is turned down


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize("color", sorted(NOISE_COLORS))
def test_the_noise_is_at_the_drawn_snr(color):
    """The same chain with and without noise: the music part is the same up to a gain (the level
    stage), so projecting on the clean output leaves the noise, whatever the room/EQ/compressor did."""
    x = notes()
    clean = apply_chain(x, SR, replace(HEAVY, noise_color=None), np.random.default_rng(0)).astype(
        np.float64
    )
    noisy = apply_chain(
        x, SR, replace(HEAVY, noise_color=color, noise_snr_db=25.0), np.random.default_rng(0)
    ).astype(np.float64)
    music = clean * (noisy @ clean) / (clean @ clean)
    assert rms_db(music) - rms_db(noisy - music) == pytest.approx(25.0, abs=0.3)


@pytest.mark.parametrize("color", sorted(NOISE_COLORS))
def test_noise_colors_have_their_spectral_slopes(color):
    noise = colored_noise(
        4 * SR + 1, SR, color, np.random.default_rng(0)
    )  # odd length: trimmed FFT size
    assert noise.shape == (4 * SR + 1,) and rms_db(noise) == pytest.approx(0.0, abs=0.01)
    f, p = welch(noise, SR, nperseg=8192)
    band = (f >= 100) & (f <= 10000)
    slope = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert slope == pytest.approx(-NOISE_COLORS[color], abs=0.1)
    power = np.abs(np.fft.rfft(noise)) ** 2
    below = (
        np.fft.rfftfreq(noise.size, 1 / SR) < 15
    )  # under NOISE_LOW_HZ: about half of plain brown noise
    assert power[below].sum() < 0.01 * power.sum()


# ---------------------------------------------------------------- EQ tilt


@pytest.mark.parametrize("tilt", [-6.0, 0.0, 6.0])
def test_tilt_brightens_or_darkens_as_signed(tilt):
    x = colored_noise(2 * SR, SR, "white", np.random.default_rng(1))
    y = apply_chain(x, SR, replace(DRY, tilt_db=tilt), np.random.default_rng(0))
    brighter = (band_db(y, 5000, 15000) - band_db(y, 40, 200)) - (
        band_db(x, 5000, 15000) - band_db(x, 40, 200)
    )
    assert brighter == pytest.approx(tilt, abs=1.0)


# ---------------------------------------------------------------- configs


def test_unseen_room_is_larger_than_any_training_room():
    train = RecordingConfig()
    assert UNSEEN_ROOM.room_size[0] > train.room_size[1]
    assert UNSEEN_ROOM.wet[1] > train.wet[1]
    assert (
        replace(UNSEEN_ROOM, room_size=train.room_size, wet=train.wet) == train
    )  # only the room differs


def test_config_from_yaml_lists():
    values = yaml.safe_load(
        "level_db: [-40, -20]\nroom_size: [0.1, 0.5]\nnoise_colors: [pink]\n"
        "compress_probability: 1\n"
    )
    cfg = RecordingConfig(**values)
    assert (
        cfg.level_db == (-40.0, -20.0)
        and cfg.room_size == (0.1, 0.5)
        and cfg.noise_colors == ("pink",)
    )
    assert cfg.compress_probability == 1.0
    assert hash(cfg) == hash(RecordingConfig(**values))  # frozen and hashable after the conversion


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("level_db", [-20, 3], r"demo\.recording\.level_db must lie within"),
        ("room_size", [0.8, 0.2], r"demo\.recording\.room_size: low 0\.8 is above high 0\.2"),
        ("wet", 0.3, r"demo\.recording\.wet must be a \[low, high\] pair"),
        ("damping", ["a", 1], r"demo\.recording\.damping must hold two finite numbers"),
        ("tilt_db", [-6, 6, 0], r"demo\.recording\.tilt_db must be a \[low, high\] pair"),
        ("tilt_pivot_hz", [0, 1000], r"demo\.recording\.tilt_pivot_hz must lie within"),
        ("compress_ratio", [0.5, 2], r"demo\.recording\.compress_ratio must lie within"),
        (
            "noise_snr_db",
            [20, float("inf")],
            r"demo\.recording\.noise_snr_db must hold two finite numbers",
        ),
        (
            "compress_probability",
            1.5,
            r"demo\.recording\.compress_probability must be a number in \[0, 1\]",
        ),
        (
            "noise_colors",
            ["pink", "purple"],
            r"demo\.recording\.noise_colors: unknown colour\(s\) \['purple'\]",
        ),
        ("noise_colors", "pink", r"demo\.recording\.noise_colors must be a list"),
    ],
)
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        RecordingConfig(**{key: value})
