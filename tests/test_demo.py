"""The demo dataset: MusicNet layout read back by the real reader, determinism, disjoint splits,
labels that agree with the rendered audio, and the score → note list rules."""

from __future__ import annotations

import csv
import filecmp
from dataclasses import replace

import numpy as np
import pytest
from conftest import energy_onset
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.demo import (
    ENSEMBLES,
    SWAP_PROGRAMS,
    DemoConfig,
    TempoMap,
    build_demo,
    note_value_words,
    part_programs,
    render_notes,
    score_to_piece,
    swap_timbres,
    train_order,
)
from mtlib.notes import Note

TINY = dict(train_minutes=0.3, test_minutes=0.15, max_seconds=8.0)
RATE = 44100


@pytest.fixture(scope="module")
def soundfont():
    from mtlib.soundfont import soundfont_path

    return soundfont_path("TimGM6mb")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """A tiny demo folder built in-process (workers=1), and its tracks."""
    root = tmp_path_factory.mktemp("demo") / "musicnet_demo"
    tracks = build_demo(root, DemoConfig(**TINY, workers=1))
    return root, tracks


def test_layout_is_read_back_by_the_musicnet_reader(tiny_demo):
    import soundfile as sf

    from mtlib.musicnet import LABEL_COLUMNS, list_tracks, read_metadata, read_track

    root, written = tiny_demo
    tracks = list_tracks(root)
    assert {(t.id, t.split) for t in tracks} == {(t.id, t.split) for t in written}
    assert {t.split for t in tracks} == {"train", "test", "test_unseen", "test_recorded"}
    prefix = {"test_unseen": "u", "test_recorded": "r"}
    assert all(
        t.id.isdigit()
        if t.split not in prefix
        else t.id[0] == prefix[t.split] and t.id[1:].isdigit()
        for t in tracks
    )
    allowed = {p for roles in ENSEMBLES.values() for p in roles}
    for track in tracks:
        info = sf.info(str(track.audio))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            RATE,
            1,
            "PCM_16",
            "WAV",
        )
        with open(track.labels, newline="") as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == LABEL_COLUMNS and all(
            r["note_value"] and r["start_beat"] and r["end_beat"] for r in rows
        )
        notes = read_track(track)
        assert notes and {n.program for n in notes} <= allowed
    assert set(read_metadata(root)) == {t.id for t in tracks}


def test_label_samples_lie_within_the_audio(tiny_demo):
    import soundfile as sf

    from mtlib.musicnet import list_tracks

    for track in list_tracks(tiny_demo[0]):
        n_samples = sf.info(str(track.audio)).frames
        with open(track.labels, newline="") as f:
            rows = list(csv.DictReader(f))
        starts = np.array([int(r["start_time"]) for r in rows])
        ends = np.array([int(r["end_time"]) for r in rows])
        assert (starts >= 0).all() and (ends > starts).all() and ends.max() <= n_samples
        assert ends.max() <= TINY["max_seconds"] * RATE  # long pieces are cut


def test_train_and_test_pieces_are_disjoint(tiny_demo):
    from mtlib.musicnet import read_metadata

    root, tracks = tiny_demo
    pieces = {split: {t.path for t in tracks if t.split == split} for split in ("train", "test")}
    assert pieces["train"] and pieces["test"] and not pieces["train"] & pieces["test"]
    replays = [t for t in tracks if t.split in ("test_unseen", "test_recorded")]
    assert len({t.path for t in tracks if t not in replays}) == len(tracks) - len(
        replays
    )  # each piece once, whole (the test splits' replays aside)
    assert {t.path for t in replays} == pieces["test"]
    assert {r["catalog_name"] for r in read_metadata(root).values()} == pieces["train"] | pieces[
        "test"
    ]


def test_stage_build_is_byte_identical_to_the_library_build(tiny_demo, tmp_path):
    """Same params → same bytes, whether run in-process or by two worker processes via the CLI."""
    import typer
    import yaml
    from typer.testing import CliRunner

    from stages.demo_data import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"demo": {**TINY, "workers": 2}}))
    out = tmp_path / "again"
    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(out)])
    assert result.exit_code == 0, result.output
    root = tiny_demo[0]
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(root, out, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "again",
        "params.yaml",
    ]  # no temp folder left


