import numpy as np
import pytest
from conftest import write_musicnet_track

from mtlib.audio import load_audio, write_wav
from mtlib.errors import AudioError, MusicNetFormatError
from mtlib.musicnet import (
    Beat,
    MusicNetWarning,
    list_tracks,
    read_labels,
    read_metadata,
    read_track,
    write_labels,
)
from mtlib.notes import Note


def test_write_then_read_track_exactly(tmp_path):
    rate = 44100
    # times on the sample grid, so the round trip is exact
    notes = [
        Note(s / rate, e / rate, p, g)
        for s, e, p, g in [(0, 22050, 60, 1), (11025, 44100, 64, 41), (11025, 30000, 67, 43)]
    ]
    beats = [
        Beat(0.0, 1.0, "Quarter"),
        Beat(0.5, 1.5, "Dotted Quarter"),
        Beat(0.5, 0.25, "Sixteenth"),
    ]
    root = tmp_path / "mn"
    write_musicnet_track(root, "train", "2156", notes, rate=rate, seconds=1.5)
    write_labels(root / "train_labels" / "2156.csv", notes, rate, beats)
    (track,) = list_tracks(root)
    assert (track.id, track.split) == ("2156", "train")
    assert read_track(track) == sorted(notes, key=lambda n: (n.onset, n.pitch))
    text = (root / "train_labels" / "2156.csv").read_text().splitlines()
    assert text[0] == "start_time,end_time,instrument,note,start_beat,end_beat,note_value"
    assert text[1] == "0,22050,1,60,0.0,1.0,Quarter"


def test_labels_are_timed_by_the_audio_files_own_rate(tmp_path):
    root = tmp_path / "mn"
    write_musicnet_track(root, "test", "7", [Note(1.0, 2.0, 60, 1)], rate=22050, seconds=3.0)
    (track,) = list_tracks(root)
    (note,) = read_track(track)
    assert note.onset == pytest.approx(1.0) and note.offset == pytest.approx(2.0)


def test_list_tracks_sorted_numerically_and_metadata(tiny_musicnet):
    write_musicnet_track(tiny_musicnet, "train", "10", [Note(0.1, 0.2, 60, 1)], seconds=0.5)
    ids = [(t.split, t.id) for t in list_tracks(tiny_musicnet)]
    assert ids == [("train", "1"), ("train", "2"), ("train", "10"), ("test", "3")]
    assert read_metadata(tiny_musicnet) == {}
    (tiny_musicnet / "musicnet_metadata.csv").write_text("id,composer\n1,Bach\n")
    assert read_metadata(tiny_musicnet)["1"]["composer"] == "Bach"


def test_missing_column_names_file_and_column(tmp_path):
    p = tmp_path / "2156.csv"
    p.write_text(
        "start_time,end_time,instrument,pitch,start_beat,end_beat,note_value\n0,100,1,60,0,1,Quarter\n"
    )
    with pytest.raises(MusicNetFormatError, match=r"2156\.csv: missing column 'note'"):
        read_labels(p, 44100)


def test_non_numeric_value_names_line(tmp_path):
    p = tmp_path / "5.csv"
    p.write_text(
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n0,100,1,60,0,1,Q\n5,x,1,60,0,1,Q\n"
    )
    with pytest.raises(
        MusicNetFormatError, match=r"5\.csv: line 3: column 'end_time' is not a number"
    ):
        read_labels(p, 44100)


def test_empty_label_file(tmp_path):
    p = tmp_path / "6.csv"
    p.write_text("")
    with pytest.raises(MusicNetFormatError, match=r"6\.csv: empty label file"):
        read_labels(p, 44100)


@pytest.mark.parametrize(
    "row, message",
    [
        (
            "-5,100,1,60",
            r"line 3: column 'start_time' = -5.* is negative or beyond 24 h at 44100 Hz",
        ),
        ("0,4410000000,1,60", r"line 3: column 'end_time' = 4410000000.* beyond 24 h at 44100 Hz"),
        ("0,1e30,1,60", r"line 3: column 'end_time' = 1e\+30 is negative or beyond 24 h"),
        ("0,100,1,200", r"line 3: column 'note' = 200.* is not a MIDI pitch \(0-127\)"),
        ("0,100,1,-1", r"line 3: column 'note' = -1.* is not a MIDI pitch"),
    ],
)
def test_impossible_label_values_are_named_errors(tmp_path, row, message):
    """Negative or absurd times (a wrong rate, extra digits) and non-MIDI pitches never reach
    mir_eval: an error names the file, the line, the column and the value."""
    p = tmp_path / "7.csv"
    p.write_text(
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
        f"0,100,1,60,0,1,Q\n{row},0,1,Q\n"
    )
    with pytest.raises(MusicNetFormatError, match=r"7\.csv: " + message):
        read_labels(p, 44100)


