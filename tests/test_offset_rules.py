"""benchmarks/offset_rules.py: how switching an offset rule off moves each found note, on
outcomes and decodings built here."""

from __future__ import annotations

from benchmarks.offset_rules import effects, switched
from mtlib.decode import DecodeConfig


def test_effects_count_the_notes_a_switch_fixes_and_breaks():
    base = {"a": "early", "b": "late", "c": "ok", "d": "ok", "e": "early", "f": "early"}
    other = {"a": "ok", "b": "ok", "c": "late", "d": "early", "e": "late", "g": "ok"}
    # e goes from early to late: neither fixed nor broken; f is not found in `other`, g not in `base`
    assert effects(base, other) == {
        "early fixed": 1,
        "late fixed": 1,
        "ok -> late": 1,
        "ok -> early": 1,
    }
    assert effects(base, base) == {}


def test_a_switch_that_changes_nothing_is_skipped_and_the_threshold_is_a_factor():
    cfg = DecodeConfig(frame_threshold=0.2, legato_semitones=2, offset_threshold=0.0)
    assert switched(cfg, {"offset_threshold": 0.0}) is None  # already off
    assert switched(cfg, {"legato_semitones": 0}).legato_semitones == 0
    halved = switched(cfg, {"frame_threshold": 0.5})
    assert halved.frame_threshold == 0.1 and halved.legato_semitones == 2
    both = switched(cfg, {"legato_semitones": 0, "offset_threshold": 0.0})
    assert (both.legato_semitones, both.offset_threshold) == (0, 0.0)
