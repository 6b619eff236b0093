"""From the segment index and tokens to training batches.

* `build_manifest`: one row per segment with its split (val = whole train tracks held out by
  seed), its features path and its token targets; `write_manifest` stores it as Parquet.
* `feature_stats`: per-mel-bin mean/std over the train split, for the model's input normalisation.
* `SegmentDataset` + `collate` + `BucketBatchSampler`: segments read from memory-mapped float16
  features, padded batches with lengths, masks and an onset piano roll, length-bucketed batches.

torch is imported only where a tensor is made, so building the manifest does not load it; the
dataset and sampler are plain map-style/iterable classes, which DataLoader accepts as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = [
    "split",
    "track",
    "segment",
    "start_frame",
    "n_frames",
    "features",
    "n_tokens",
    "n_ctc",
    "tokens",
    "ctc_tokens",
    "ctc_frames",
]
TOKEN_COLUMNS = [
    "track",
    "segment",
    "start_frame",
    "n_frames",
    "tokens",
    "ctc_tokens",
    "ctc_frames",
]
STD_FLOOR = 1e-3  # a constant mel bin (e.g. always silent) normalises to 0 instead of inf


@dataclass(frozen=True)
class SplitConfig:
    """The `split` section of params.yaml. `test` names the test split: "folder" (the tracks of
    `<root>/test_data/`), "musicnet_official" (MUSICNET_OFFICIAL_TEST, wherever they sit), "mt3"
    (MT3_TEST, with MT3_VALIDATION as the val tracks instead of a `val_fraction` draw), or a
    list of track ids; with all but "folder", every other track of the train and test folders
    trains. Extra `test_<name>` folders are always splits of their own."""

    val_fraction: float = 0.1
    seed: int = 0
    test: str | list = "folder"
    # draw val tracks per group of this musicnet_metadata.csv column, in proportion to each
    # group's train tracks ("" = one draw over all train tracks)
    stratify: str = "ensemble"

    def __post_init__(self) -> None:
        if not isinstance(self.stratify, str):
            raise ValueError(
                f'split.stratify: a musicnet_metadata.csv column or "" (none), got {self.stratify!r}'
            )
        t = self.test
        if isinstance(t, (list, tuple)):
            ids = [str(x) for x in t]
            if not ids or len(set(ids)) != len(ids):
                raise ValueError(f"split.test: a list of distinct track ids, got {t!r}")
            object.__setattr__(self, "test", ids)
        elif t not in NAMED_TEST_SPLITS:
            raise ValueError(
                f"split.test must be one of {', '.join(NAMED_TEST_SPLITS)} or a list of track ids, got {t!r}"
            )

    def test_ids(self) -> list[str] | None:
        """The test track ids, or None for "folder" (the test folder's tracks)."""
        if self.test == "folder":
            return None
        if isinstance(self.test, str):
            return list(NAMED_TEST_IDS[self.test])
        return list(self.test)

    def val_ids(self) -> list[str] | None:
        """The val track ids a named split fixes (NAMED_VAL_IDS: "mt3"), or None: drawn by
        `val_tracks`."""
        ids = NAMED_VAL_IDS.get(self.test) if isinstance(self.test, str) else None
        return None if ids is None else list(ids)

    def describe(self) -> str:
        """What `test` measured, for metrics files: "folder", "musicnet_official", "mt3", "ids:1,2"."""
        return self.test if isinstance(self.test, str) else "ids:" + ",".join(self.test)


# MusicNet's own test set: the 10 recordings it ships in test_data/ (Thickstun et al., ICLR 2017),
# the split papers mean by "the MusicNet test set". Kept by id so it survives any re-layout.
MUSICNET_OFFICIAL_TEST = (
    "1759",
    "1819",
    "2106",
    "2191",
    "2298",
    "2303",
    "2382",
    "2416",
    "2556",
    "2628",
)
# MT3's MusicNet split (Gardner et al., "MT3: Multi-Task Multitrack Music Transcription", ICLR
# 2022): 15 test and 15 validation recordings, every other one trains. MT3's code ships the split
# only inside its TFRecords; these ids are the ones YourMT3 lists as MT3's (Chang et al.,
# "YourMT3+", 2024: github.com/mimbres/YourMT3, amt/src/utils/preprocess/preprocess_musicnet.py,
# MUSICNET_SPLIT_INFO["test_mt3_acoustic"] and ["validation_mt3"]).
MT3_TEST = tuple(
    "1729 1776 1813 1893 2118 2186 2296 2431 2432 2487 2497 2501 2507 2537 2621".split()
)
MT3_VALIDATION = tuple(
    "1733 1765 1790 1818 2160 2198 2289 2300 2308 2315 2336 2466 2477 2504 2611".split()
)
NAMED_TEST_IDS = {"musicnet_official": MUSICNET_OFFICIAL_TEST, "mt3": MT3_TEST}
NAMED_VAL_IDS = {"mt3": MT3_VALIDATION}  # named splits that fix their val tracks too
NAMED_TEST_SPLITS = ("folder", *NAMED_TEST_IDS)


def assign_splits(
    tracks: pd.DataFrame,
    cfg: SplitConfig,
    where: str | Path,
    groups: dict[str, str] | None = None,
) -> dict[str, str]:
    """{track: split} from tracks.parquet's (track, folder split): the test split `cfg.test`
    names, val = the split's own val ids (`cfg.val_ids`, "mt3") or train tracks held out by
    `cfg.seed` (never a test track; per group of `groups`, {track: group}, when given: see
    `val_tracks`), the rest train; extra `test_<name>` folders keep their split. An id `cfg.test`
    lists (or its val ids) not among the tracks is an error naming `where` and the ids."""
    folder = dict(zip(tracks.track, tracks.split))
    ids = cfg.test_ids()
    if ids is None:
        split = dict(folder)
    else:
        missing = [t for t in ids if t not in folder]
        if missing:
            raise ValueError(
                f"{where}: split.test ({cfg.describe()}) lists "
                f"track(s) {', '.join(missing[:10])} that are not in data.root"
            )
        extra = {t for t in ids if folder[t] not in ("train", "test")}
        if extra:
            raise ValueError(
                f"{where}: split.test lists {', '.join(sorted(extra))}, already in an extra test split"
            )
        chosen = set(ids)
        split = {
            t: "test" if t in chosen else ("train" if s in ("train", "test") else s)
            for t, s in folder.items()
        }
    held_out = cfg.val_ids()
    if held_out is None:
        held_out = val_tracks([t for t, s in split.items() if s == "train"], cfg, groups)
    else:
        missing = [t for t in held_out if split.get(t) != "train"]
        if missing:
            raise ValueError(
                f"{where}: split.test ({cfg.describe()}) takes val track(s) "
                f"{', '.join(missing[:10])} that are not train/test-folder tracks of data.root"
            )
    return {t: "val" if t in held_out else s for t, s in split.items()}


# ---------------------------------------------------------------------------------------------
# Manifest


def val_tracks(
    train_tracks: Sequence[str], cfg: SplitConfig, groups: dict[str, str] | None = None
) -> set[str]:
    """The train tracks held out for validation: round(val_fraction * n) of them, chosen by seed.

    At least one when there are two or more train tracks and val_fraction > 0, and never all of
    them (training needs a track). Depends only on the set of ids, not their order.

    With `groups` ({track: group}, e.g. MusicNet's ensembles; a track missing from it is in group
    ""), the count is shared out over the groups in proportion to their tracks (largest
    remainder; ties to the larger group, then by name) and each group's share drawn by seed
    within it, so val holds the mix of music the model trains on rather than what one draw of a
    few tracks happens to give (the demo's unstratified draw held 4 wind quartets of 6 tracks and
    no string quartet, and the decode sweep tuned offsets for winds: BENCHMARKS.md, R15)."""
    ids = sorted(set(train_tracks))
    if cfg.val_fraction <= 0 or len(ids) < 2:
        return set()
    n_val = min(max(1, round(cfg.val_fraction * len(ids))), len(ids) - 1)
    rng = np.random.default_rng(cfg.seed)
    if groups is None:
        order = rng.permutation(len(ids))
        return {ids[i] for i in order[:n_val]}
    members: dict[str, list[str]] = {}
    for t in ids:
        members.setdefault(str(groups.get(t, "")), []).append(t)
    names = sorted(members)
    quota = {g: n_val * len(members[g]) / len(ids) for g in names}
    share = {g: int(quota[g]) for g in names}
    by_remainder = sorted(names, key=lambda g: (-(quota[g] - share[g]), -len(members[g]), g))
    for g in by_remainder[: n_val - sum(share.values())]:
        share[g] += 1
    held: set[str] = set()
    for g in names:  # one permutation per group, in name order: the same ids give the same draw
        order = rng.permutation(len(members[g]))
        held |= {members[g][i] for i in order[: share[g]]}
    return held


def read_table(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A Parquet table with the given columns (track ids as strings); errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the stage that writes it first)")
    df = pd.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (columns are {', '.join(df.columns)})"
        )
    return df.astype({"track": str})


