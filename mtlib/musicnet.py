"""The MusicNet layout: listing tracks, reading and writing label CSVs.

Layout: `{train,test}_data/<id>.wav`, `{train,test}_labels/<id>.csv`, optional
`musicnet_metadata.csv`. Extra evaluation splits may sit beside them as `test_<name>_data/` +
`test_<name>_labels/` (the demo data's `test_unseen`: the test pieces in a timbre and a room no
training track has); each is evaluated on its own. Label columns: start_time,end_time,instrument,note,start_beat,end_beat,
note_value, where start_time/end_time are sample indices at the audio file's own rate
(44.1 kHz in MusicNet), instrument is a 1-based General MIDI program, note a MIDI pitch,
start_beat a position in beats and end_beat a duration in beats. The demo data uses exactly
this layout and this code path.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlib.audio import audio_info
from mtlib.errors import MusicNetFormatError
from mtlib.notes import Note, sort_notes
from mtlib.timebase import samples_to_seconds, seconds_to_samples

LABEL_COLUMNS = (
    "start_time",
    "end_time",
    "instrument",
    "note",
    "start_beat",
    "end_beat",
    "note_value",
)
SPLITS = ("train", "test")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class MusicNetWarning(UserWarning):
    """Input that was repaired or skipped (dropped notes, resampled audio); names the file."""


@dataclass(frozen=True)
class Track:
    """One MusicNet track: its id, the folder split it lives in, and its two files."""

    id: str
    split: str  # "train", "test" or an extra "test_<name>" folder (val is carved out later)
    audio: Path
    labels: Path


@dataclass(frozen=True)
class Beat:
    """The score-side columns of a label row (unused for timing, kept for round trips)."""

    start_beat: float
    end_beat: float  # a duration in beats, despite the name
    note_value: str


def extra_test_splits(root: str | Path) -> list[str]:
    """The `test_<name>` splits under a MusicNet root (folders `test_<name>_data/`), sorted."""
    root = Path(root)
    return sorted(p.name[: -len("_data")] for p in root.glob("test_*_data") if p.is_dir())


LABEL_SOURCES = ("original", "em")  # params.yaml data.labels
EM_FOLDER = "musicnet_em"  # <root>/musicnet_em/**/<id>.mid: MusicNet-EM, unpacked into the root
MIDI_SUFFIXES = (".mid", ".midi")


def split_file_suffix(split: str) -> str:
    """ "" for the test split, "_<name>" for an extra `test_<name>` split (metrics/ctc_unseen.json)."""
    return "" if split == "test" else "_" + split.removeprefix("test_")


def list_tracks(
    root: str | Path, splits: Sequence[str] | None = None, labels: str = "original"
) -> list[Track]:
    """All tracks under a MusicNet root, sorted by (split, id): `splits`, by default train, test
    and every extra `test_<name>` split present. `labels`: "original" (the label CSVs of
    `<split>_labels/`) or "em" (MusicNet-EM's MIDI files, `em_label_files`).

    Raises MusicNetFormatError if the root or a split folder is missing, if an audio file has no
    label file or the reverse, or if one id has two audio files or appears in two splits
    (features and predictions are named by id)."""
    root = Path(root)
    if labels not in LABEL_SOURCES:
        raise ValueError(f"data.labels must be one of {', '.join(LABEL_SOURCES)}, got {labels!r}")
    if not root.is_dir():
        raise MusicNetFormatError(root, "MusicNet root folder not found")
    if splits is None:
        splits = [*SPLITS, *extra_test_splits(root)]
    audio = {split: _split_audio(root, split, labels == "original") for split in splits}
    if labels == "em":
        found = em_label_files(root)
        _check_pairs_em(root, audio, found)
        label_files = {split: {t: found[t] for t in ids} for split, ids in audio.items()}
    else:
        label_files = {split: _split_csvs(root, split, audio[split]) for split in splits}
    tracks = [
        Track(tid, split, audio[split][tid], label_files[split][tid])
        for split in splits
        for tid in sorted(audio[split], key=_id_key)
    ]
    seen: dict[str, Track] = {}
    for t in tracks:
        if t.id in seen:
            raise MusicNetFormatError(
                t.audio,
                f"track id {t.id} is also in {seen[t.id].split} ({seen[t.id].audio}): ids must be unique",
            )
        seen[t.id] = t
    return tracks


def _split_audio(root: Path, split: str, need_labels: bool) -> dict[str, Path]:
    """{id: audio file} of `<split>_data/`; the folders must exist (`<split>_labels/` too when
    the labels are the CSVs)."""
    data_dir, label_dir = root / f"{split}_data", root / f"{split}_labels"
    for d in (data_dir, label_dir) if need_labels else (data_dir,):
        if not d.is_dir():
            raise MusicNetFormatError(
                d, f"missing folder (a MusicNet root holds {split}_data/ and {split}_labels/)"
            )
    audio: dict[str, Path] = {}
    for p in sorted(data_dir.iterdir()):
        if p.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        if p.stem in audio:  # 100.wav beside 100.flac: which one is the recording?
            raise MusicNetFormatError(
                p,
                f"track id {p.stem} has two audio files ({audio[p.stem].name}, {p.name}); keep one",
            )
        audio[p.stem] = p
    return audio


def _split_csvs(root: Path, split: str, audio: dict[str, Path]) -> dict[str, Path]:
    """{id: label CSV} of `<split>_labels/`, one for every audio file and no other."""
    data_dir, label_dir = root / f"{split}_data", root / f"{split}_labels"
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".csv"}
    for tid in sorted(set(audio) - set(labels)):
        raise MusicNetFormatError(
            audio[tid], f"audio without a label file (expected {label_dir / (tid + '.csv')})"
        )
    for tid in sorted(set(labels) - set(audio)):
        raise MusicNetFormatError(
            labels[tid], f"label file without audio (expected {data_dir / (tid + '.wav')})"
        )
    return labels


def em_label_files(root: str | Path) -> dict[str, Path]:
    """{id: MIDI file} of MusicNet-EM (Maman & Bermano, ICML 2022: the labels re-aligned to the
    audio), unpacked anywhere under `<root>/musicnet_em/` as `<id>.mid`. Two files for one id,
    or no folder, are a MusicNetFormatError."""
    folder = Path(root) / EM_FOLDER
    if not folder.is_dir():
        raise MusicNetFormatError(
            folder, "missing folder: data.labels: em reads MusicNet-EM's <id>.mid files from here"
        )
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in MIDI_SUFFIXES and p.is_file():
            if p.stem in found:
                raise MusicNetFormatError(
                    p, f"a second MIDI file for track {p.stem} ({found[p.stem]})"
                )
            found[p.stem] = p
    return found


def _check_pairs_em(root: Path, audio: dict[str, dict[str, Path]], found: dict[str, Path]) -> None:
    """Every audio file has its MIDI and every MIDI its audio (in any listed split)."""
    with_audio = {tid for ids in audio.values() for tid in ids}
    for ids in audio.values():
        for tid in sorted(set(ids) - set(found), key=_id_key):
            raise MusicNetFormatError(
                ids[tid],
                f"audio without a MusicNet-EM label file (expected {root / EM_FOLDER}/{tid}.mid)",
            )
    for tid in sorted(set(found) - with_audio, key=_id_key):
        raise MusicNetFormatError(
            found[tid], f"MusicNet-EM label file without audio (no {tid}.wav in any listed split)"
        )


def _id_key(tid: str):
    return (0, int(tid), tid) if tid.isdigit() else (1, 0, tid)


def read_metadata(root: str | Path) -> dict[str, dict[str, str]]:
    """`musicnet_metadata.csv` as {id: row}, or {} if the file is absent."""
    path = Path(root) / "musicnet_metadata.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "id" not in rows[0]:
        raise MusicNetFormatError(path, "missing column 'id'")
    return {str(r["id"]): r for r in rows}


def metadata_by_root(audio_paths: Iterable[str | Path]) -> dict[Path, dict[str, dict[str, str]]]:
    """{root: its `read_metadata`} for every data root holding one of these audio files (the
    folder above a track's audio folder, `<root>/<split>_data/<id>.wav`), each file read once."""
    return {
        root: read_metadata(root) for root in sorted({Path(a).parent.parent for a in audio_paths})
    }


MAX_LABEL_HOURS = 24.0  # a sample index beyond this is not a time in this file


def check_label_values(path: Path, df, file_rate: int) -> None:
    """Named errors for values no recording has: a negative time, a time beyond MAX_LABEL_HOURS
    at `file_rate` (a wrong rate or extra digits; 1e30 would also wrap around as an integer),
    a pitch outside MIDI's 0-127. Checked on the float values, before any integer cast."""
    limit = MAX_LABEL_HOURS * 3600.0 * file_rate
    for col in ("start_time", "end_time", "note"):
        values = df[col].to_numpy(np.float64)
        if col == "note":
            bad, why = (values < 0) | (values > 127), "is not a MIDI pitch (0-127)"
        else:
            bad = (values < 0) | (values > limit)
            why = f"is negative or beyond {MAX_LABEL_HOURS:g} h at {file_rate} Hz"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MusicNetFormatError(
                path, f"line {i + 2}: column '{col}' = {values[i]:.12g} {why}"
            )


def read_labels(
    path: str | Path,
    file_rate: int,
    min_pitch: int = 0,
    max_pitch: int = 127,
) -> list[Note]:
    """A label CSV → notes in seconds (sample indices divided by the audio file's own rate).

    A negative time, a time beyond 24 h, or a pitch outside 0-127 is a MusicNetFormatError
    naming the file and the line (`check_label_values`). Notes with end <= start or a pitch outside [min_pitch, max_pitch] are dropped and counted in
    one MusicNetWarning naming the file. A missing column or a non-numeric value raises
    MusicNetFormatError naming the file, the column and the line."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise MusicNetFormatError(path, "empty label file (no header)") from None
    except Exception as exc:
        raise MusicNetFormatError(path, f"unreadable label file ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in LABEL_COLUMNS:
        if col not in df.columns:
            raise MusicNetFormatError(
                path, f"missing column '{col}' (columns are {', '.join(df.columns)})"
            )
    for col in ("start_time", "end_time", "instrument", "note"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
            raise MusicNetFormatError(
                path, f"line {line}: column '{col}' is not a number ({df[col].iloc[line - 2]!r})"
            )
        df[col] = values
    check_label_values(path, df, file_rate)
    start = df["start_time"].to_numpy(np.int64)
    end = df["end_time"].to_numpy(np.int64)
    pitch = df["note"].to_numpy(np.int64)
    program = df["instrument"].to_numpy(np.int64)
    bad_time = end <= start
    bad_pitch = (pitch < min_pitch) | (pitch > max_pitch)
    keep = ~(bad_time | bad_pitch)
    warn_dropped(path, bad_time, bad_pitch, "with end_time <= start_time", min_pitch, max_pitch)
    onsets = samples_to_seconds(start[keep], file_rate)
    offsets = samples_to_seconds(end[keep], file_rate)
    return sort_notes(
        Note(float(a), float(b), int(p), int(g))
        for a, b, p, g in zip(onsets, offsets, pitch[keep], program[keep])
    )


def read_track(track: Track, min_pitch: int = 0, max_pitch: int = 127) -> list[Note]:
    """The notes of a track, timed by its audio file's own sample rate, checked against the
    audio's length (`check_notes_in_audio`)."""
    file_rate, frames, _ = audio_info(track.audio)
    if frames == 0:
        from mtlib.errors import AudioError

        raise AudioError(track.audio, "empty audio (0 samples)")
    notes = read_label_file(track.labels, file_rate, min_pitch, max_pitch)
    check_notes_in_audio(track, notes, frames / file_rate)
    return notes


def read_label_file(
    path: str | Path, file_rate: int, min_pitch: int = 0, max_pitch: int = 127
) -> list[Note]:
    """A track's labels, whatever their format: a MusicNet CSV (`read_labels`, sample indices at
    `file_rate`) or a MusicNet-EM MIDI file (`read_midi_labels`, times in seconds)."""
    if Path(path).suffix.lower() in MIDI_SUFFIXES:
        return read_midi_labels(path, min_pitch, max_pitch)
    return read_labels(path, file_rate, min_pitch, max_pitch)


def read_midi_labels(path: str | Path, min_pitch: int = 0, max_pitch: int = 127) -> list[Note]:
    """A MIDI label file (MusicNet-EM: one per recording, with or without instrument programs)
    → notes, validated as `read_labels` validates a CSV: an unreadable file or one with no notes
    is a MusicNetFormatError naming it; notes of zero length or outside [min_pitch, max_pitch]
    are dropped and counted in one MusicNetWarning. A file with no program changes reads as
    program 1 (piano), as pretty_midi reads it."""
    from mtlib.midi import read_midi

    path = Path(path)
    notes = read_midi(path)
    if not notes:
        raise MusicNetFormatError(path, "MIDI label file holds no notes")
    bad_time = np.array([n.offset <= n.onset for n in notes])
    bad_pitch = np.array([not min_pitch <= n.pitch <= max_pitch for n in notes])
    warn_dropped(path, bad_time, bad_pitch, "of zero length", min_pitch, max_pitch)
    return [n for n, bad in zip(notes, bad_time | bad_pitch) if not bad]


def warn_dropped(
    path: Path,
    bad_time: np.ndarray,
    bad_pitch: np.ndarray,
    time_rule: str,
    min_pitch: int,
    max_pitch: int,
) -> None:
    """One MusicNetWarning naming the label file for the notes a reader drops (boolean masks:
    a bad time, `time_rule` in words; a pitch outside [min_pitch, max_pitch]), none if none."""
    dropped = bad_time | bad_pitch
    if dropped.any():
        warnings.warn(
            MusicNetWarning(
                f"{path}: dropped {int(dropped.sum())} of {len(dropped)} notes "
                f"({int(bad_time.sum())} {time_rule}, "
                f"{int((bad_pitch & ~bad_time).sum())} with a pitch outside {min_pitch}-{max_pitch})"
            ),
            stacklevel=3,
        )


MAX_NOTES_PAST_END = 0.1  # above this fraction of a track's notes, the labels do not fit the audio


def check_notes_in_audio(track: Track, notes: Sequence[Note], seconds: float) -> None:
    """Notes that start after the audio ends (`seconds`) cannot be learnt and are dropped by
    tokenize: a MusicNetWarning naming the label file and the count, or a MusicNetFormatError
    when they are more than MAX_NOTES_PAST_END of the notes (audio cut off, or labels that belong
    to another recording)."""
    past = sum(n.onset >= seconds for n in notes)
    if not past:
        return
    what = (
        f"{past} of {len(notes)} notes start after its audio ends ({track.audio}: {seconds:.2f} s)"
    )
    if past > MAX_NOTES_PAST_END * len(notes):
        raise MusicNetFormatError(
            track.labels,
            f"{what}; more than {MAX_NOTES_PAST_END:.0%}: is the audio cut off, or are these the "
            "labels of another recording?",
        )
    warnings.warn(MusicNetWarning(f"{track.labels}: {what}; they are dropped"), stacklevel=2)


def write_labels(
    path: str | Path, notes: Sequence[Note], rate: int, beats: Sequence[Beat] | None = None
) -> None:
    """Notes → a MusicNet label CSV with sample indices at `rate`, written atomically.

    `beats` (one per note, same order) fills the score columns; without it they are left empty
    (a transcription knows no beats). Notes are written in the order given."""
    from mtlib.io import atomic_path

    if beats is not None and len(beats) != len(notes):
        raise ValueError(f"{path}: {len(beats)} beat rows for {len(notes)} notes")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LABEL_COLUMNS)
        for i, n in enumerate(notes):
            b = beats[i] if beats is not None else None
            w.writerow(
                [
                    seconds_to_samples(n.onset, rate),
                    seconds_to_samples(n.offset, rate),
                    n.program,
                    n.pitch,
                    "" if b is None else _fmt(b.start_beat),
                    "" if b is None else _fmt(b.end_beat),
                    "" if b is None else b.note_value,
                ]
            )


def _fmt(x: float) -> str:
    return repr(round(float(x), 6))
