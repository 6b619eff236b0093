"""`mt transcribe` helpers that need no model: finding inputs and choosing the decoding config."""
from __future__ import annotations

import json

import pytest

from mtlib.decode import DecodeConfig
from mtlib.transcribe import default_decode_config, find_audio


def test_find_audio_walks_folders_keeps_layout_and_names_problems(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    for f in ("in/x.wav", "in/a/x.flac", "in/a/y.OGG", "in/readme.txt", "solo.wav"):
        (tmp_path / f).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    inputs, problems = find_audio([tmp_path / "in", tmp_path / "solo.wav", tmp_path / "gone.wav", tmp_path / "empty"])
    assert [(f.relative_to(tmp_path).as_posix(), s.as_posix()) for f, s in inputs] == [
        ("in/a/x.flac", "a/x"), ("in/a/y.OGG", "a/y"), ("in/x.wav", "x"), ("solo.wav", "solo")]
    assert [(p.name, why.split(" (")[0]) for p, why in problems] == [
        ("gone.wav", "no such file or folder"), ("empty", "no audio files")]


def test_find_audio_refuses_two_inputs_with_one_output_name(tmp_path):
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "take.wav").write_bytes(b"")
    inputs, problems = find_audio([tmp_path / "one" / "take.wav", tmp_path / "two" / "take.wav"])
    assert [f.parent.name for f, _ in inputs] == ["one"]
    assert len(problems) == 1 and "would overwrite" in problems[0][1] and problems[0][0].parent.name == "two"


def test_decode_config_prefers_the_sweep_then_params_then_defaults(tmp_path):
    sweep, params = tmp_path / "sweep", tmp_path / "params.yaml"
    assert default_decode_config("ctc", sweep, params) == (DecodeConfig(), "built-in defaults")
    params.write_text("decode:\n  ctc_shift_frames: -1\n")
    cfg, source = default_decode_config("ctc", sweep, params)
    assert cfg.ctc_shift_frames == -1 and "params.yaml" in source
    sweep.mkdir()
    (sweep / "best_ctc.json").write_text(json.dumps({"decode": {"ctc_shift_frames": -2, "ctc_decoder": "beam"}}))
    cfg, source = default_decode_config("ctc", sweep, params)
    assert (cfg.ctc_shift_frames, cfg.ctc_decoder) == (-2, "beam") and source.endswith("best_ctc.json")
    params.write_text("decode:\n  no_such_key: 1\n")
    with pytest.raises(Exception, match="no_such_key"):
        default_decode_config("seq2seq", sweep, params)