def split_rank(split: str) -> tuple[int, str]:
    """Sort key of a split: train, val, test, then extra `test_<name>` splits by name."""
    return (SPLITS.index(split), "") if split in SPLITS else (len(SPLITS), split)


def split_groups(tracks: pd.DataFrame, cfg: SplitConfig) -> dict[str, str] | None:
    """{track: its `cfg.stratify` column} from the musicnet_metadata.csv of each data root (the
    folder above a track's audio folder), or None: no stratification (`stratify: ""`, or no
    metadata file, as in a MusicNet download without it). A metadata file without that column is
    an error naming the file and the column."""
    from mtlib.musicnet import metadata_by_root

    if not cfg.stratify or "audio" not in tracks.columns:
        return None
    metadata = metadata_by_root(tracks.audio)
    if not any(metadata.values()):
        return None
    groups = {}
    for root, rows in metadata.items():
        if rows and cfg.stratify not in next(iter(rows.values())):
            raise ValueError(
                f"{root / 'musicnet_metadata.csv'}: no column {cfg.stratify!r} to stratify the "
                f'val split by (split.stratify; "" draws val from all train tracks at once)'
            )
        groups.update({t: str(r.get(cfg.stratify, "")) for t, r in rows.items()})
    return groups


def build_manifest(
    features_dir: str | Path, tokens_path: str | Path, cfg: SplitConfig
) -> pd.DataFrame:
    """segments.parquet + tracks.parquet (in `features_dir`) + tokens.parquet → the manifest.

    Every segment must have exactly one tokens row with the same start_frame and n_frames (a
    mismatch means tokenize ran on another segment index: the error says so and names the file).
    Rows are ordered train, val, test, extra test splits (`test_<name>`, by name), then by track
    as in tracks.parquet, then by segment."""
    features_dir, tokens_path = Path(features_dir), Path(tokens_path)
    tracks = read_table(features_dir / "tracks.parquet", ["track", "split", "features"])
    segments = read_table(
        features_dir / "segments.parquet", ["track", "segment", "start_frame", "n_frames"]
    )
    tokens = read_table(tokens_path, TOKEN_COLUMNS)
    merged = segments[["track", "segment", "start_frame", "n_frames"]].merge(
        tokens, on=["track", "segment"], how="outer", suffixes=("", "_tok"), indicator=True
    )
    _check_join(merged, tokens_path)
    groups = split_groups(tracks, cfg)
    track_split = assign_splits(tracks, cfg, features_dir / "tracks.parquet", groups)
    unknown = sorted(set(merged.track) - set(track_split))
    if unknown:
        raise ValueError(
            f"{features_dir / 'segments.parquet'}: track(s) {', '.join(unknown[:5])} not in tracks.parquet"
        )
    merged["split"] = merged.track.map(track_split)
    merged["features"] = merged.track.map(dict(zip(tracks.track, tracks.features)))
    merged["n_tokens"] = merged.tokens.map(len).astype("int64")
    merged["n_ctc"] = merged.ctc_tokens.map(len).astype("int64")
    bad = merged.index[merged.ctc_frames.map(len) != merged.n_ctc]
    if len(bad):
        row = merged.loc[bad[0]]
        raise ValueError(
            f"{tokens_path}: track {row.track} segment {row.segment}: "
            f"{row.n_ctc} ctc_tokens but {len(row.ctc_frames)} ctc_frames"
        )
    order = {name: i for i, name in enumerate(sorted(set(merged.split), key=split_rank))}
    merged["_split_order"] = merged.split.map(order)
    merged["_track_order"] = merged.track.map({t: i for i, t in enumerate(tracks.track)})
    merged = merged.sort_values(["_split_order", "_track_order", "segment"], kind="stable")
    return merged[MANIFEST_COLUMNS].reset_index(drop=True)