def test_bad_notes_dropped_and_counted(tmp_path):
    p = tmp_path / "9.csv"
    p.write_text(
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
        "0,100,1,60,0,1,Q\n100,100,1,61,0,1,Q\n200,150,1,62,0,1,Q\n0,100,1,10,0,1,Q\n0,100,1,64,0,1,Q\n"
    )
    with pytest.warns(
        MusicNetWarning,
        match=r"9\.csv: dropped 3 of 5 notes \(2 with end_time <= start_time, 1 with a pitch outside 21-108\)",
    ):
        notes = read_labels(p, 44100, 21, 108)
    assert [n.pitch for n in notes] == [60, 64]


def test_label_without_audio_and_audio_without_label(tmp_path):
    root = tmp_path / "mn"
    write_musicnet_track(root, "train", "1", [Note(0.1, 0.2, 60, 1)], seconds=0.5)
    (root / "train_labels" / "2.csv").write_text(
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
    )
    with pytest.raises(MusicNetFormatError, match=r"train_labels/2\.csv: label file without audio"):
        list_tracks(root)
    (root / "train_labels" / "2.csv").unlink()
    write_wav(root / "train_data" / "3.wav", np.zeros(100, np.float32), 44100)
    with pytest.raises(MusicNetFormatError, match=r"train_data/3\.wav: audio without a label file"):
        list_tracks(root)


def test_missing_root_and_split_folder(tmp_path):
    with pytest.raises(MusicNetFormatError, match="MusicNet root folder not found"):
        list_tracks(tmp_path / "nope")
    (tmp_path / "mn" / "train_data").mkdir(parents=True)
    with pytest.raises(MusicNetFormatError, match=r"train_labels: missing folder"):
        list_tracks(tmp_path / "mn")


def test_unreadable_and_empty_wav(tmp_path):
    bad = tmp_path / "1.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(AudioError, match=r"1\.wav: unreadable audio"):
        load_audio(bad)
    empty = tmp_path / "2.wav"
    write_wav(empty, np.zeros(0, np.float32), 44100)
    with pytest.raises(AudioError, match=r"2\.wav: empty audio"):
        load_audio(empty)
    root = tmp_path / "mn"
    write_musicnet_track(root, "train", "4", [Note(0.1, 0.2, 60, 1)], audio=np.zeros(0, np.float32))
    with pytest.raises(AudioError, match=r"4\.wav: empty audio"):
        read_track(list_tracks(root)[0])


def test_stereo_other_rate_is_resampled_to_mono(tmp_path):
    import soundfile as sf

    t = np.arange(48000) / 48000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, left], axis=1), 48000)
    audio, rate = load_audio(tmp_path / "s.wav", 16000)
    assert rate == 16000 and audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) - 16000) <= 1
    # still a 440 Hz sine of amplitude 0.5
    spec = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spec) * 16000 / len(audio) - 440) < 2
    assert np.max(np.abs(audio[100:-100])) == pytest.approx(0.5, abs=0.02)


def test_extra_test_splits_are_listed_and_ids_must_be_unique(tiny_musicnet):
    """`test_<name>_{data,labels}/` folders are evaluation splits of their own; an id that
    appears in two splits is refused (features and predictions are named by id)."""
    from conftest import write_musicnet_track

    from mtlib.errors import MusicNetFormatError
    from mtlib.musicnet import extra_test_splits, list_tracks
    from mtlib.notes import Note

    write_musicnet_track(tiny_musicnet, "test_unseen", "u3", [Note(0.25, 0.75, 67, 1)])
    assert extra_test_splits(tiny_musicnet) == ["test_unseen"]
    assert [(t.split, t.id) for t in list_tracks(tiny_musicnet)] == [
        ("train", "1"),
        ("train", "2"),
        ("test", "3"),
        ("test_unseen", "u3"),
    ]
    assert [t.id for t in list_tracks(tiny_musicnet, ["train"])] == ["1", "2"]
    write_musicnet_track(tiny_musicnet, "test_unseen", "3", [Note(0.25, 0.75, 67, 1)])
    with pytest.raises(
        MusicNetFormatError, match=r"test_unseen_data/3.wav: track id 3 is also in test"
    ):
        list_tracks(tiny_musicnet)
    (tiny_musicnet / "test_unseen_labels" / "u3.csv").unlink()
    with pytest.raises(MusicNetFormatError, match="u3.wav: audio without a label file"):
        list_tracks(tiny_musicnet)


def test_two_audio_files_with_one_id_are_an_error(tmp_path):
    """`100.wav` beside `100.flac`: which is the recording? Refused, naming both (it used to take
    whichever the folder listed last)."""
    root = tmp_path / "mn"
    write_musicnet_track(root, "train", "100", [Note(0.1, 0.2, 60, 1)], seconds=0.5)
    write_wav(root / "train_data" / "100.flac", np.zeros(100, np.float32), 44100)
    with pytest.raises(
        MusicNetFormatError,
        match=r"100\.wav: track id 100 has two audio files \(100\.flac, 100\.wav\)",
    ):
        list_tracks(root)


