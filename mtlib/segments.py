"""The segment index and the per-track featurize-and-save step of the segment stage.

Features are stored as one float16 `.npy` per track (memory-mappable, so a training batch reads
one segment without touching the rest of the track); segments are rows of an index
(track, segment, start_frame, n_frames), never copies of the features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlib.features import FeatureConfig
from mtlib.musicnet import MusicNetWarning, Track
from mtlib.timebase import seconds_to_frame

FEATURE_DTYPE = np.float16
TRACK_COLUMNS = [
    "track",
    "split",
    "audio",
    "labels",
    "file_rate",
    "duration",
    "n_frames",
    "features",
]
SEGMENT_COLUMNS = ["track", "split", "segment", "start_frame", "n_frames"]


@dataclass(frozen=True)
class SegmentConfig:
    """The `segment` section of params.yaml."""

    seconds: float = 4.0
    hop_seconds: float = 2.0
    workers: int = 2

    def frames(self, cfg: FeatureConfig) -> tuple[int, int]:
        """(frames per segment, frames between segment starts) at the feature frame rate."""
        seg_frames = seconds_to_frame(self.seconds, cfg.sample_rate, cfg.hop_length)
        hop_frames = seconds_to_frame(self.hop_seconds, cfg.sample_rate, cfg.hop_length)
        if seg_frames < 1 or hop_frames < 1:
            raise ValueError(
                f"params.yaml: segment.seconds={self.seconds} and segment.hop_seconds="
                f"{self.hop_seconds} must each be at least one frame ({cfg.hop_length / cfg.sample_rate:g} s)"
            )
        if hop_frames > seg_frames:
            raise ValueError(
                f"params.yaml: segment.hop_seconds={self.hop_seconds} exceeds segment.seconds="
                f"{self.seconds}: segments would leave gaps"
            )
        return seg_frames, hop_frames


@dataclass(frozen=True)
class TrackFeatures:
    """What featurizing one track produced: a row of tracks.parquet plus its segments."""

    track: str
    split: str
    audio: str
    labels: str
    file_rate: int
    duration: float  # seconds, from the audio file's own length and rate
    n_frames: int
    features: str  # path of the track's .npy (its final location, not the temporary one)
    starts: tuple[int, ...]
    lengths: tuple[int, ...]

    def track_row(self) -> dict:
        return {
            "track": self.track,
            "split": self.split,
            "audio": self.audio,
            "labels": self.labels,
            "file_rate": self.file_rate,
            "duration": self.duration,
            "n_frames": self.n_frames,
            "features": self.features,
        }

    def segment_rows(self) -> list[dict]:
        return [
            {
                "track": self.track,
                "split": self.split,
                "segment": i,
                "start_frame": s,
                "n_frames": n,
            }
            for i, (s, n) in enumerate(zip(self.starts, self.lengths))
        ]


def segment_starts(n_frames: int, seg_frames: int, hop_frames: int) -> np.ndarray:
    """Start frames 0, hop, 2*hop, ... of the fewest segments that cover [0, n_frames).

    Each segment spans [start, min(start + seg_frames, n_frames)); only the last may be shorter.
    A track shorter than one segment gets a single short segment."""
    if seg_frames < 1 or not 1 <= hop_frames <= seg_frames:
        raise ValueError(
            f"need 1 <= hop_frames <= seg_frames, got hop {hop_frames}, segment {seg_frames}"
        )
    if n_frames < 1:
        raise ValueError(f"a track has at least one frame, got n_frames={n_frames}")
    n_more = -(-max(n_frames - seg_frames, 0) // hop_frames)  # ceil division
    return np.arange(n_more + 1, dtype=np.int64) * hop_frames


def segment_lengths(starts: np.ndarray, n_frames: int, seg_frames: int) -> np.ndarray:
    """Frames in each segment beginning at `starts` (seg_frames, or fewer at the track's end)."""
    return np.minimum(seg_frames, n_frames - np.asarray(starts, dtype=np.int64))


def featurize_track(
    track: Track,
    out_dir: str | Path,
    cfg: FeatureConfig,
    seg: SegmentConfig,
    final_dir: str | Path | None = None,
    device=None,
) -> TrackFeatures:
    """Featurize one track, save `<out_dir>/<id>.npy` (float16, atomically) and index its segments.

    `final_dir` is where `out_dir` will end up (the segment stage writes into a temporary folder
    that is renamed at the end); the recorded features path points there. Only this track's
    audio and features are held in memory. Warns (MusicNetWarning, naming the audio file) if the
    track is shorter than one segment."""
    from mtlib.audio import audio_info
    from mtlib.features import track_features
    from mtlib.io import atomic_path

    seg_frames, hop_frames = seg.frames(cfg)
    file_rate, file_samples, _ = audio_info(track.audio)
    features = track_features(track.audio, cfg, device)  # (T, n_mels) float32
    n_frames = features.shape[0]
    if n_frames < seg_frames:
        warnings.warn(
            MusicNetWarning(
                f"{track.audio}: track is shorter than one segment ({n_frames} frames < {seg_frames}); "
                "it becomes one short segment"
            ),
            stacklevel=2,
        )
    path = Path(out_dir) / f"{track.id}.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, features.astype(FEATURE_DTYPE))
    starts = segment_starts(n_frames, seg_frames, hop_frames)
    lengths = segment_lengths(starts, n_frames, seg_frames)
    return TrackFeatures(
        track=track.id,
        split=track.split,
        audio=str(track.audio),
        labels=str(track.labels),
        file_rate=file_rate,
        duration=file_samples / file_rate,
        n_frames=int(n_frames),
        features=str(Path(final_dir if final_dir is not None else out_dir) / path.name),
        starts=tuple(int(s) for s in starts),
        lengths=tuple(int(n) for n in lengths),
    )


def featurize_track_job(
    track: Track, out_dir: str, cfg: FeatureConfig, seg: SegmentConfig, final_dir: str
) -> tuple[TrackFeatures | None, list[str], tuple[str, str] | None]:
    """`featurize_track` for a worker process: (result, warning texts, (path, problem) of an error).

    Warnings and MusicNet errors travel back as plain data, so the parent process shows them
    (a worker's warnings would otherwise vanish into its stderr, and MusicNetFormatError does not
    survive pickling)."""
    from mtlib.errors import MusicNetFormatError

    result, error = None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = featurize_track(track, out_dir, cfg, seg, final_dir)
        except MusicNetFormatError as exc:
            error = (exc.path, exc.problem)
    return (
        result,
        [str(w.message) for w in caught if issubclass(w.category, MusicNetWarning)],
        error,
    )


def init_worker() -> None:
    """Each worker process uses one torch thread: parallelism comes from the processes."""
    import torch

    torch.set_num_threads(1)


def featurize_tracks(
    tracks: list[Track],
    out_dir: str | Path,
    cfg: FeatureConfig,
    seg: SegmentConfig,
    final_dir: str | Path,
    on_done=None,
) -> list[TrackFeatures]:
    """Featurize every track into `out_dir`, over `seg.workers` processes (in-process when 1).

    Returns results in the order of `tracks`; `on_done(track)` is called as each one finishes
    (a progress bar). Warnings from workers are re-issued here; the first error is raised."""
    import concurrent.futures as cf
    import multiprocessing

    from mtlib.errors import MusicNetFormatError

    ids = [t.id for t in tracks]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise MusicNetFormatError(
            tracks[0].audio.parent.parent, f"track id(s) {', '.join(dup)} appear in two splits"
        )
    jobs = (str(out_dir), cfg, seg, str(final_dir))
    results: dict[str, TrackFeatures] = {}

    def collect(track: Track, outcome) -> None:
        result, messages, error = outcome
        for text in messages:
            warnings.warn(MusicNetWarning(text), stacklevel=3)
        if error is not None:
            raise MusicNetFormatError(*error)
        results[track.id] = result
        if on_done is not None:
            on_done(track)

    if seg.workers <= 1:
        for track in tracks:
            collect(track, featurize_track_job(track, *jobs))
    else:
        # spawn: workers start clean instead of forking a parent that may hold torch/OpenMP state.
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(seg.workers, mp_context=ctx, initializer=init_worker) as pool:
            futures = {pool.submit(featurize_track_job, t, *jobs): t for t in tracks}
            try:
                for future in cf.as_completed(futures):
                    collect(futures[future], future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return [results[t.id] for t in tracks]


def write_index(results: list[TrackFeatures], out_dir: str | Path) -> None:
    """tracks.parquet (one row per track) and segments.parquet (one row per segment) in `out_dir`."""
    import pandas as pd

    out_dir = Path(out_dir)
    tracks = pd.DataFrame([r.track_row() for r in results], columns=TRACK_COLUMNS)
    segments = pd.DataFrame(
        [row for r in results for row in r.segment_rows()], columns=SEGMENT_COLUMNS
    )
    tracks = tracks.astype({"file_rate": "int64", "duration": "float64", "n_frames": "int64"})
    segments = segments.astype({"segment": "int64", "start_frame": "int64", "n_frames": "int64"})
    tracks.to_parquet(out_dir / "tracks.parquet", index=False)
    segments.to_parquet(out_dir / "segments.parquet", index=False)


def write_feature_config(path: str | Path, cfg: FeatureConfig, seg: SegmentConfig) -> None:
    """The feature and segment definitions beside the features, so later stages (and checkpoints)
    take them from the data they read rather than from today's params.yaml."""
    import dataclasses
    import json

    seg_frames, hop_frames = seg.frames(cfg)
    Path(path).write_text(
        json.dumps(
            {
                "audio": cfg.describe(),
                "segment": dataclasses.asdict(seg),
                "seg_frames": seg_frames,
                "hop_frames": hop_frames,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def read_feature_config(features_dir: str | Path) -> tuple[FeatureConfig, int]:
    """(FeatureConfig, frames per segment) stored by the segment stage in `features_dir`."""
    import json

    path = Path(features_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; rerun the segment stage (dvc repro segment)")
    d = json.loads(path.read_text())
    return FeatureConfig.from_dict(d["audio"]), int(d["seg_frames"])