def _check_join(merged: pd.DataFrame, tokens_path: Path) -> None:
    """Raise, naming the tokens file, if segments and tokens rows do not pair up exactly."""
    for side, problem in (
        ("left_only", "has no tokens for"),
        ("right_only", "has tokens for unknown"),
    ):
        rows = merged[merged._merge == side]
        if len(rows):
            first = rows.iloc[0]
            raise ValueError(
                f"{tokens_path}: {problem} {len(rows)} segment(s) (first: track {first.track} "
                f"segment {first.segment}); rerun tokenize on the current segment index"
            )
    differs = (merged.start_frame != merged.start_frame_tok) | (
        merged.n_frames != merged.n_frames_tok
    )
    if differs.any():
        first = merged[differs].iloc[0]
        raise ValueError(
            f"{tokens_path}: track {first.track} segment {first.segment} spans frames "
            f"{first.start_frame_tok}+{first.n_frames_tok} but the segment index says "
            f"{first.start_frame}+{first.n_frames}; rerun tokenize on the current segment index"
        )


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    """The manifest as Parquet (token columns as list<int32>), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtlib.io import atomic_path

    ints = pa.list_(pa.int32())
    schema = pa.schema(
        [
            ("split", pa.string()),
            ("track", pa.string()),
            ("segment", pa.int64()),
            ("start_frame", pa.int64()),
            ("n_frames", pa.int64()),
            ("features", pa.string()),
            ("n_tokens", pa.int64()),
            ("n_ctc", pa.int64()),
            ("tokens", ints),
            ("ctc_tokens", ints),
            ("ctc_frames", ints),
        ]
    )
    table = pa.Table.from_pandas(manifest[MANIFEST_COLUMNS], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def split_summary(manifest: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """Per split: tracks, segments and minutes of audio (whole tracks, overlaps not double counted)."""
    duration = dict(zip(tracks.track.astype(str), tracks.duration))
    rows = []
    for split in sorted(set(SPLITS) | set(manifest.split), key=split_rank):
        part = manifest[manifest.split == split]
        ids = part.track.unique()
        rows.append(
            {
                "split": split,
                "tracks": len(ids),
                "segments": len(part),
                "minutes": sum(duration[t] for t in ids) / 60.0,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Feature normalisation


def feature_stats(
    paths: Sequence[str | Path], chunk_frames: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per mel bin over all frames of the given feature files, as float32 (n_mels,).

    Streams each memory-mapped file in chunks with float64 sums, so memory stays one chunk.
    The std is floored at STD_FLOOR."""
    if not paths:
        raise ValueError("feature_stats: no feature files (is the train split empty?)")
    total = total_sq = None
    count = 0
    for path in paths:
        features = np.load(path, mmap_mode="r")  # (T, n_mels) float16
        for first in range(0, features.shape[0], chunk_frames):
            chunk = np.asarray(features[first : first + chunk_frames], dtype=np.float64)
            total = chunk.sum(0) if total is None else total + chunk.sum(0)
            total_sq = (chunk**2).sum(0) if total_sq is None else total_sq + (chunk**2).sum(0)
            count += chunk.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, STD_FLOOR).astype(np.float32)


