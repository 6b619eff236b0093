"""Manifest (splits, joins, errors), feature stats, SegmentDataset/collate and the bucket sampler,
on small feature and token tables written in the test."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.dataset import (
    MANIFEST_COLUMNS,
    BucketBatchSampler,
    SegmentDataset,
    SplitConfig,
    build_manifest,
    collate,
    feature_stats,
    feature_stats_path,
    load_feature_stats,
    val_tracks,
    write_manifest,
)
from mtlib.segments import segment_lengths, segment_starts
from mtlib.vocab import Vocabulary

N_MELS = 8
SEG, HOP = 10, 5


def write_tables(
    root: Path, tracks: dict[str, tuple[str, int]], drop_token_row: bool = False
) -> tuple[Path, Path]:
    """features/ (npy + tracks.parquet + segments.parquet) and tokens/tokens.parquet for
    tracks {id: (MusicNet split, n_frames)}. Feature value at (t, m) = 1000*track + t + m/100,
    so a slice says where it came from; segment k's tokens are [4 + k, 2]."""
    features_dir, tokens_dir = root / "features", root / "tokens"
    features_dir.mkdir(parents=True)
    tokens_dir.mkdir(parents=True)
    track_rows, segment_rows, token_rows = [], [], []
    for tid, (split, n_frames) in tracks.items():
        path = features_dir / f"{tid}.npy"
        values = 1000 * int(tid) + np.arange(n_frames)[:, None] + np.arange(N_MELS)[None, :] / 100
        np.save(path, values.astype(np.float16))
        track_rows.append(
            {
                "track": tid,
                "split": split,
                "audio": f"{tid}.wav",
                "labels": f"{tid}.csv",
                "file_rate": 44100,
                "duration": n_frames * 0.032,
                "n_frames": n_frames,
                "features": str(path),
            }
        )
        starts = segment_starts(n_frames, SEG, HOP)
        for k, (start, n) in enumerate(
            zip(starts.tolist(), segment_lengths(starts, n_frames, SEG).tolist())
        ):
            segment_rows.append(
                {"track": tid, "split": split, "segment": k, "start_frame": start, "n_frames": n}
            )
            token_rows.append(
                {
                    "track": tid,
                    "segment": k,
                    "start_frame": start,
                    "n_frames": n,
                    "tokens": np.array([4 + k, 2], np.int32),
                    "ctc_tokens": np.array([1 + k], np.int32),
                    "ctc_frames": np.array([k % n], np.int32),
                }
            )
    if drop_token_row:
        token_rows.pop(1)
    pd.DataFrame(track_rows).to_parquet(features_dir / "tracks.parquet")
    pd.DataFrame(segment_rows).to_parquet(features_dir / "segments.parquet")
    pd.DataFrame(token_rows).to_parquet(tokens_dir / "tokens.parquet")
    return features_dir, tokens_dir / "tokens.parquet"


TRACKS = {
    "1": ("train", 23),
    "2": ("train", 10),
    "3": ("train", 7),
    "4": ("train", 31),
    "5": ("test", 12),
}


def test_val_split_holds_out_whole_train_tracks_by_seed():
    ids = [str(i) for i in range(20)]
    val = val_tracks(ids, SplitConfig(0.1, seed=0))
    assert len(val) == 2 and val <= set(ids)
    assert val == val_tracks(list(reversed(ids)), SplitConfig(0.1, seed=0))  # order does not matter
    assert len({frozenset(val_tracks(ids, SplitConfig(0.1, seed=s))) for s in range(10)}) > 1
    assert len(val_tracks(["a", "b"], SplitConfig(0.01, 0))) == 1  # at least one with two tracks
    assert val_tracks(["a"], SplitConfig(0.5, 0)) == set()  # never the only train track
    assert len(val_tracks(["a", "b", "c"], SplitConfig(0.99, 0))) == 2  # never all of them
    assert val_tracks(ids, SplitConfig(0.0, 0)) == set()


@given(n=st.integers(2, 60), fraction=st.floats(0.01, 0.9), seed=st.integers(0, 1000))
@settings(max_examples=50, deadline=None)
def test_val_split_size(n, fraction, seed):
    val = val_tracks([f"t{i}" for i in range(n)], SplitConfig(fraction, seed))
    assert 1 <= len(val) <= n - 1
    assert len(val) == min(max(1, round(fraction * n)), n - 1)


