"""mtlib.plots: piano-roll PNGs are written atomically and colour notes by match outcome."""

from __future__ import annotations

import numpy as np
import pytest

from mtlib.notes import Note
from mtlib.plots import note_outcomes, piano_roll_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REF = [Note(0.5, 1.0, 60), Note(1.0, 2.0, 64), Note(1.5, 2.5, 67), Note(30.0, 31.0, 72)]
EST = [Note(0.53, 1.0, 60), Note(1.0, 2.0, 64), Note(3.0, 3.5, 70)]


def read_png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_note_outcomes_mark_matched_missed_and_false():
    ref_matched, est_matched = note_outcomes(REF, EST)
    assert ref_matched.tolist() == [True, True, False, False]
    assert est_matched.tolist() == [True, True, False]


def test_piano_roll_png_is_a_valid_png(tmp_path):
    path = tmp_path / "rolls" / "track.png"
    piano_roll_png(path, REF, EST, "track 3", seconds=20.0)
    width, height = read_png_size(path)
    assert width > 100 and height > 100
    assert [p.name for p in path.parent.iterdir()] == ["track.png"]  # no temporary left behind


@pytest.mark.parametrize("ref, est", [(REF, []), ([], EST), ([], [])])
def test_piano_roll_png_with_an_empty_side(tmp_path, ref, est):
    path = tmp_path / "empty.png"
    piano_roll_png(path, ref, est, "empty")
    assert read_png_size(path)[0] > 0


def test_piano_roll_draws_the_notes(tmp_path):
    import matplotlib.image

    path = tmp_path / "drawn.png"
    piano_roll_png(path, REF[:3], EST[:2], "drawn")
    pixels = matplotlib.image.imread(path)[..., :3]  # (H, W, 3) floats in [0, 1]
    green = np.array([0x2B, 0x8A, 0x3E]) / 255  # matched predictions
    assert (np.abs(pixels - green).max(axis=-1) < 0.02).sum() > 500