def feature_stats_path(manifest_path: str | Path) -> Path:
    """Where a manifest's feature stats live: `feature_stats.npz` beside it. The manifest stage
    writes them there and training reads them there, so the two cannot disagree."""
    return Path(manifest_path).with_name("feature_stats.npz")


def save_feature_stats(path: str | Path, mean: np.ndarray, std: np.ndarray) -> None:
    from mtlib.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mean=mean, std=std)


def load_feature_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per mel bin, as saved by the manifest stage."""
    with np.load(path) as stats:
        return stats["mean"], stats["std"]


# ---------------------------------------------------------------------------------------------
# Dataset, batches, sampler


class SegmentDataset:
    """The segments of one split (or several) as training examples.

    Features are sliced from memory-mapped per-track files, so an item reads only its own
    frames; open maps are cached per track (and dropped when the dataset is pickled to a
    DataLoader worker, which reopens them)."""

    def __init__(self, manifest: pd.DataFrame, split: str | Sequence[str] | None = None):
        splits = [split] if isinstance(split, str) else split
        rows = manifest if splits is None else manifest[manifest.split.isin(splits)]
        self.rows = rows.reset_index(drop=True)
        self.tokens = [np.asarray(t, dtype=np.int64) for t in self.rows.tokens]
        self.ctc_tokens = [np.asarray(t, dtype=np.int64) for t in self.rows.ctc_tokens]
        self.ctc_frames = [np.asarray(t, dtype=np.int64) for t in self.rows.ctc_frames]
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def features(self, path: str) -> np.ndarray:
        """The memory-mapped (T, n_mels) float16 features of a track, opened once."""
        if path not in self._maps:
            self._maps[path] = np.load(path, mmap_mode="r")
        return self._maps[path]

    def __getitem__(self, i: int) -> dict:
        row = self.rows.iloc[i]
        start, n = int(row.start_frame), int(row.n_frames)
        frames = np.asarray(
            self.features(row.features)[start : start + n], dtype=np.float32
        )  # (n, n_mels)
        if frames.shape[0] != n:
            raise ValueError(
                f"{row.features}: has {start + frames.shape[0]} frames, segment {row.segment} "
                f"of track {row.track} needs {start + n}; rerun the segment stage"
            )
        return {
            "features": frames,
            "tokens": self.tokens[i],
            "ctc_tokens": self.ctc_tokens[i],
            "ctc_frames": self.ctc_frames[i],
            "track": row.track,
            "segment": int(row.segment),
            "start_frame": start,
        }

    def lengths(self, key: str = "n_frames") -> np.ndarray:
        """A per-item length (n_frames, n_tokens or n_ctc) for BucketBatchSampler."""
        return self.rows[key].to_numpy(np.int64)


def collate(batch: Sequence[dict], vocab) -> dict:
    """Pad a list of SegmentDataset items into one batch of tensors; `vocab` (a Vocabulary) is
    the only source of token ids.

    features (B, T, n_mels) float32 zero-padded, feature_lengths (B,), frame_mask (B, T) bool;
    tokens (B, L) int64 padded with vocab.PAD (no SOS: the model adds it), token_lengths (B,);
    ctc_tokens (B, C) padded with the CTC blank, ctc_lengths (B,), ctc_frames (B, C) padded with
    -1; onsets (B, T, n_pitches) float32: 1 where a CTC NOTE_ON sits at that frame; frame_roll
    (B, T, n_pitches) float32: 1 where a note sounds, offset_roll (B, T, n_pitches) float32: 1 at
    each note's release frame (`mtlib.events.segment_rolls` of the item's tokens). Also track
    (list), segment and start_frame (B,).
    Use `functools.partial(collate, vocab=V)` as a DataLoader's collate_fn."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from mtlib.events import segment_rolls

    def padded(key: str, value: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        items = [torch.as_tensor(item[key], dtype=dtype) for item in batch]
        lengths = torch.tensor([len(x) for x in items], dtype=torch.int64)
        return pad_sequence(items, batch_first=True, padding_value=value), lengths

    features, feature_lengths = padded("features", 0.0, torch.float32)
    tokens, token_lengths = padded("tokens", vocab.PAD, torch.int64)
    ctc_tokens, ctc_lengths = padded("ctc_tokens", vocab.ctc.blank, torch.int64)
    ctc_frames, _ = padded("ctc_frames", -1, torch.int64)
    n_frames = features.shape[1]
    frame_mask = torch.arange(n_frames)[None, :] < feature_lengths[:, None]  # (B, T)
    n_pitches = vocab.n_pitches
    onsets = torch.zeros(len(batch), n_frames, n_pitches, dtype=torch.float32)
    first_on, end_on = vocab.ctc.on_range
    is_onset = (
        (ctc_tokens >= first_on)
        & (ctc_tokens < end_on)
        & (ctc_frames >= 0)
        & (ctc_frames < n_frames)
    )
    b, c = is_onset.nonzero(as_tuple=True)
    onsets[b, ctc_frames[b, c], ctc_tokens[b, c] - first_on] = 1.0
    roll = np.zeros((len(batch), n_frames, n_pitches), dtype=np.float32)
    offset_roll = np.zeros_like(roll)
    for i, item in enumerate(batch):
        n = len(item["features"])
        roll[i, :n], offset_roll[i, :n] = segment_rolls(item["tokens"], vocab, n)
    return {
        "frame_roll": torch.from_numpy(roll),
        "offset_roll": torch.from_numpy(offset_roll),
        "features": features,
        "feature_lengths": feature_lengths,
        "frame_mask": frame_mask,
        "tokens": tokens,
        "token_lengths": token_lengths,
        "ctc_tokens": ctc_tokens,
        "ctc_lengths": ctc_lengths,
        "ctc_frames": ctc_frames,
        "onsets": onsets,
        "track": [item["track"] for item in batch],
        "segment": torch.tensor([item["segment"] for item in batch], dtype=torch.int64),
        "start_frame": torch.tensor([item["start_frame"] for item in batch], dtype=torch.int64),
    }


class BucketBatchSampler:
    """Batches of indices of similar length, so padding stays small.

    Shuffled: indices are permuted, cut into buckets of `bucket_batches * batch_size`, sorted
    by length within each bucket, cut into batches, and the batches shuffled. Not shuffled: one
    bucket, sorted by length. Deterministic for a given (seed, epoch); `set_epoch` changes the
    order between epochs. Every index appears in exactly one batch."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_batches: int = 32,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_size = batch_size * bucket_batches if shuffle else max(len(self.lengths), 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)  # buckets are whole batches but the last

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        batches = []
        for first in range(0, len(order), self.bucket_size):
            bucket = order[first : first + self.bucket_size]
            bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches += [
                bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter([batch.tolist() for batch in batches])