def test_stratified_val_shares_the_tracks_out_by_group():
    """With groups (MusicNet's ensembles), val holds each group's share of round(fraction * n),
    largest remainder first (ties: the larger group): the mix of music training has."""
    groups = {f"a{i}": "A" for i in range(10)} | {f"b{i}": "B" for i in range(6)}
    groups |= {f"c{i}": "C" for i in range(4)}
    ids = sorted(groups)
    cfg = SplitConfig(0.25, seed=0)  # 5 of 20: quotas 2.5, 1.5, 1.0
    val = val_tracks(ids, cfg, groups)
    counts = {g: sum(groups[t] == g for t in val) for g in "ABC"}
    assert counts == {"A": 3, "B": 1, "C": 1}
    assert val == val_tracks(list(reversed(ids)), cfg, groups)  # order does not matter
    draws = {frozenset(val_tracks(ids, SplitConfig(0.25, seed=s), groups)) for s in range(10)}
    assert len(draws) > 1
    assert all(
        {g: sum(groups[t] == g for t in d) for g in "ABC"} == counts for d in draws
    )  # the seed picks the tracks, never the shares
    # a track the metadata does not list is in group "", a group like any other
    val = val_tracks([*ids, "x", "y", "z", "w"], SplitConfig(0.25, 0), groups)
    assert len(val) == 6 and len(val & {"x", "y", "z", "w"}) == 1
    # unstratified (no groups): the draw as before stratification existed
    assert val_tracks(ids, cfg) == {ids[i] for i in np.random.default_rng(0).permutation(20)[:5]}


@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    fraction=st.floats(0.01, 0.9),
    seed=st.integers(0, 1000),
)
@settings(max_examples=50, deadline=None)
def test_stratified_val_size_and_shares(sizes, fraction, seed):
    groups = {f"{g}-{i}": str(g) for g, size in enumerate(sizes) for i in range(size)}
    n = len(groups)
    if n < 2:
        return
    val = val_tracks(list(groups), SplitConfig(fraction, seed), groups)
    n_val = min(max(1, round(fraction * n)), n - 1)
    assert len(val) == n_val  # the same count as an unstratified draw
    for g, size in enumerate(sizes):
        share = sum(groups[t] == str(g) for t in val)
        quota = n_val * size / n
        assert math.floor(quota) <= share <= math.ceil(quota)


def test_split_groups_read_the_metadata_of_each_root(tmp_path):
    from mtlib.dataset import split_groups

    root = tmp_path / "root"
    (root / "train_data").mkdir(parents=True)
    tracks = pd.DataFrame(
        {"track": ["1", "2", "3"], "audio": [str(root / "train_data" / f"{t}.wav") for t in "123"]}
    )
    assert split_groups(tracks, SplitConfig()) is None  # no metadata file: one draw
    meta = root / "musicnet_metadata.csv"
    meta.write_text("id,composer,ensemble\n1,Bach,piano\n2,Haydn,string_quartet\n")
    assert split_groups(tracks, SplitConfig()) == {"1": "piano", "2": "string_quartet"}
    assert split_groups(tracks, SplitConfig(stratify="composer"))["2"] == "Haydn"
    assert split_groups(tracks, SplitConfig(stratify="")) is None
    with pytest.raises(ValueError, match=r"musicnet_metadata\.csv: no column 'instrument'"):
        split_groups(tracks, SplitConfig(stratify="instrument"))
    with pytest.raises(ValueError, match="split.stratify"):
        SplitConfig(stratify=None)


def test_manifest_joins_segments_and_tokens(tmp_path):
    features_dir, tokens_path = write_tables(tmp_path, TRACKS)
    manifest = build_manifest(features_dir, tokens_path, SplitConfig(0.25, seed=0))
    assert list(manifest.columns) == MANIFEST_COLUMNS
    splits = manifest.groupby("track").split.unique()
    assert all(len(s) == 1 for s in splits)  # no track in two splits
    by_track = {t: s[0] for t, s in splits.items()}
    assert by_track["5"] == "test" and list(by_track.values()).count("val") == 1
    assert list(manifest.split) == sorted(manifest.split, key=["train", "val", "test"].index)
    segments = pd.read_parquet(features_dir / "segments.parquet")
    assert len(manifest) == len(segments)
    assert (manifest.n_tokens == 2).all() and (manifest.n_ctc == 1).all()
    row = manifest[(manifest.track == "4") & (manifest.segment == 3)].iloc[0]
    assert (row.start_frame, row.n_frames, list(row.tokens)) == (15, 10, [7, 2])
    assert row.features == str(features_dir / "4.npy")


