"""The tokenize stage on a tiny MusicNet folder and a segment index made in the test."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import write_musicnet_track

from mtlib.errors import MusicNetFormatError
from mtlib.events import (
    canonical_frame_notes,
    notes_to_frame_notes,
    stitch_segments,
    tokens_to_segment_events,
)
from mtlib.notes import Note
from mtlib.segments import segment_starts
from mtlib.timebase import num_frames
from mtlib.vocab import Vocabulary
from stages.tokenize import main

SR, HOP, RATE, SECONDS = 16000, 512, 44100, 3.0
SEG, SEG_HOP = 40, 20  # frames: overlapping segments, as the segment stage makes for training

TRACKS = {
    ("train", "1"): [
        Note(0.25, 0.75, 60, 1),
        Note(0.25, 1.5, 64, 41),
        Note(0.25, 2.9, 67, 1),
        Note(0.75, 1.0, 60, 1),
        Note(1.0, 1.25, 60, 1),
    ],  # repeated 60s, zero gap
    ("train", "2"): [
        Note(0.0, 2.0, 50, 43),
        Note(1.3, 1.31, 74, 74),
    ],  # a note shorter than a frame
    ("test", "3"): [Note(0.5, 2.5, 72, 1), Note(1.0, 2.0, 72, 41)],  # a unison: one note per pitch
}


def write_inputs(tmp_path):
    """A MusicNet root, a params file and a features folder with tracks/segments.parquet."""
    root, features = tmp_path / "musicnet", tmp_path / "features"
    features.mkdir()
    n_frames = num_frames(int(SECONDS * SR), SR, HOP)
    tracks, segments = [], []
    for (split, tid), notes in TRACKS.items():
        wav, csv = write_musicnet_track(root, split, tid, notes, RATE, SECONDS)
        tracks.append(
            {
                "track": tid,
                "split": split,
                "audio": str(wav),
                "labels": str(csv),
                "file_rate": RATE,
                "duration": SECONDS,
                "n_frames": n_frames,
                "features": str(features / f"{tid}.npy"),
            }
        )
        for i, start in enumerate(segment_starts(n_frames, SEG, SEG_HOP)):
            segments.append(
                {
                    "track": tid,
                    "split": split,
                    "segment": i,
                    "start_frame": int(start),
                    "n_frames": int(min(SEG, n_frames - start)),
                }
            )
    pd.DataFrame(tracks).to_parquet(features / "tracks.parquet")
    pd.DataFrame(segments).to_parquet(features / "segments.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(
        f"audio:\n  sample_rate: {SR}\n  hop_length: {HOP}\n"
        "vocab:\n  max_shift: 16\n  min_pitch: 21\n  max_pitch: 108\n"
    )
    return params, features, n_frames


def run(params, features, out):
    main(params=params, features=features, out=out)


def test_tokens_decode_back_to_every_tracks_notes(tmp_path):
    params, features, n_frames = write_inputs(tmp_path)
    out = tmp_path / "tokens"
    run(params, features, out)
    schema = pq.read_schema(out / "tokens.parquet")
    assert [str(schema.field(c).type) for c in ("tokens", "ctc_tokens", "ctc_frames")] == [
        "list<element: int32>"
    ] * 3
    tokens = pd.read_parquet(out / "tokens.parquet")
    segments = pd.read_parquet(features / "segments.parquet")
    assert tokens[["track", "segment", "start_frame", "n_frames"]].equals(
        segments[["track", "segment", "start_frame", "n_frames"]]
    )
    vocab = Vocabulary(max_shift=16)
    for (_, tid), notes in TRACKS.items():
        rows = tokens[tokens.track == tid]
        parts = [
            (r.start_frame,) + tokens_to_segment_events(r.tokens, vocab, r.n_frames)[:2]
            for r in rows.itertuples()
        ]
        got, counts = stitch_segments(parts, n_frames)
        expected, _ = canonical_frame_notes(notes_to_frame_notes(notes, SR, HOP))
        assert [(n.onset, n.offset, n.pitch) for n in got] == [
            (n.onset, n.offset, n.pitch) for n in expected
        ]
        assert counts["cut"] > 0  # overlapping segments really were cut at the next start


def test_stats_json(tmp_path):
    params, features, _ = write_inputs(tmp_path)
    run(params, features, tmp_path / "tokens")
    stats = json.loads((tmp_path / "tokens" / "stats.json").read_text())
    assert stats["tracks"] == 3 and stats["segments"] == 3 * 4
    assert (
        stats["notes"] == 9 and stats["same_pitch_overlaps"] == 1
    )  # the unison in track 3: cut, not merged
    assert stats["max_onsets_per_frame"] == 3 and stats["max_polyphony"] == 3
    assert stats["max_ctc_per_frame"] == 3  # three ONs at 0.25 s; elsewhere at most OFF+ON of 60
    assert stats["vocab"] == {
        "max_shift": 16,
        "min_pitch": 21,
        "max_pitch": 108,
    }  # Vocabulary(**stats["vocab"])
    assert stats["vocab_size"] == 4 + 16 + 176 and stats["ctc_vocab_size"] == 177
    for model in ("seq2seq_tokens_per_segment", "ctc_tokens_per_segment"):
        assert (
            set(stats[model]) == {"max", "p99", "mean"}
            and stats[model]["max"] >= stats[model]["p99"]
        )


def test_bad_label_file_names_the_file_and_writes_nothing(tmp_path):
    params, features, _ = write_inputs(tmp_path)
    csv = tmp_path / "musicnet" / "train_labels" / "2.csv"
    csv.write_text(csv.read_text().replace("note", "pitch", 1))
    with pytest.raises(MusicNetFormatError, match=r"2\.csv: missing column 'note'"):
        run(params, features, tmp_path / "tokens")
    assert not (tmp_path / "tokens").exists()


def test_segment_index_problems_name_the_file(tmp_path):
    params, features, n_frames = write_inputs(tmp_path)
    path = features / "segments.parquet"
    segments = pd.read_parquet(path)
    pd.concat([segments, segments.iloc[:1].assign(track="99")]).to_parquet(path)
    with pytest.raises(
        ValueError, match=r"segments\.parquet: segments for track\(s\) not in tracks.parquet: 99"
    ):
        run(params, features, tmp_path / "tokens")
    segments.assign(n_frames=segments.n_frames + 5).to_parquet(path)
    with pytest.raises(
        ValueError,
        match=rf"segments\.parquet: track \d segment \d spans .* outside the track's {n_frames} frames",
    ):
        run(params, features, tmp_path / "tokens")
    (features / "tracks.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"tracks\.parquet: not found"):
        run(params, features, tmp_path / "tokens")


def test_cli_help_lists_the_options():
    from typer.testing import CliRunner

    from stages.cli import app

    result = CliRunner().invoke(app, ["tokenize", "--help"])
    assert result.exit_code == 0
    for option in ("--params", "--features", "--out"):
        assert option in result.output


def test_notes_after_the_audio_ends_are_a_warning_naming_the_file(tmp_path):
    from mtlib.musicnet import MusicNetWarning, write_labels

    params, features, _ = write_inputs(tmp_path)
    csv = tmp_path / "musicnet" / "train_labels" / "2.csv"
    write_labels(csv, [*TRACKS[("train", "2")], Note(3.5, 3.6, 60, 1)], RATE)
    with pytest.warns(MusicNetWarning, match=r"train_labels/2\.csv: 1 notes start after its audio"):
        run(params, features, tmp_path / "tokens")
    assert json.loads((tmp_path / "tokens" / "stats.json").read_text())["notes_after_end"] == 1
