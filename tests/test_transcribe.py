"""`mt transcribe` helpers that need no model: finding inputs and choosing the decoding config."""
from __future__ import annotations

import json

import pytest

from mtlib.decode import DecodeConfig
from mtlib.transcribe import find_audio


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


def test_a_checkpoint_carries_its_decoding_from_any_working_directory(tmp_path, monkeypatch):
    """decode_sweep's choice beside the checkpoint, tied by SHA-256; else the decoding it was
    validated with (a warning); else the defaults (a warning). Never the working directory's files."""
    import torch

    from mtlib.transcribe import decoding_for, decoding_path, write_decoding

    ckpt = tmp_path / "models" / "ctc.pt"
    ckpt.parent.mkdir()
    torch.save({"extra": {}}, ckpt)
    monkeypatch.chdir(tmp_path)  # a data/sweep here must not be read
    (tmp_path / "data" / "sweep").mkdir(parents=True)
    (tmp_path / "data" / "sweep" / "best_ctc.json").write_text(json.dumps({"decode": {"ctc_shift_frames": -9}}))
    cfg, source, warning = decoding_for(ckpt)
    assert cfg == DecodeConfig() and source == "built-in defaults" and "ctc.decode.json" in warning

    torch.save({"extra": {"decode": {"ctc_onset_window": 3}}}, ckpt)
    cfg, source, warning = decoding_for(ckpt)
    assert cfg.ctc_onset_window == 3 and "validation decoding" in source and "decode_sweep" in warning

    chosen = DecodeConfig(ctc_shift_frames=-2, ctc_decoder="beam", frame_threshold=0.4)
    path = write_decoding(ckpt, chosen, {"val/note_f1": 0.5})
    assert path == decoding_path(ckpt) == tmp_path / "models" / "ctc.decode.json"
    assert json.loads(path.read_text())["val/note_f1"] == 0.5
    assert decoding_for(ckpt) == (chosen, str(path), None)

    torch.save({"extra": {"decode": {"ctc_onset_window": 3}}, "other": 1}, ckpt)  # retrained: another file
    cfg, source, warning = decoding_for(ckpt)
    assert cfg.ctc_onset_window == 3 and "belongs to another checkpoint" in warning


def test_a_bad_decoding_file_names_the_key(tmp_path):
    import torch

    from mtlib.train import file_digest
    from mtlib.transcribe import decoding_for

    ckpt = tmp_path / "seq2seq.pt"
    torch.save({"extra": {}}, ckpt)
    (tmp_path / "seq2seq.decode.json").write_text(json.dumps({"decode": {"no_such_key": 1}, "checkpoint_sha256": file_digest(ckpt)}))
    with pytest.raises(Exception, match="no_such_key"):
        decoding_for(ckpt)