def test_extra_test_splits_come_last_and_keep_their_split(tmp_path):
    """A `test_unseen` track keeps its split (never val, never train) and sorts after test."""
    tracks = {**TRACKS, "6": ("test_unseen", 12)}
    manifest = build_manifest(*write_tables(tmp_path, tracks), SplitConfig(0.25, seed=0))
    assert set(manifest.loc[manifest.track == "6", "split"]) == {"test_unseen"}
    assert list(dict.fromkeys(manifest.split)) == ["train", "val", "test", "test_unseen"]


def test_manifest_parquet_round_trip(tmp_path):
    import pyarrow.parquet as pq

    manifest = build_manifest(*write_tables(tmp_path, TRACKS), SplitConfig(0.25, 0))
    write_manifest(manifest, tmp_path / "manifest.parquet")
    schema = pq.read_schema(tmp_path / "manifest.parquet")
    assert str(schema.field("tokens").type) == "list<element: int32>"
    back = pd.read_parquet(tmp_path / "manifest.parquet")
    assert back.drop(columns=["tokens", "ctc_tokens", "ctc_frames"]).equals(
        manifest.drop(columns=["tokens", "ctc_tokens", "ctc_frames"])
    )
    assert [list(t) for t in back.tokens] == [list(t) for t in manifest.tokens]


def test_manifest_names_tokens_file_when_a_segment_has_no_tokens(tmp_path):
    features_dir, tokens_path = write_tables(tmp_path, TRACKS, drop_token_row=True)
    with pytest.raises(
        ValueError,
        match=r"tokens\.parquet: has no tokens for 1 segment\(s\) \(first: track 1 segment 1\)",
    ):
        build_manifest(features_dir, tokens_path, SplitConfig())


def test_manifest_names_tokens_file_when_segment_frames_disagree(tmp_path):
    features_dir, tokens_path = write_tables(tmp_path, TRACKS)
    tokens = pd.read_parquet(tokens_path)
    tokens.loc[2, "start_frame"] += 1
    tokens.to_parquet(tokens_path)
    with pytest.raises(ValueError, match=r"tokens\.parquet: track 1 segment 2 spans frames 11\+10"):
        build_manifest(features_dir, tokens_path, SplitConfig())


def test_feature_stats_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [
        (rng.normal(size=(n, N_MELS)) * np.arange(1, N_MELS + 1) + 3).astype(np.float16)
        for n in (17, 40)
    ]
    arrays[0][:, 0] = arrays[1][:, 0] = 2.0  # a constant bin
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], a)
    mean, std = feature_stats(paths, chunk_frames=5)
    whole = np.concatenate(arrays).astype(np.float64)
    np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[1:], whole.std(0)[1:], rtol=1e-4)
    assert std[0] == pytest.approx(1e-3) and mean.dtype == std.dtype == np.float32


def test_manifest_stage_writes_manifest_stats_and_summary(tmp_path, capsys):
    from stages.manifest import main

    features_dir, tokens_path = write_tables(tmp_path, TRACKS)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"split": {"val_fraction": 0.25, "seed": 0}}))
    main(
        params=params,
        features=features_dir,
        tokens=tokens_path.parent,
        out=tmp_path / "m.parquet",
    )
    manifest = pd.read_parquet(tmp_path / "m.parquet")
    # beside the manifest, where training reads them
    assert feature_stats_path(tmp_path / "m.parquet") == tmp_path / "feature_stats.npz"
    mean, std = load_feature_stats(tmp_path / "feature_stats.npz")
    train_paths = manifest[manifest.split == "train"].features.unique()
    expected = np.concatenate([np.load(p).astype(np.float64) for p in train_paths])
    np.testing.assert_allclose(mean, expected.mean(0), rtol=1e-5)
    assert mean.shape == std.shape == (N_MELS,)
    printed = capsys.readouterr().out
    assert "train" in printed and "val" in printed and "test" in printed and "segments" in printed