def test_missing_soundfont_is_a_clear_error(tmp_path):
    from mtlib.soundfont import SoundFontError

    with pytest.raises(SoundFontError, match="nowhere.sf2: SoundFont file not found"):
        build_demo(
            tmp_path / "out", DemoConfig(**TINY, other_sources={str(tmp_path / "nowhere.sf2"): 1.0})
        )
    assert not (tmp_path / "out").exists(), "checked before anything is written"


def test_the_unseen_soundfont_is_never_a_training_source():
    with pytest.raises(ValueError, match="demo.piano_sources uses FluidR3Mono"):
        DemoConfig(piano_sources={"salamander": 1.0, "FluidR3Mono": 0.1})
    with pytest.raises(ValueError, match=r"demo.recording.wet"):
        DemoConfig(recording={"wet": [0.5, 0.1]})
    with pytest.raises(KeyError, match="unknown key.*demo.pedal.*bogus"):
        DemoConfig(pedal={"bogus": 1})


def replays_of_the_test_pieces(root, tracks, split: str, prefix: str):
    """({id: test track}, {id: replay track}) after checking that `split` holds every test piece
    again as <prefix><id>, with the same labels and audio of the same length that is not the
    test audio."""
    import soundfile as sf

    test = {t.id: t for t in tracks if t.split == "test"}
    replays = {t.id: t for t in tracks if t.split == split}
    assert test and set(replays) == {f"{prefix}{i}" for i in test}
    for tid in test:
        labels = (root / "test_labels" / f"{tid}.csv").read_text()
        assert (root / f"{split}_labels" / f"{prefix}{tid}.csv").read_text() == labels
        a, _ = sf.read(root / "test_data" / f"{tid}.wav")
        b, _ = sf.read(root / f"{split}_data" / f"{prefix}{tid}.wav")
        assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)
    return test, replays


def test_test_unseen_replays_the_test_pieces_in_another_timbre_and_room(tiny_demo):
    """test_unseen holds each test piece again (same labels, id u<id>), played only by the unseen
    SoundFont in a room outside the training range; its audio is not the test audio."""
    root, tracks = tiny_demo
    test, unseen = replays_of_the_test_pieces(root, tracks, "test_unseen", "u")
    for tid in test:
        assert "FluidR3Mono" in unseen[f"u{tid}"].source and "FluidR3Mono" not in test[tid].source
        room = float(unseen[f"u{tid}"].source.split("room ")[1].split()[0])
        assert room >= 0.85 > 0.75  # the training rooms stop at 0.75
    assert all("FluidR3Mono" not in t.source for t in tracks if t.split == "train")


def test_test_recorded_replays_the_test_pieces_on_recorded_instruments(tiny_demo):
    """test_recorded holds each test piece again (same labels, id r<id>), every part the
    recordings have played on them (the oboe on the unseen SoundFont), in a training-range room;
    no training track uses them."""
    from mtlib.orchestra import PROGRAMS

    root, tracks = tiny_demo
    test, recorded = replays_of_the_test_pieces(root, tracks, "test_recorded", "r")
    for tid in test:
        played = dict(
            part.split(": ")
            for part in recorded[f"r{tid}"]
            .source.split("; ")[0]
            .removeprefix("transposed ")
            .split(", ")
            if ": " in part
        )
        for program in test[tid].programs:
            name = "piano" if program == 1 else str(program)
            assert played[name] == ("tonejs" if program in PROGRAMS else "FluidR3Mono"), played
        room = float(recorded[f"r{tid}"].source.split("room ")[1].split()[0])
        assert room <= 0.75
    assert all("tonejs" not in t.source for t in tracks if t.split in ("train", "test"))


