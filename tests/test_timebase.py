import numpy as np
import pytest

from mtlib.timebase import (
    frame_to_seconds,
    num_frames,
    sample_to_frame,
    seconds_to_frame,
    seconds_to_samples,
)


def test_sample_to_frame_without_resampling_is_the_seed_formula():
    samples = np.array([0, 255, 256, 257, 44100, 123457])
    assert list(sample_to_frame(samples, 16000, 16000, 256)) == list(samples // 256)


def test_sample_to_frame_with_resampling_known_answers():
    # 44.1 kHz labels, 16 kHz features, hop 512: 1 s = 31.25 frames
    assert sample_to_frame(44100, 44100, 16000, 512) == 31
    assert sample_to_frame(0, 44100, 16000, 512) == 0
    # exactly on a frame boundary: frame 1 starts at 512/16000 s = 1411.2 samples at 44.1 kHz
    assert sample_to_frame(1411, 44100, 16000, 512) == 0
    assert sample_to_frame(1412, 44100, 16000, 512) == 1
    # 2 s at 44.1 kHz is 62.5 frames of 32 ms → frame 62
    assert sample_to_frame(88200, 44100, 16000, 512) == 62
    # scalar and vector agree
    s = np.arange(0, 441000, 977)
    assert list(sample_to_frame(s, 44100, 16000, 512)) == [
        sample_to_frame(int(x), 44100, 16000, 512) for x in s
    ]


@pytest.mark.parametrize(
    "file_rate,sr,hop",
    [(44100, 16000, 512), (44100, 16000, 256), (16000, 16000, 256), (48000, 22050, 512)],
)
def test_seconds_and_samples_agree_with_sample_to_frame(file_rate, sr, hop):
    samples = np.arange(0, 10 * file_rate, 1237)
    secs = samples / file_rate
    assert np.array_equal(
        seconds_to_frame(secs, sr, hop), sample_to_frame(samples, file_rate, sr, hop)
    )


def test_frame_seconds_round_trip_and_frame_count_matches_duration():
    frames = np.arange(0, 500)
    assert np.array_equal(
        seconds_to_frame(frame_to_seconds(frames, 16000, 512), 16000, 512), frames
    )
    # a 10 s signal at 16 kHz with hop 512 (centered STFT) has 313 frames
    assert num_frames(160000, 16000, 512) == 313
    assert seconds_to_samples(1.5, 44100) == 66150
