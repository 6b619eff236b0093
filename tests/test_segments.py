"""Segment index and the segment stage on a tiny MusicNet folder written in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.features import FeatureConfig, track_features
from mtlib.musicnet import MusicNetWarning, list_tracks
from mtlib.notes import Note
from mtlib.segments import (
    SegmentConfig,
    featurize_track,
    featurize_track_job,
    segment_lengths,
    segment_starts,
)
from mtlib.timebase import num_frames
from tests.conftest import write_musicnet_track


@given(n_frames=st.integers(1, 2000), seg=st.integers(1, 200), hop_fraction=st.floats(0.01, 1.0))
@settings(max_examples=200, deadline=None)
def test_segments_cover_the_track_exactly(n_frames, seg, hop_fraction):
    hop = max(1, int(seg * hop_fraction))
    starts = segment_starts(n_frames, seg, hop)
    lengths = segment_lengths(starts, n_frames, seg)
    assert starts[0] == 0 and np.all(np.diff(starts) == hop)
    assert np.all(lengths >= 1) and np.all(lengths[:-1] == seg)
    assert starts[-1] + lengths[-1] == n_frames  # reaches the end, never past it
    covered = np.zeros(n_frames, dtype=bool)
    for s, n in zip(starts, lengths):
        covered[s : s + n] = True
    assert covered.all()
    if len(starts) > 1:
        assert starts[-2] + seg < n_frames  # no redundant last segment


def test_segment_starts_known_answers():
    assert list(segment_starts(125, 125, 62)) == [0]
    assert list(segment_starts(126, 125, 62)) == [0, 62]
    assert list(segment_lengths(segment_starts(300, 125, 62), 300, 125)) == [125, 125, 125, 114]
    assert list(segment_starts(10, 125, 62)) == [0]
    with pytest.raises(ValueError, match="hop_frames"):
        segment_starts(100, 10, 11)


def test_segment_frames_come_from_timebase():
    cfg = FeatureConfig(sample_rate=16000, hop_length=512)
    assert SegmentConfig(4.0, 2.0).frames(cfg) == (125, 62)  # 31.25 frames per second, floored
    assert SegmentConfig(4.0, 2.0).frames(FeatureConfig(hop_length=256)) == (250, 125)
    with pytest.raises(ValueError, match="leave gaps"):
        SegmentConfig(2.0, 4.0).frames(cfg)


def write_params(tmp_path: Path, root: Path, workers: int = 1) -> Path:
    params = {
        "data": {"root": str(root)},
        "audio": {
            "sample_rate": 16000,
            "hop_length": 512,
            "n_fft": 2048,
            "n_mels": 64,
            "fmin": 30.0,
            "fmax": 8000.0,
        },
        "segment": {"seconds": 1.0, "hop_seconds": 0.5, "workers": workers},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_stage(params: Path, out: Path) -> None:
    from stages.segment import main

    main(params=params, out=out)


@pytest.mark.parametrize("workers", [1, 2])
def test_stage_writes_features_and_index(tmp_path, tiny_musicnet, workers):
    out = tmp_path / "features"
    run_stage(write_params(tmp_path, tiny_musicnet, workers), out)
    tracks = pd.read_parquet(out / "tracks.parquet")
    segments = pd.read_parquet(out / "segments.parquet")
    assert list(tracks.columns) == [
        "track",
        "split",
        "audio",
        "labels",
        "file_rate",
        "duration",
        "n_frames",
        "features",
    ]
    assert list(segments.columns) == ["track", "split", "segment", "start_frame", "n_frames"]
    assert list(tracks.track) == ["1", "2", "3"] and list(tracks.split) == [
        "train",
        "train",
        "test",
    ]
    assert list(tracks.file_rate) == [44100] * 3 and np.allclose(tracks.duration, 3.0)
    expected_frames = num_frames(3 * 16000, 16000, 512)  # 94
    assert list(tracks.n_frames) == [expected_frames] * 3
    for row in tracks.itertuples():
        features = np.load(row.features, mmap_mode="r")
        assert Path(row.features) == out / f"{row.track}.npy"
        assert features.dtype == np.float16 and features.shape == (expected_frames, 64)
        cfg = FeatureConfig(n_mels=64)
        np.testing.assert_allclose(features, track_features(row.audio, cfg), atol=0.02, rtol=2e-3)
        rows = segments[segments.track == row.track]
        assert list(rows.segment) == list(range(len(rows)))
        assert list(rows.start_frame) == list(segment_starts(expected_frames, 31, 15))
        assert rows.start_frame.iloc[-1] + rows.n_frames.iloc[-1] == expected_frames
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".features")
    ]  # no temporary left


def test_stage_resamples_stereo_48k_and_warns_on_short_track(tmp_path):
    import soundfile as sf

    root = tmp_path / "musicnet"
    notes = [Note(0.1, 0.4, 69, 1)]
    wav, _ = write_musicnet_track(root, "train", "7", notes, rate=48000, seconds=0.5)
    t = np.arange(24000) / 48000
    sf.write(
        str(wav), np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.3, 48000
    )
    out = tmp_path / "features"
    with pytest.warns(MusicNetWarning, match=r"7\.wav: track is shorter than one segment"):
        run_stage(write_params(tmp_path, root), out)
    tracks = pd.read_parquet(out / "tracks.parquet")
    assert tracks.file_rate.tolist() == [48000] and tracks.duration.tolist() == [0.5]
    assert tracks.n_frames.tolist() == [
        num_frames(8000, 16000, 512)
    ]  # resampled to 16 kHz: 16 frames
    segments = pd.read_parquet(out / "segments.parquet")
    assert segments[["segment", "start_frame", "n_frames"]].values.tolist() == [[0, 0, 16]]


def test_stage_names_a_bad_file_and_writes_nothing(tmp_path, tiny_musicnet):
    from mtlib.errors import MusicNetFormatError

    bad = tiny_musicnet / "train_data" / "2.wav"
    bad.write_bytes(b"not a wav file")
    out = tmp_path / "features"
    with pytest.raises(MusicNetFormatError, match=r"2\.wav: unreadable audio"):
        run_stage(write_params(tmp_path, tiny_musicnet), out)
    assert not out.exists()


def test_worker_job_returns_errors_and_warnings_as_data(tmp_path, tiny_musicnet):
    track = next(t for t in list_tracks(tiny_musicnet) if t.id == "1")
    result, messages, error = featurize_track_job(
        track, str(tmp_path), FeatureConfig(), SegmentConfig(60.0, 30.0), "final"
    )
    assert error is None and len(messages) == 1 and "shorter than one segment" in messages[0]
    assert result.features == str(Path("final") / "1.npy") and (tmp_path / "1.npy").exists()
    track.audio.write_bytes(b"garbage")
    result, _, error = featurize_track_job(
        track, str(tmp_path), FeatureConfig(), SegmentConfig(), "final"
    )
    assert result is None and error[0] == str(track.audio) and "unreadable audio" in error[1]


def test_featurize_track_records_final_path(tmp_path, tiny_musicnet):
    track = list_tracks(tiny_musicnet)[0]
    result = featurize_track(
        track, tmp_path / "tmp", FeatureConfig(), SegmentConfig(1.0, 0.5), final_dir="data/features"
    )
    assert result.features == "data/features/1.npy"
    assert result.track_row()["n_frames"] == 94 and len(result.segment_rows()) == len(result.starts)


def test_em_labels_run_through_segment_and_tokenize_without_the_csvs(tmp_path, tiny_musicnet):
    """data.labels: em: the track table points at MusicNet-EM's MIDI files, the label CSV folders
    are not needed, and tokenize reads the MIDI notes (every one of them becomes a target)."""
    import json
    import shutil

    from mtlib.midi import write_midi
    from mtlib.musicnet import list_tracks, read_track
    from stages.tokenize import main as tokenize

    n_notes = 0
    for t in list_tracks(tiny_musicnet):
        notes = read_track(t)
        n_notes += len(notes)
        write_midi(tiny_musicnet / "musicnet_em" / f"{t.id}.mid", notes)
    for split in ("train", "test"):
        shutil.rmtree(tiny_musicnet / f"{split}_labels")
    params = write_params(tmp_path, tiny_musicnet)
    p = yaml.safe_load(params.read_text())
    p["data"]["labels"] = "em"
    p["vocab"] = {"max_shift": 16, "min_pitch": 21, "max_pitch": 108}
    params.write_text(yaml.safe_dump(p))
    run_stage(params, tmp_path / "features")
    tracks = pd.read_parquet(tmp_path / "features" / "tracks.parquet")
    assert [Path(x).name for x in tracks.labels] == ["1.mid", "2.mid", "3.mid"]
    tokenize(params=params, features=tmp_path / "features", out=tmp_path / "tokens")
    assert json.loads((tmp_path / "tokens" / "stats.json").read_text())["notes"] == n_notes > 0