def test_perform_replays_what_the_renderer_played(tiny_demo):
    """mtlib.demo.perform, given a written track's corpus piece, gives back its label file's notes
    (onset and end samples, pitch, program) and as many pedal passages as the track's source text
    names: the renderer plays exactly its performance (benchmarks/offset_errors.py relies on it)."""
    from music21 import corpus

    from mtlib.demo import perform
    from mtlib.timebase import seconds_to_samples

    root, tracks = tiny_demo
    cfg = DemoConfig(**TINY, workers=1)
    checked = 0
    for t in tracks:
        if t.split not in ("train", "test"):
            continue
        played = perform(
            score_to_piece(corpus.parse(t.path), t.path, t.pool, cfg), cfg, t.split == "train"
        )
        with open(root / f"{t.split}_labels" / f"{t.id}.csv") as f:
            rows = [
                (int(r["start_time"]), int(r["end_time"]), int(r["note"]), int(r["instrument"]))
                for r in csv.DictReader(f)
            ]
        notes = [
            (
                seconds_to_samples(n.onset, RATE),
                seconds_to_samples(n.offset, RATE),
                n.pitch,
                n.program,
            )
            for n in played.piece.notes
        ]
        assert sorted(notes) == sorted(rows), t.id
        said = int(t.source.split("pedal ")[1].split("x")[0]) if "pedal " in t.source else 0
        assert said == (len(played.pedal) if 1 in played.sources else 0), t.id
        checked += 1
    assert checked == sum(t.split in ("train", "test") for t in tracks) > 0


def test_train_only_pools_change_the_train_split_and_leave_the_test_splits_alone(
    tiny_demo, tmp_path
):
    """demo.extra_pools adds vocal polyphony, accompanied solos and more piano pieces to the train
    split only: the test and test_unseen files are byte-identical to those of the default build
    (no extra pools), whose train split holds only the test split's three pools."""
    root, tracks = tiny_demo
    classic = {"chorale", "quartet", "piano"}
    assert {t.pool for t in tracks} <= classic
    extra = tmp_path / "extra"
    pools = {"vocal": 1, "accompanied": 1, "keyboard": 1}
    extra_tracks = build_demo(extra, DemoConfig(**TINY, workers=1, extra_pools=pools))
    assert {t.pool for t in extra_tracks if t.split == "train"} & set(pools)
    assert {t.pool for t in extra_tracks if t.split != "train"} <= classic
    for split in ("test", "test_unseen"):
        for kind in ("data", "labels"):
            names = sorted(p.name for p in (root / f"{split}_{kind}").iterdir())
            assert names == sorted(p.name for p in (extra / f"{split}_{kind}").iterdir())
            _, mismatch, errors = filecmp.cmpfiles(
                root / f"{split}_{kind}", extra / f"{split}_{kind}", names, shallow=False
            )
            assert not mismatch and not errors


def test_swap_timbres_replaces_whole_instruments_and_keeps_the_piano():
    notes = [
        Note(0.1 * i, 0.1 * i + 0.3, 48 + i, program, 80)
        for i, program in enumerate([1, 41, 41, 43, 69, 1, 43])
    ]
    rng = np.random.default_rng(0)
    assert swap_timbres(notes, rng, 0.0) == notes
    swapped = swap_timbres(notes, np.random.default_rng(0), 1.0)
    assert [replace(n, program=o.program) for n, o in zip(swapped, notes)] == notes  # only programs
    new = {}
    for n, o in zip(swapped, notes):
        if o.program == 1:
            assert n.program == 1  # the piano (sampled grand, pedal) is never swapped
        else:
            assert n.program in SWAP_PROGRAMS
            assert new.setdefault(o.program, n.program) == n.program  # one program per instrument
    # seeded: the same stream gives the same swap, another stream (another piece) may not
    assert swap_timbres(notes, np.random.default_rng(0), 1.0) == swapped
    assert any(swap_timbres(notes, np.random.default_rng(s), 1.0) != swapped for s in range(1, 5))