def test_notes_after_the_audio_ends_warn_then_fail_above_a_tenth(tmp_path):
    """Labels past the end of their audio: a warning naming the label file and the count for a
    few (a recording cut short of a last note), an error when more than 10% are (audio cut off,
    or the labels of another recording)."""
    import warnings

    root = tmp_path / "mn"
    inside = [Note(0.1 * i, 0.1 * i + 0.05, 60 + i, 1) for i in range(10)]
    write_musicnet_track(root, "train", "1", [*inside, Note(2.5, 2.6, 60, 1)], seconds=2.0)
    (track,) = list_tracks(root)
    with pytest.warns(MusicNetWarning, match=r"1\.csv: 1 of 11 notes start after its audio ends"):
        assert len(read_track(track)) == 11
    write_musicnet_track(
        root, "train", "1", [*inside, Note(2.5, 2.6, 60, 1), Note(3.0, 3.1, 62, 1)], seconds=2.0
    )
    with pytest.raises(
        MusicNetFormatError, match=r"1\.csv: 2 of 12 notes start after its audio ends.*cut off"
    ):
        read_track(list_tracks(root)[0])
    write_musicnet_track(root, "train", "1", inside, seconds=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_track(list_tracks(root)[0])) == 10


def write_em_midi(path, notes):
    """A MusicNet-EM-style label file: one MIDI per recording, one instrument per program."""
    from mtlib.midi import write_midi

    path.parent.mkdir(parents=True, exist_ok=True)
    write_midi(path, notes)


def test_em_labels_come_from_midi_files_under_the_root(tiny_musicnet):
    """data.labels: em reads `<root>/musicnet_em/**/<id>.mid` instead of the CSVs: the same notes
    (seconds, programs), the same checks; the audio and splits are the CSV layout's."""
    em = tiny_musicnet / "musicnet_em"
    shifted = {}
    for t in list_tracks(tiny_musicnet):
        # EM moves the labels onto the audio: here 10 ms later than the CSV's
        shifted[t.id] = [
            Note(round(n.onset + 0.01, 3), round(n.offset + 0.01, 3), n.pitch, n.program)
            for n in read_track(t)
        ]
        write_em_midi(em / t.split / f"{t.id}.mid", shifted[t.id])
    tracks = list_tracks(tiny_musicnet, labels="em")
    assert [(t.split, t.id, t.labels.name) for t in tracks] == [
        ("train", "1", "1.mid"),
        ("train", "2", "2.mid"),
        ("test", "3", "3.mid"),
    ]
    for t in tracks:
        got = read_track(t)
        assert [(n.pitch, n.program) for n in got] == [(n.pitch, n.program) for n in shifted[t.id]]
        assert all(abs(a.onset - b.onset) < 1e-3 for a, b in zip(got, shifted[t.id]))
    with pytest.raises(ValueError, match="data.labels must be one of original, em"):
        list_tracks(tiny_musicnet, labels="aligned")


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_folder", r"musicnet_em: missing folder"),
        ("missing", r"test_data/3\.wav: audio without a MusicNet-EM label file"),
        ("orphan", r"musicnet_em/9\.mid: MusicNet-EM label file without audio"),
        ("twice", r"a second MIDI file for track 3"),
        ("empty", r"3\.mid: MIDI label file holds no notes"),
        ("unreadable", r"3\.mid: unreadable MIDI file"),
    ],
)
def test_em_label_problems_are_named_errors(tiny_musicnet, case, message):
    em = tiny_musicnet / "musicnet_em"
    if case != "no_folder":
        for tid in ("1", "2", "3"):
            write_em_midi(em / f"{tid}.mid", [Note(0.25, 0.75, 60, 1)])
    if case == "missing":
        (em / "3.mid").unlink()
    elif case == "orphan":
        write_em_midi(em / "9.mid", [Note(0.25, 0.75, 60, 1)])
    elif case == "twice":
        write_em_midi(em / "test" / "3.mid", [Note(0.25, 0.75, 60, 1)])
    elif case == "empty":
        write_em_midi(em / "3.mid", [])
    elif case == "unreadable":
        (em / "3.mid").write_bytes(b"MThd not really")
    with pytest.raises(MusicNetFormatError, match=message):
        for t in list_tracks(tiny_musicnet, labels="em"):
            read_track(t)


def test_em_labels_drop_what_cannot_be_learnt_with_one_warning(tmp_path):
    from mtlib.musicnet import read_midi_labels

    path = tmp_path / "1.mid"
    write_em_midi(path, [Note(0.1, 0.5, 60, 41), Note(0.2, 0.6, 10, 41), Note(0.3, 0.9, 64, 1)])
    with pytest.warns(
        MusicNetWarning,
        match=r"1\.mid: dropped 1 of 3 notes \(0 of zero length, 1 with a pitch outside 21-108\)",
    ):
        notes = read_midi_labels(path, 21, 108)
    assert [(n.pitch, n.program) for n in notes] == [(60, 41), (64, 1)]