def test_dataset_items_slice_the_right_frames(tmp_path):
    manifest = build_manifest(*write_tables(tmp_path, TRACKS), SplitConfig(0.25, 0))
    test = SegmentDataset(manifest, "test")
    assert len(test) == (manifest.split == "test").sum()
    item = test[1]  # track 5 (12 frames): segment 1 starts at frame 5, 7 frames
    assert item["features"].dtype == np.float32 and item["features"].shape == (7, N_MELS)
    np.testing.assert_allclose(item["features"][:, 0], 5000 + np.arange(5, 12), rtol=1e-3)
    assert list(item["tokens"]) == [5, 2] and (
        item["track"],
        item["segment"],
        item["start_frame"],
    ) == ("5", 1, 5)
    assert len(SegmentDataset(manifest, ["train", "val"])) + len(test) == len(manifest)


def test_collate_pads_masks_and_builds_onset_roll():
    batch = [
        {
            "features": np.ones((3, 2), np.float32),
            "tokens": np.array([5, 6, 2]),
            "ctc_tokens": np.array([1, 3, 5]),
            "ctc_frames": np.array([0, 2, 1]),
            "track": "a",
            "segment": 0,
            "start_frame": 0,
        },
        {
            "features": np.full((5, 2), 2, np.float32),
            "tokens": np.array([2]),
            "ctc_tokens": np.array([2]),
            "ctc_frames": np.array([4]),
            "track": "b",
            "segment": 3,
            "start_frame": 6,
        },
    ]
    out = collate(
        batch, Vocabulary(min_pitch=60, max_pitch=62)
    )  # CTC ids 1..3 NOTE_ON, 4..6 NOTE_OFF
    assert out["features"].shape == (2, 5, 2) and out["features"][0, 3:].abs().sum() == 0
    assert out["feature_lengths"].tolist() == [3, 5]
    assert out["frame_mask"].tolist() == [[True, True, True, False, False], [True] * 5]
    assert out["tokens"].tolist() == [[5, 6, 2], [2, 0, 0]] and out["token_lengths"].tolist() == [
        3,
        1,
    ]
    assert out["ctc_tokens"].tolist() == [[1, 3, 5], [2, 0, 0]] and out["ctc_lengths"].tolist() == [
        3,
        1,
    ]
    assert out["ctc_frames"].tolist() == [[0, 2, 1], [4, -1, -1]]
    expected = np.zeros((2, 5, 3), np.float32)
    expected[0, 0, 0] = expected[0, 2, 2] = expected[1, 4, 1] = 1  # NOTE_OFF id 5 adds nothing
    np.testing.assert_array_equal(out["onsets"].numpy(), expected)
    assert (
        out["track"] == ["a", "b"]
        and out["segment"].tolist() == [0, 3]
        and out["start_frame"].tolist() == [0, 6]
    )
    assert (
        str(out["tokens"].dtype) == "torch.int64" and str(out["features"].dtype) == "torch.float32"
    )


def test_dataloader_with_bucket_sampler(tmp_path):
    from torch.utils.data import DataLoader

    manifest = build_manifest(*write_tables(tmp_path, TRACKS), SplitConfig(0.25, 0))
    dataset = SegmentDataset(manifest, "train")
    sampler = BucketBatchSampler(dataset.lengths(), batch_size=3, shuffle=True, seed=1)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=functools.partial(collate, vocab=Vocabulary(min_pitch=60, max_pitch=63)),
    )
    seen = [(t, int(s)) for batch in loader for t, s in zip(batch["track"], batch["segment"])]
    assert sorted(seen) == sorted(zip(dataset.rows.track, dataset.rows.segment))


@given(
    lengths=st.lists(st.integers(1, 500), min_size=0, max_size=300),
    batch_size=st.integers(1, 17),
    shuffle=st.booleans(),
    seed=st.integers(0, 99),
)
@settings(max_examples=60, deadline=None)
def test_bucket_sampler_yields_every_index_once_deterministically(
    lengths, batch_size, shuffle, seed
):
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed, bucket_batches=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert batches == list(
        BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed, bucket_batches=4)
    )
    if not shuffle:
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat)


