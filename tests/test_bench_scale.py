"""The scale benchmark's synthetic corpus (benchmarks/bench_scale.py): concatenated tracks keep
every label on its audio, copies are hard links in MusicNet's layout, and the real reader
(mtlib.musicnet) accepts the result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import soundfile as sf

from benchmarks.bench_scale import build_base, build_corpus
from mtlib.musicnet import list_tracks, read_track

RATE = 44100


def write_track(folder, split, tid, seconds, notes):
    """A demo-layout track: a tone burst at each note's start sample, labels in samples."""
    (folder / f"{split}_data").mkdir(parents=True, exist_ok=True)
    (folder / f"{split}_labels").mkdir(parents=True, exist_ok=True)
    audio = np.zeros(int(seconds * RATE), np.int16)
    rows = []
    for start, end, pitch in notes:
        audio[start : start + 100] = 1000 + pitch  # marks the note's onset in the audio
        rows.append((start, end, 1, pitch, 0.0, 1.0, "Quarter"))
    sf.write(folder / f"{split}_data" / f"{tid}.wav", audio, RATE, subtype="PCM_16")
    columns = ["start_time", "end_time", "instrument", "note", "start_beat", "end_beat"]
    pd.DataFrame(rows, columns=[*columns, "note_value"]).to_csv(
        folder / f"{split}_labels" / f"{tid}.csv", index=False
    )


def test_concatenated_labels_stay_on_their_audio_and_copies_are_links(tmp_path):
    demo = tmp_path / "demo"
    write_track(demo, "train", "2", 1.0, [(1000, 5000, 60), (20000, 30000, 62)])
    write_track(demo, "train", "10", 0.5, [(500, 9000, 64)])
    write_track(demo, "test", "5", 0.5, [(700, 900, 65)])
    write_track(demo, "test_unseen", "u1", 0.5, [(300, 900, 67)])
    base = build_base(demo, tmp_path / "base", base_minutes=1.2 / 60)  # 1.2 s per track
    assert len(base) == 2  # "2" + "10" (1.5 s) reach 1.2 s; "5" + "u1" (1.0 s) are the rest
    audio, _ = sf.read(base[0][0], dtype="int16")
    labels = pd.read_csv(base[0][1])
    assert len(audio) == int(1.5 * RATE)
    assert labels["start_time"].tolist() == [1000, 20000, RATE + 500]  # "10" after "2"'s samples
    assert labels["end_time"].tolist() == [5000, 30000, RATE + 9000]
    for start, pitch in zip(labels["start_time"], labels["note"]):
        assert audio[start] == 1000 + pitch
    assert labels["start_beat"].tolist() == [0.0, 0.0, 2.0]  # beats continue after the first piece
    info = build_corpus(base, tmp_path / "x3", 3)
    assert info["tracks"] == 6 and abs(info["hours"] * 3600 - 3 * 2.5) < 1e-6
    assert pd.read_csv(base[1][1])["start_time"].tolist() == [700, RATE // 2 + 300]
    test = sorted(p.name for p in (tmp_path / "x3" / "test_data").iterdir())
    train = sorted(p.name for p in (tmp_path / "x3" / "train_data").iterdir())
    assert len(test) + len(train) == 6 and (tmp_path / "x3/train_data/1.wav").stat().st_nlink == 4
    tracks = list_tracks(tmp_path / "x3", ["train"])
    assert {t.id for t in tracks} == {p.split(".")[0] for p in train}
    first = next(t for t in tracks if t.id == "1")
    assert [n.pitch for n in read_track(first)] == [60, 62, 64]