def test_timbre_swap_changes_training_pieces_only(tiny_demo, tmp_path):
    """demo.timbre_swap 1: every non-piano instrument of a training piece is played by a program
    of SWAP_PROGRAMS, named in its labels; the test splits are byte-identical to the default's."""
    from mtlib.musicnet import list_tracks, read_track

    root, _ = tiny_demo
    swapped = tmp_path / "swapped"
    build_demo(swapped, DemoConfig(**TINY, workers=1, timbre_swap=1.0))
    train = [t for t in list_tracks(swapped) if t.split == "train"]
    programs = {n.program for t in train for n in read_track(t)}
    assert programs - {1} and programs <= set(SWAP_PROGRAMS) | {1}
    for split in ("test", "test_unseen", "test_recorded"):
        for kind in ("data", "labels"):
            names = sorted(p.name for p in (root / f"{split}_{kind}").iterdir())
            _, mismatch, errors = filecmp.cmpfiles(
                root / f"{split}_{kind}", swapped / f"{split}_{kind}", names, shallow=False
            )
            assert names and not mismatch and not errors
    with pytest.raises(ValueError, match="timbre_swap"):
        DemoConfig(timbre_swap=1.5)


def test_train_order_mixes_extra_pools_into_the_classic_order():
    classic = [("chorale", f"c{i}") for i in range(15)]
    assert train_order(0, classic, {}) == classic
    assert train_order(0, classic, {"vocal": 0}) == classic
    order = train_order(0, classic, {"vocal": 1, "keyboard": 2})
    assert [x for x in order if x[0] == "chorale"] == classic  # classic order kept
    cycles = [order[i * 10 : (i + 1) * 10] for i in range(2)]  # 3 extras + 7 classic per cycle
    for cycle in cycles:
        assert [pool for pool, _ in cycle[:3]] == ["keyboard", "keyboard", "vocal"]
    assert len([x for x in order if x[0] == "keyboard"]) == 4  # the pool has 4 pieces, no repeats
    assert len({path for _, path in order}) == len(order)
    assert order == train_order(0, classic, {"vocal": 1, "keyboard": 2})  # seeded
    with pytest.raises(ValueError, match="demo.extra_pools: folk"):
        DemoConfig(extra_pools={"folk": 1})


def test_levels_and_sources_vary_between_pieces(tiny_demo):
    """No more one SoundFont at exactly -20 dB: the pieces come at different levels and sources."""
    import soundfile as sf

    root, tracks = tiny_demo
    levels = []
    for t in tracks:
        audio, _ = sf.read(root / f"{t.split}_data" / f"{t.id}.wav")
        levels.append(20 * np.log10(np.sqrt(np.mean(audio**2))))
        assert -46.5 <= levels[-1] <= -11.5, (t.id, levels[-1])
        assert np.abs(audio).max() < 1.0, "never clipped"
    assert max(levels) - min(levels) > 3.0
    assert len({t.source.split(";")[0] for t in tracks}) > 1


def test_transposition_moves_every_note_and_drops_those_off_the_keyboard():
    from mtlib.demo import transpose_notes
    from mtlib.musicnet import Beat

    notes = (Note(0.0, 1.0, 22, 1), Note(0.5, 1.0, 60, 41), Note(1.0, 2.0, 107, 1))
    beats = tuple(Beat(float(i), 1.0, "Quarter") for i in range(3))
    up, up_beats = transpose_notes(notes, beats, 2)
    assert [n.pitch for n in up] == [24, 62] and up_beats == beats[:2]
    down, _ = transpose_notes(notes, beats, -2)
    assert [n.pitch for n in down] == [58, 105]


def test_a_reused_synth_renders_as_a_fresh_one(soundfont):
    """Workers keep one loaded synth per SoundFont: a piece rendered after another, even one cut
    off with notes and the pedal still down, is byte-identical to the same piece in a new synth."""
    from mtlib.demo import _synth

    first = [Note(0.1, 3.0, 48, 1, 100), Note(0.1, 3.0, 60, 41, 100)]
    piece = [Note(0.05, 0.5, 64, 1, 70), Note(0.3, 0.9, 67, 43, 90)]
    _synth.cache_clear()
    fresh = render_notes(piece, soundfont, RATE)
    render_notes(first, soundfont, RATE, tail_seconds=0.0)
    again = render_notes(piece, soundfont, RATE)
    np.testing.assert_array_equal(fresh, again)