def test_bucket_sampler_reduces_padding_and_varies_by_epoch():
    lengths = np.random.default_rng(0).integers(1, 400, size=2000)
    sampler = BucketBatchSampler(lengths, batch_size=16, shuffle=True, seed=0)
    first = list(sampler)
    padding = sum(max(lengths[b]) * len(b) - lengths[b].sum() for b in first)
    random_batches = np.random.default_rng(1).permutation(2000).reshape(-1, 16)
    random_padding = sum(max(lengths[b]) * len(b) - lengths[b].sum() for b in random_batches)
    assert padding < 0.1 * random_padding
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_mt3_split_fixes_its_test_and_val_tracks():
    """split.test: "mt3" tests on MT3's 15 test recordings and validates on its 15 validation
    recordings, wherever they sit, whatever val_fraction says; every other track trains; a root
    without one of its val tracks is a named error."""
    from mtlib.dataset import MT3_TEST, MT3_VALIDATION, MUSICNET_OFFICIAL_TEST, assign_splits

    assert len(set(MT3_TEST)) == len(set(MT3_VALIDATION)) == 15
    assert not set(MT3_TEST) & set(MT3_VALIDATION)
    rows = [(t, "train") for t in (*MT3_TEST[:10], *MT3_VALIDATION, "1", "2")]
    rows += [(t, "test") for t in (*MT3_TEST[10:], *MUSICNET_OFFICIAL_TEST)]
    tracks = pd.DataFrame(rows + [("u1", "test_unseen")], columns=["track", "split"])
    split = assign_splits(tracks, SplitConfig(0.5, 0, "mt3"), "t.parquet")
    assert sorted(t for t, s in split.items() if s == "test") == sorted(MT3_TEST)
    assert sorted(t for t, s in split.items() if s == "val") == sorted(MT3_VALIDATION)
    trained = sorted(t for t, s in split.items() if s == "train")
    assert trained == sorted(["1", "2", *MUSICNET_OFFICIAL_TEST])
    assert split["u1"] == "test_unseen" and SplitConfig(test="mt3").describe() == "mt3"
    with pytest.raises(
        ValueError, match=r"t\.parquet: split\.test \(mt3\) takes val track\(s\) 1733"
    ):
        assign_splits(tracks[tracks.track != "1733"], SplitConfig(test="mt3"), "t.parquet")
    with pytest.raises(ValueError, match="2621"):
        assign_splits(tracks[tracks.track != "2621"], SplitConfig(test="mt3"), "t.parquet")


def test_named_test_splits(tmp_path):
    """split.test: "folder" keeps the folders; "musicnet_official" and a list of ids take those
    tracks as test wherever they sit and train on every other train/test-folder track; val never
    holds a test track; extra test_<name> folders stay; unknown ids are named errors."""
    from mtlib.dataset import MUSICNET_OFFICIAL_TEST, assign_splits

    official = list(MUSICNET_OFFICIAL_TEST)
    rows = [(t, "test") for t in official] + [(str(i), "train") for i in range(1, 21)]
    rows += [("2107", "test"), ("u1", "test_unseen")]
    tracks = pd.DataFrame(rows, columns=["track", "split"])
    folder = assign_splits(tracks, SplitConfig(0.1, 0), "t.parquet")
    assert sorted(t for t, s in folder.items() if s == "test") == sorted([*official, "2107"])
    assert folder["u1"] == "test_unseen"
    assert sum(s == "val" for s in folder.values()) == 2  # 10% of the 20 train tracks

    named = assign_splits(tracks, SplitConfig(0.1, 0, "musicnet_official"), "t.parquet")
    assert sorted(t for t, s in named.items() if s == "test") == sorted(official)
    assert named["2107"] in ("train", "val") and named["u1"] == "test_unseen"
    assert sum(s == "val" for s in named.values()) == 2  # round(0.1 * 21)

    listed = assign_splits(tracks, SplitConfig(0.5, 3, ["1", "2", 2107]), "t.parquet")
    assert sorted(t for t, s in listed.items() if s == "test") == ["1", "2", "2107"]
    assert all(listed[t] in ("train", "val") for t in official)
    assert SplitConfig(test=["1", "2"]).describe() == "ids:1,2"
    with pytest.raises(ValueError, match=r"t\.parquet: split\.test .* track\(s\) 99 that are not"):
        assign_splits(tracks, SplitConfig(test=["1", "99"]), "t.parquet")
    with pytest.raises(ValueError, match="already in an extra test split"):
        assign_splits(tracks, SplitConfig(test=["u1"]), "t.parquet")
    with pytest.raises(
        ValueError, match="split.test must be one of folder, musicnet_official, mt3 or a list"
    ):
        SplitConfig(test="maestro")
    with pytest.raises(ValueError, match="distinct track ids"):
        SplitConfig(test=["1", "1"])
    no_official = tracks[tracks.track != "2628"]
    with pytest.raises(ValueError, match="2628"):
        assign_splits(no_official, SplitConfig(test="musicnet_official"), "t.parquet")
