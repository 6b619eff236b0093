"""tokenize stage: per-segment Seq2Seq event tokens and CTC targets from the label CSVs.

Run as `python -m stages.tokenize` or `mt tokenize` (running this file as a script would shadow
Python's own `tokenize` module)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import run

TRACK_COLUMNS = ["track", "labels", "file_rate", "n_frames"]
SEGMENT_COLUMNS = ["track", "segment", "start_frame", "n_frames"]


def main(
    params: Path = typer.Option(
        Path("params.yaml"),
        help="Params file (reads audio.sample_rate, audio.hop_length, vocab.*).",
    ),
    features: Path = typer.Option(
        Path("data/features"),
        help="Segment stage output folder (tracks.parquet, segments.parquet).",
    ),
    out: Path = typer.Option(
        Path("data/tokens"),
        help="Output folder: tokens.parquet and stats.json (written atomically).",
    ),
) -> None:
    """Tokenize every segment: Seq2Seq event tokens (with ties) and CTC targets, plus token stats."""

    import warnings

    from rich.console import Console

    from mtlib.dataset import read_table
    from mtlib.events import summarize_tokens, tokenize_track
    from mtlib.io import atomic_dir, write_json
    from mtlib.musicnet import MusicNetWarning, read_label_file
    from mtlib.params import config_from, load_params, section
    from mtlib.vocab import Vocabulary

    p = load_params(params)
    vocab = config_from(Vocabulary, section(p, "vocab"), "vocab")
    sample_rate, hop_length = (
        int(section(p, "audio.sample_rate")),
        int(section(p, "audio.hop_length")),
    )
    tracks = read_table(features / "tracks.parquet", TRACK_COLUMNS)
    segments = read_table(features / "segments.parquet", SEGMENT_COLUMNS)
    _check_segments(tracks, segments, features / "segments.parquet")

    rows, results = [], []
    by_track = {tid: part.sort_values("segment") for tid, part in segments.groupby("track")}
    for track in tracks.itertuples():
        notes = read_label_file(
            track.labels, int(track.file_rate), vocab.min_pitch, vocab.max_pitch
        )
        part = by_track[track.track]
        spans = zip(part.segment, part.start_frame, part.n_frames)
        result = tokenize_track(
            notes, int(track.n_frames), list(spans), vocab, sample_rate, hop_length
        )
        past = result.stats["notes_after_end"]
        if (
            past
        ):  # segment already warned (or stopped above a threshold); the count is per frame here
            warnings.warn(
                MusicNetWarning(
                    f"{track.labels}: {past} notes start after its audio ends; dropped"
                ),
                stacklevel=1,
            )
        rows += [{"track": track.track, **row} for row in result.rows]
        results.append(result)
    stats = summarize_tokens(results, vocab)
    with atomic_dir(out) as tmp:
        _write_tokens(rows, tmp / "tokens.parquet")
        write_json(tmp / "stats.json", stats)
    console = Console(stderr=True)
    console.print(f"tokenize → {out}")
    console.print_json(data=stats)


def _check_segments(tracks, segments, path: Path) -> None:
    """Every segment belongs to a listed track, every track has a segment, and windows fit the track."""
    known = set(tracks.track)
    stray = sorted(set(segments.track) - known)
    if stray:
        raise ValueError(
            f"{path}: segments for track(s) not in tracks.parquet: {', '.join(stray[:5])}"
        )
    bare = sorted(known - set(segments.track))
    if bare:
        raise ValueError(f"{path}: no segments for track(s) {', '.join(bare[:5])}")
    length = segments.track.map(dict(zip(tracks.track, tracks.n_frames)))
    bad = segments[
        (segments.start_frame < 0)
        | (segments.n_frames < 1)
        | (segments.start_frame + segments.n_frames > length)
    ]
    if len(bad):
        row = bad.iloc[0]
        raise ValueError(
            f"{path}: track {row.track} segment {row.segment} spans frames {row.start_frame}+{row.n_frames}, "
            f"outside the track's {length[bad.index[0]]} frames"
        )


def _write_tokens(rows: list[dict], path: Path) -> None:
    """tokens.parquet with list<int32> token columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ints = pa.list_(pa.int32())
    schema = pa.schema(
        [
            ("track", pa.string()),
            ("segment", pa.int64()),
            ("start_frame", pa.int64()),
            ("n_frames", pa.int64()),
            ("tokens", ints),
            ("ctc_tokens", ints),
            ("ctc_frames", ints),
        ]
    )
    columns = {name: [row[name] for row in rows] for name in schema.names}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), path)


if __name__ == "__main__":
    import typer

    run(main)