def test_sounding_until_follows_the_pedal_and_the_next_strike():
    from mtlib.demo import sounding_until

    notes = [
        Note(0.0, 0.5, 60, 1),
        Note(1.0, 1.2, 60, 1),
        Note(0.2, 0.4, 64, 1),
        Note(0.2, 0.4, 67, 41),
    ]
    assert sounding_until(notes, [(0.6, 0.9)]) == [
        0.5,
        1.2,
        0.4,
        0.4,
    ]  # no key released under the pedal
    assert sounding_until(notes, [(0.3, 2.0)]) == [
        1.0,
        2.0,
        2.0,
        0.4,
    ]  # rings to the re-strike / pedal lift; strings ignore it


def test_the_pedal_lets_soundfont_piano_notes_ring(soundfont):
    note = [Note(0.1, 0.3, 60, 1, 90)]
    dry = render_notes(note, soundfont, RATE)
    held = render_notes(note, soundfont, RATE, pedal=[(0.0, 1.0)])
    after = slice(int(0.5 * RATE), int(0.9 * RATE))  # after the key release, before the pedal lifts
    assert np.sqrt(np.mean(held[after] ** 2)) > 4 * np.sqrt(np.mean(dry[after] ** 2))


@pytest.mark.parametrize(
    "program", sorted({p for roles in ENSEMBLES.values() for p in roles} | set(SWAP_PROGRAMS))
)
def test_rendered_onset_is_within_10ms_of_the_label(soundfont, program):
    """Each ensemble instrument, and each program a timbre swap may choose, sounds where its label
    says, at low, middle and high pitch."""
    for pitch in (50, 62, 74):
        onset = 0.4 + pitch / 1000.0  # off the 2 ms grid of the envelope
        audio = render_notes(
            [Note(onset, onset + 0.5, pitch, program, 80)], soundfont, RATE, tail_seconds=0.2
        )
        assert audio[: int(onset * RATE)].max() == 0.0  # silence before the note-on
        assert abs(energy_onset(audio, RATE) - onset) < 0.010, (program, pitch)


def test_render_keeps_every_note_of_a_sequence_on_time(soundfont):
    notes = [Note(0.25 + 1.5 * i, 0.55 + 1.5 * i, 60 + 3 * i, 1, 90) for i in range(4)]
    audio = render_notes(notes, soundfont, RATE)
    assert audio.size == round((notes[-1].offset + 1.0) * RATE)
    for note in notes:
        start = int((note.onset - 0.2) * RATE)
        window = audio[start : int((note.onset + 0.5) * RATE)]
        assert abs(start / RATE + energy_onset(window, RATE) - note.onset) < 0.010


def _score(parts):
    """A music21 score from [(part name, [(quarter offset, quarter length, midi pitch, tie)])]."""
    from music21 import note, stream, tempo, tie

    score = stream.Score()
    for name, events in parts:
        part = stream.Part()
        part.partName = name
        for offset, ql, pitch, tie_type in events:
            n = note.Note(pitch, quarterLength=ql)
            if tie_type:
                n.tie = tie.Tie(tie_type)
            part.insert(offset, n)
        score.insert(0, part)
    score.parts[0].insert(0, tempo.MetronomeMark(number=60))
    score.parts[0].insert(4, tempo.MetronomeMark(number=120))
    return score


PLAIN = DemoConfig(tempo_jitter=0.0, velocity_jitter=0, part_balance=0, timing_jitter_ms=0.0)


