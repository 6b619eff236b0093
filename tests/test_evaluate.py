"""mtlib.evaluate pieces that need no model: results by ensemble and by instrument."""

from __future__ import annotations

import math

import pytest

from mtlib.evaluate import group_scores
from mtlib.notes import Note
from mtlib.pipeline import TrackRef


def test_results_by_ensemble_and_instrument_known_answers(tmp_path):
    """Two tracks of one ensemble, one of another (musicnet_metadata.csv beside the folders):
    the ensemble rows are the means of their tracks' note F1 and recall; the instrument rows
    are the recall of each program's reference notes over all tracks (an estimate carries no
    instrument, so no F1)."""
    root = tmp_path / "mn"
    (root / "test_data").mkdir(parents=True)
    (root / "musicnet_metadata.csv").write_text(
        "id,composer,ensemble\n1,Bach,String Quartet\n2,Bach,String Quartet\n3,Chopin,Solo Piano\n"
    )
    tracks = [
        TrackRef(t, "test", str(root / "test_data" / f"{t}.wav"), "", 44100, "", 0, 1.0)
        for t in ("1", "2", "3")
    ]
    violin, cello, piano = 41, 43, 1
    notes = {
        # track 1: both violin notes found, the cello note missed
        "1": (
            [Note(0.0, 0.5, 60, violin), Note(1.0, 1.5, 62, violin), Note(0.0, 1.0, 48, cello)],
            [Note(0.01, 0.5, 60), Note(1.02, 1.5, 62)],
        ),
        # track 2: the cello note found
        "2": ([Note(0.0, 0.5, 50, cello)], [Note(0.0, 0.5, 50)]),
        # track 3: one of two piano notes found, one wrong estimate
        "3": (
            [Note(0.0, 0.5, 60, piano), Note(0.5, 1.0, 64, piano)],
            [Note(0.0, 0.5, 60), Note(2.0, 2.5, 70)],
        ),
    }
    rows = [
        {"track": "1", "note/f1": 0.8, "note/recall": 2 / 3, "n_ref": 3},
        {"track": "2", "note/f1": 1.0, "note/recall": 1.0, "n_ref": 1},
        {"track": "3", "note/f1": 0.5, "note/recall": 0.5, "n_ref": 2},
    ]
    got = {(g["group"], g["name"]): g for g in group_scores(tracks, rows, notes, 0.05)}
    quartet = got[("ensemble", "String Quartet")]
    assert (quartet["tracks"], quartet["notes"]) == (2, 4)
    assert quartet["note_f1"] == pytest.approx(0.9)
    assert quartet["note_recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert got[("ensemble", "Solo Piano")]["note_f1"] == pytest.approx(0.5)
    assert got[("instrument", "41 Violin")]["note_recall"] == 1.0
    assert got[("instrument", "43 Cello")]["note_recall"] == 0.5
    assert (
        got[("instrument", "43 Cello")]["tracks"],
        got[("instrument", "43 Cello")]["notes"],
    ) == (2, 2)
    assert got[("instrument", "1 Acoustic Grand Piano")]["note_recall"] == 0.5
    assert all(math.isnan(g["note_f1"]) for (kind, _), g in got.items() if kind == "instrument")
    (root / "musicnet_metadata.csv").unlink()  # no metadata: instruments only
    assert {g["group"] for g in group_scores(tracks, rows, notes, 0.05)} == {"instrument"}
