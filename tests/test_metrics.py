"""mtlib.metrics (known answers on notes built here) and the `mt score` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlib.metrics import (
    _roll,
    edit_distance,
    f1_at_tolerances,
    frame_metrics,
    label_file_rate,
    mean_metrics,
    note_metrics,
    onset_error_summary,
    onset_errors,
    onset_f1_frames,
    onset_prf_frames,
    pair_label_files,
    ter,
    token_f1,
)
from mtlib.notes import Note

REF = [Note(0.5, 1.0, 60), Note(1.0, 2.0, 64), Note(1.5, 2.5, 67), Note(3.0, 4.0, 72)]


def shifted(notes, index, seconds):
    """`notes` with note `index` moved later by `seconds` (onset and offset)."""
    n = notes[index]
    return [
        *notes[:index],
        Note(n.onset + seconds, n.offset + seconds, n.pitch),
        *notes[index + 1 :],
    ]


# --- note level ---------------------------------------------------------------------------


def test_identical_notes_score_one():
    scores = note_metrics(REF, REF)
    assert set(scores) == {
        f"{k}/{m}" for k in ("note", "note_offset", "frame") for m in ("precision", "recall", "f1")
    }
    assert all(v == pytest.approx(1.0) for v in scores.values())


def test_30ms_shift_matches_at_50ms_not_at_25ms():
    est = shifted(REF, 1, 0.03)
    assert note_metrics(REF, est)["note/f1"] == pytest.approx(1.0)
    f1s = f1_at_tolerances(REF, est)
    assert set(f1s) == {"note/f1@25ms", "note/f1@50ms", "note/f1@100ms", "note/f1@200ms"}
    assert f1s["note/f1@25ms"] == pytest.approx(0.75)  # 3 of 4 matched on both sides
    assert f1s["note/f1@50ms"] == f1s["note/f1@200ms"] == pytest.approx(1.0)


def test_extra_note_lowers_precision_only():
    scores = note_metrics(REF, [*REF, Note(5.0, 5.5, 80)])
    assert scores["note/precision"] == pytest.approx(4 / 5)
    assert scores["note/recall"] == pytest.approx(1.0)
    assert scores["note/f1"] == pytest.approx(2 * 0.8 / 1.8)


def test_offset_ratio_is_a_fraction_of_reference_duration():
    ref = [Note(1.0, 2.0, 60)]  # 1 s long: offset tolerance max(0.2 * 1 s, 50 ms) = 200 ms
    near, far = [Note(1.0, 2.15, 60)], [Note(1.0, 2.3, 60)]
    assert note_metrics(ref, near)["note_offset/f1"] == pytest.approx(1.0)
    assert note_metrics(ref, far)["note_offset/f1"] == 0.0
    assert note_metrics(ref, far)["note/f1"] == pytest.approx(1.0)  # onset-only still matches


def test_wrong_pitch_does_not_match():
    assert note_metrics([Note(1.0, 2.0, 60)], [Note(1.0, 2.0, 61)])["note/f1"] == 0.0


def test_empty_sides_follow_the_convention_without_warnings(recwarn):
    assert all(v == 1.0 for v in note_metrics([], []).values())
    assert all(v == 0.0 for v in note_metrics(REF, []).values())
    assert all(v == 0.0 for v in note_metrics([], REF).values())
    assert not [w for w in recwarn if "mir_eval" in str(w.filename)]


def test_zero_length_estimate_is_scored_not_rejected():
    assert note_metrics([Note(1.0, 2.0, 60)], [Note(1.0, 1.0, 60)])["note/f1"] == pytest.approx(1.0)


def test_frame_metrics_count_10ms_frames():
    ref = [Note(0.0, 1.0, 60)]  # 100 frames
    est = [Note(0.0, 1.0, 60), Note(2.0, 2.5, 70)]  # + 50 false frames
    scores = frame_metrics(ref, est)
    assert scores["frame/recall"] == pytest.approx(1.0)
    assert scores["frame/precision"] == pytest.approx(100 / 150)
    late = frame_metrics(ref, [Note(0.1, 1.0, 60)])  # 10 frames missed
    assert late["frame/precision"] == pytest.approx(1.0)
    assert late["frame/recall"] == pytest.approx(0.9)


# --- onset errors ---------------------------------------------------------------------------


def test_onset_errors_recover_a_known_latency():
    est = [Note(n.onset + 0.057, n.offset + 0.057, n.pitch) for n in REF]
    errors = onset_errors(REF, est)
    np.testing.assert_allclose(errors, 0.057, atol=1e-9)
    summary = onset_error_summary(errors)
    assert summary["count"] == 4
    for key in ("median", "p10", "p90", "mean"):
        assert summary[key] == pytest.approx(0.057)


def test_onset_errors_are_signed_and_skip_unmatched():
    est = [
        Note(0.48, 1.0, 60),
        Note(1.1, 2.0, 64),
        Note(1.5, 2.5, 66),
    ]  # -20 ms, +100 ms, wrong pitch
    np.testing.assert_allclose(onset_errors(REF, est), [-0.02, 0.1], atol=1e-9)
    assert onset_errors(REF, est, tolerance=0.05).tolist() == pytest.approx([-0.02])


def test_onset_error_summary_of_nothing():
    summary = onset_error_summary(onset_errors(REF, []))
    assert summary["count"] == 0 and math.isnan(summary["median"])


# --- token level ----------------------------------------------------------------------------


def test_ter_known_answers():
    assert ter([5, 6, 7, 8], [5, 6, 7, 8]) == 0.0
    assert ter([5, 6, 7, 8], [5, 9, 7, 8]) == pytest.approx(1 / 4)  # one substitution
    assert ter([5, 6, 7, 8], [5, 7, 8]) == pytest.approx(1 / 4)  # one deletion
    assert ter([5, 6], [5, 6, 1, 2, 3]) == pytest.approx(3 / 2)  # insertions can exceed 1
    assert ter([5, 6, 2], [5, 6, 0, 0], ignore=(0, 2)) == 0.0  # PAD/EOS ignored
    assert ter([], []) == 0.0 and ter([], [4, 4]) == 2.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12), st.lists(st.integers(0, 5), max_size=12))
def test_edit_distance_agrees_with_torchaudio(ref, hyp):
    import torchaudio.functional as F

    assert edit_distance(ref, hyp) == F.edit_distance(ref, hyp)


def test_token_f1_is_order_free_multiset_f1():
    assert token_f1([1, 2, 3], [3, 2, 1]) == 1.0
    assert token_f1([5, 5, 6], [5, 6, 6]) == pytest.approx(2 / 3)  # 2 of 3 match on each side
    assert token_f1([5, 6], [5, 6, 7, 8]) == pytest.approx(2 * 2 / 6)
    assert token_f1([], []) == 1.0 and token_f1([5], []) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 120), st.integers(55, 65)), max_size=12),
    st.lists(st.tuples(st.integers(0, 300), st.integers(1, 120), st.integers(55, 65)), max_size=12),
)
def test_frame_metrics_equal_mir_eval_multipitch(ref_cells, est_cells):
    """The piano-roll count gives mir_eval.multipitch.metrics' precision and recall exactly, on
    notes of neighbouring pitches that overlap in time (times in ms, off the 10 ms grid)."""
    import mir_eval

    def notes(cells):
        return [Note(on / 1000 + 0.0013, (on + dur) / 1000 + 0.0013, p) for on, dur, p in cells]

    ref, est = notes(ref_cells), notes(est_cells)
    ours = frame_metrics(ref, est)
    end = max([n.offset for n in (*ref, *est)], default=0.0)
    times = np.arange(int(math.ceil(end / 0.01)) + 1) * 0.01
    hz = mir_eval.util.midi_to_hz(np.arange(128, dtype=float))

    def freqs(ns):  # the same 10 ms roll, as mir_eval's ragged per-frame Hz lists
        return [hz[np.flatnonzero(frame)] for frame in _roll(ns, len(times), 0.01)]

    ref_freqs, est_freqs = freqs(ref), freqs(est)
    n_ref, n_est = sum(map(len, ref_freqs)), sum(map(len, est_freqs))
    if n_ref and n_est:
        p, r = mir_eval.multipitch.metrics(times, ref_freqs, times, est_freqs)[:2]
        assert (ours["frame/precision"], ours["frame/recall"]) == (p, r)
    else:  # an empty side: the module's convention, 1 when both are empty
        assert ours["frame/f1"] == (1.0 if n_ref == n_est == 0 else 0.0)


def test_onset_f1_frames_tolerance_and_one_to_one():
    ref = [(10, 60), (10, 64), (30, 60)]
    est = [(12, 60), (13, 64), (30, 61)]
    assert onset_prf_frames(ref, est, 2) == pytest.approx((1 / 3, 1 / 3, 1 / 3))  # only (12, 60)
    assert onset_f1_frames(ref, est, 3) == pytest.approx(2 / 3)  # (13, 64) joins at ±3
    # two estimates near one reference: only one may match it
    assert onset_prf_frames([(10, 60)], [(10, 60), (11, 60)], 2) == pytest.approx((0.5, 1.0, 2 / 3))
    assert onset_f1_frames([], [], 2) == 1.0 and onset_f1_frames(ref, [], 2) == 0.0


def test_mean_metrics_averages_tracks_and_skips_nan():
    mean = mean_metrics(
        [{"note/f1": 1.0, "lag": math.nan}, {"note/f1": 0.5, "lag": 0.1}, {"note/f1": 0.0}]
    )
    assert mean == {"note/f1": pytest.approx(0.5), "lag": pytest.approx(0.1)}


# --- label files and `mt score` --------------------------------------------------------------


def test_label_file_rate_reads_the_wav_in_musicnet_layout(tmp_path):
    from conftest import write_musicnet_track

    _, csv = write_musicnet_track(tmp_path, "test", "7", REF, rate=22050, seconds=4.5)
    assert label_file_rate(csv, 44100)[0] == 22050
    loose = tmp_path / "loose.csv"
    loose.write_text(csv.read_text())
    assert label_file_rate(loose, 44100) == (44100, "the default rate")


def test_pair_label_files_names_what_is_missing(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("1.csv", "2.csv"):
        (tmp_path / "ref" / name).write_text("x")
    (tmp_path / "pred" / "1.csv").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"pred: no prediction for 2\.csv"):
        pair_label_files(tmp_path / "ref", tmp_path / "pred")
    with pytest.raises(FileNotFoundError, match=r"nothing\.csv: no such file"):
        pair_label_files(tmp_path / "ref" / "1.csv", tmp_path / "nothing.csv")
    with pytest.raises(ValueError, match="two CSV files or two folders"):
        pair_label_files(tmp_path / "ref", tmp_path / "pred" / "1.csv")


@pytest.fixture
def score_cli():
    import typer
    from typer.testing import CliRunner

    from stages.score import main

    app = typer.Typer()
    app.command()(main)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def test_score_identical_folders_give_one(tmp_path, score_cli):
    from conftest import write_musicnet_track

    from mtlib.musicnet import write_labels

    # references in the MusicNet layout at 22.05 kHz; predictions written at that rate: matching
    # them needs the WAV's rate for the reference and --rate for the loose predictions
    pred_dir = tmp_path / "pred"
    for tid in ("1", "2"):
        _, csv = write_musicnet_track(tmp_path / "mn", "test", tid, REF, rate=22050, seconds=4.5)
        write_labels(pred_dir / csv.name, REF, 22050)
    out = tmp_path / "scores.json"
    result = score_cli(tmp_path / "mn" / "test_labels", pred_dir, "--rate", 22050, "--json", out)
    assert result.exit_code == 0, result.output
    assert "note + offset" in result.output and "mean" in result.output
    saved = json.loads(out.read_text())
    assert set(saved["files"]) == {"1", "2"}
    assert all(v == pytest.approx(1.0) for v in saved["mean"].values())
    # at the wrong rate the loose predictions are twice as late: nothing matches
    wrong = score_cli(tmp_path / "mn" / "test_labels", pred_dir, "--json", out)
    assert wrong.exit_code == 0 and json.loads(out.read_text())["mean"]["note/f1"] == 0.0


def test_score_missing_file_is_a_clear_error(tmp_path, score_cli):
    from mtlib.musicnet import write_labels

    write_labels(tmp_path / "ref.csv", REF, 44100)
    result = score_cli(tmp_path / "ref.csv", tmp_path / "pred.csv")
    assert result.exit_code == 1
    assert "pred.csv: no such file or folder" in result.output


def test_score_malformed_csv_names_file_and_column(tmp_path, score_cli):
    from mtlib.musicnet import write_labels

    write_labels(tmp_path / "ref.csv", REF, 44100)
    (tmp_path / "pred.csv").write_text("start_time,end_time,note\n1,2,60\n")
    result = score_cli(tmp_path / "ref.csv", tmp_path / "pred.csv")
    assert result.exit_code == 1
    assert "pred.csv: missing column 'instrument'" in result.output


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--rate", 0, "--rate 0: must be > 0"),
        ("--rate", -44100, "--rate -44100: must be > 0"),
        ("--onset-tolerance", -0.05, "--onset-tolerance -0.05: must be > 0"),
        ("--onset-tolerance", "nan", "--onset-tolerance nan: must be > 0"),
        ("--offset-ratio", -1, "--offset-ratio -1.0: must be >= 0"),
    ],
)
def test_score_rejects_impossible_options_before_reading(
    tmp_path, score_cli, option, value, message
):
    """A rate or tolerance that cannot be right is an error naming the option (exit 2), where it
    used to score F1 0 with exit 0; no JSON is written."""
    from mtlib.musicnet import write_labels

    write_labels(tmp_path / "ref.csv", REF, 44100)
    write_labels(tmp_path / "pred.csv", REF, 44100)
    out = tmp_path / "scores.json"
    result = score_cli(tmp_path / "ref.csv", tmp_path / "pred.csv", option, value, "--json", out)
    assert result.exit_code == 2 and message in result.output
    assert not out.exists()


def test_score_names_the_file_with_an_impossible_time(tmp_path, score_cli):
    from mtlib.musicnet import write_labels

    write_labels(tmp_path / "ref.csv", REF, 44100)
    (tmp_path / "pred.csv").write_text(
        "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n-441,4410,1,60,0,1,Q\n"
    )
    result = score_cli(tmp_path / "ref.csv", tmp_path / "pred.csv")
    assert result.exit_code == 1
    assert "pred.csv: line 2: column 'start_time' = -441 is negative" in result.output


def test_score_json_into_a_folder_is_an_error_before_scoring(tmp_path, score_cli):
    from mtlib.musicnet import write_labels

    write_labels(tmp_path / "ref.csv", REF, 44100)
    write_labels(tmp_path / "pred.csv", REF, 44100)
    (tmp_path / "out").mkdir()
    result = score_cli(tmp_path / "ref.csv", tmp_path / "pred.csv", "--json", tmp_path / "out")
    assert result.exit_code == 2 and "out: is a folder" in result.output
    assert "note + offset" not in result.output and not any((tmp_path / "out").iterdir())


def test_score_one_bad_file_in_a_folder_does_not_stop_the_others(tmp_path, score_cli):
    """Good pairs are scored and printed, the bad one is named at the end, exit 1."""
    from mtlib.musicnet import write_labels

    for d in ("ref", "pred"):
        for tid in ("1", "2"):
            write_labels(tmp_path / d / f"{tid}.csv", REF, 44100)
    (tmp_path / "pred" / "2.csv").write_text("start_time,end_time,note\n1,2,60\n")
    out = tmp_path / "scores.json"
    result = score_cli(tmp_path / "ref", tmp_path / "pred", "--json", out)
    assert result.exit_code == 1
    assert "1 of 2 file pairs not scored" in result.output
    assert "2.csv: missing column 'instrument'" in result.output
    saved = json.loads(out.read_text())
    assert set(saved["files"]) == {"1"} and saved["mean"]["note/f1"] == pytest.approx(1.0)


def test_score_reads_each_csv_at_its_own_rate(tmp_path, score_cli):
    """A transcription of a 48 kHz file holds sample indices at 48 kHz; `mt transcribe` records
    that in `<name>.json` beside it and `mt score` reads it from there (it used to read both
    sides at 44.1 kHz and score F1 0). --ref-rate / --est-rate override every source."""
    from types import SimpleNamespace

    from mtlib.decode import DecodeConfig
    from mtlib.io import write_json
    from mtlib.musicnet import write_labels
    from mtlib.transcriber import transcription_record

    write_labels(tmp_path / "ref.csv", REF, 44100)
    pred = tmp_path / "out" / "take.csv"
    write_labels(pred, REF, 48000)
    assert label_file_rate(pred, 44100) == (44100, "the default rate")  # nothing says otherwise
    wrong = score_cli(tmp_path / "ref.csv", pred, "--json", tmp_path / "s.json")
    assert wrong.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["mean"][
        "note/f1"
    ] == pytest.approx(0.25)  # read 8.8% late: only the note at 0.5 s is within 50 ms
    made_by = SimpleNamespace(
        kind="ctc", checkpoint="m.pt", decoding_source="m.decode.json", decoding=DecodeConfig()
    )
    write_json(
        pred.with_suffix(".json"), transcription_record(made_by, "take.wav", pred, 48000, REF)
    )
    assert label_file_rate(pred, 44100) == (48000, str(pred.with_suffix(".json")))
    right = score_cli(tmp_path / "ref.csv", pred, "--json", tmp_path / "s.json")
    assert right.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["mean"][
        "note/f1"
    ] == pytest.approx(1.0)
    forced = score_cli(
        tmp_path / "ref.csv", pred, "--est-rate", 44100, "--json", tmp_path / "s.json"
    )
    assert json.loads((tmp_path / "s.json").read_text())["mean"]["note/f1"] == pytest.approx(0.25)
    assert forced.exit_code == 0
    write_labels(tmp_path / "ref48.csv", REF, 48000)
    both = score_cli(
        tmp_path / "ref48.csv", pred, "--ref-rate", 48000, "--json", tmp_path / "s.json"
    )
    assert both.exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text())["mean"]["note/f1"] == pytest.approx(1.0)
    # a JSON file of someone else's beside a CSV is not a rate
    pred.with_suffix(".json").write_text('{"csv_sample_rate": 8000}')
    assert label_file_rate(pred, 44100)[0] == 44100
    bad = score_cli(tmp_path / "ref.csv", pred, "--est-rate", 0)
    assert bad.exit_code == 2 and "--est-rate 0: must be > 0" in bad.output