def test_score_to_piece_strips_ties_and_follows_tempo_changes():
    score = _score(
        [
            (
                "Violin I",
                [(0, 2, 72, "start"), (2, 1, 72, "stop"), (3, 1, 74, None), (6, 1, 76, None)],
            ),
            ("Violoncello", [(0, 4, 48, None)]),
        ]
    )
    piece = score_to_piece(score, "test/piece", "quartet", PLAIN)
    # 60 qpm for the first 4 quarters, 120 after: quarter 6 is 4 s + 2 * 0.5 s.
    assert [(n.onset, n.offset, n.pitch, n.program) for n in piece.notes] == [
        (0.0, 4.0, 48, 43),
        (0.0, 3.0, 72, 41),
        (3.0, 4.0, 74, 41),
        (5.0, 5.5, 76, 41),
    ]  # by onset, pitch
    assert [(b.start_beat, b.end_beat, b.note_value) for b in piece.beats][:2] == [
        (0.0, 4.0, "Whole"),
        (0.0, 3.0, "Dotted Half"),
    ]


def test_score_to_piece_cuts_at_max_seconds():
    score = _score([("Violin", [(q, 1, 60 + q, None) for q in range(12)])])
    piece = score_to_piece(score, "test/piece", "quartet", replace(PLAIN, max_seconds=5.25))
    assert [n.onset for n in piece.notes] == [0.0, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0]
    assert piece.notes[-1].offset == 5.25


def test_tempo_map_round_trips():
    tempo = TempoMap.from_score(_score([("Viola", [(0, 8, 60, None)])]))
    for quarters in (0.0, 1.5, 4.0, 7.25):
        assert tempo.to_quarters(tempo.to_seconds(quarters)) == pytest.approx(quarters)


def test_part_programs_from_names_or_a_drawn_ensemble():
    rng = np.random.default_rng(0)
    assert part_programs(["Violin I.", "Violin II.", "Viola", "Violoncello."], "quartet", rng) == (
        "named",
        (41, 41, 42, 43),
    )
    assert part_programs(["Piano", "Piano"], "piano", rng) == ("piano", (1, 1))
    ensemble, programs = part_programs(["Soprano", "Alto", "Tenor", "Bass"], "chorale", rng)
    assert programs == ENSEMBLES[ensemble]
    assert part_programs(["Soprano", "Piano", "Piano"], "keyboard", rng) == ("piano", (1, 1, 1))
    ensemble, programs = part_programs(
        ["Voice", "Alto", "Piano", "Violoncello"], "accompanied", rng
    )
    assert ensemble == "accompanied" and programs[2:] == (1, 43)
    assert programs[0] == programs[1] and programs[0] in (41, 69, 72)  # the voices: one solo


@pytest.mark.parametrize(
    "ql, words",
    [
        (1.0, "Quarter"),
        (0.75, "Dotted Eighth"),
        (0.25, "Sixteenth"),
        (1 / 3, "Triplet Eighth"),
        (0.125, "Thirty Second"),
    ],
)
def test_note_value_words(ql, words):
    assert note_value_words(ql) == words


@given(
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.integers(1, 200),
            st.sampled_from([60, 61]),
            st.sampled_from([1, 41]),
        ),
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_one_instrument_never_holds_a_key_twice(raw):
    """After trimming, same-program same-pitch notes never overlap and all have a length; a
    strike closer than MIN_NOTE to the previous one is merged into it, any other onset is kept."""
    from mtlib.demo import MIN_NOTE, _trim_same_key_overlaps
    from mtlib.musicnet import Beat

    rows = [
        (Note(on / 100, (on + dur) / 100, pitch, program), Beat(0.0, 1.0, "Quarter"))
        for on, dur, pitch, program in raw
    ]
    notes = [n for n, _ in _trim_same_key_overlaps(rows)]
    for key in {(n.program, n.pitch) for n in notes}:
        same = sorted((n for n in notes if (n.program, n.pitch) == key), key=lambda n: n.onset)
        assert all(a.offset <= b.onset for a, b in zip(same, same[1:]))
        assert all(n.offset > n.onset for n in same)
        merged_away = {n.onset for n, _ in rows if (n.program, n.pitch) == key} - {
            n.onset for n in same
        }
        assert all(any(0 <= t - n.onset < MIN_NOTE for n in same) for t in merged_away)
