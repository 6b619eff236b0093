"""`mt transcribe` helpers that need no model: finding inputs and choosing the decoding config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlib.decode import DecodeConfig
from mtlib.transcribe_files import find_audio


def test_find_audio_walks_folders_keeps_layout_and_names_problems(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    for f in ("in/x.wav", "in/a/x.flac", "in/a/y.OGG", "in/readme.txt", "solo.wav"):
        (tmp_path / f).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    inputs, problems = find_audio(
        [tmp_path / "in", tmp_path / "solo.wav", tmp_path / "gone.wav", tmp_path / "empty"]
    )
    assert [(f.relative_to(tmp_path).as_posix(), s.as_posix()) for f, s in inputs] == [
        ("in/a/x.flac", "a/x"),
        ("in/a/y.OGG", "a/y"),
        ("in/x.wav", "x"),
        ("solo.wav", "solo"),
    ]
    assert [(p.name, why.split(" (")[0]) for p, why in problems] == [
        ("gone.wav", "no such file or folder"),
        ("empty", "no audio files"),
    ]


def test_find_audio_refuses_two_inputs_with_one_output_name(tmp_path):
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "take.wav").write_bytes(b"")
    inputs, problems = find_audio([tmp_path / "one" / "take.wav", tmp_path / "two" / "take.wav"])
    assert [f.parent.name for f, _ in inputs] == ["one"]
    assert (
        len(problems) == 1
        and "would overwrite" in problems[0][1]
        and problems[0][0].parent.name == "two"
    )


def test_find_audio_knows_the_other_names_of_aiff_and_ogg(tmp_path):
    """A folder of .aif files is audio (it used to be "no audio files (.aiff, ...)")."""
    for name in ("a.aif", "b.AIFC", "c.opus", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    inputs, problems = find_audio([tmp_path])
    assert [f.name for f, _ in inputs] == ["a.aif", "b.AIFC", "c.opus"] and problems == []


def test_find_audio_takes_a_file_given_twice_once(tmp_path):
    """The same file twice (or a file and its folder) is one input and no error; it used to be
    transcribed twice after an "overwrite" error."""
    (tmp_path / "take.wav").write_bytes(b"")
    for args in (["take.wav", "take.wav"], ["take.wav", "./take.wav"]):
        inputs, problems = find_audio([tmp_path / a for a in args])
        assert inputs == [(tmp_path / "take.wav", Path("take"))] and problems == []


def test_a_checkpoint_carries_its_decoding_from_any_working_directory(tmp_path, monkeypatch):
    """decode_sweep's choice beside the checkpoint, tied by SHA-256; else the decoding it was
    validated with (a warning); else the defaults (a warning). Never the working directory's files."""
    import torch

    from mtlib.transcriber import decoding_for, decoding_path, write_decoding

    ckpt = tmp_path / "models" / "ctc.pt"
    ckpt.parent.mkdir()
    torch.save({"extra": {}}, ckpt)
    monkeypatch.chdir(tmp_path)  # a data/sweep here must not be read
    (tmp_path / "data" / "sweep").mkdir(parents=True)
    (tmp_path / "data" / "sweep" / "best_ctc.json").write_text(
        json.dumps({"decode": {"ctc_shift_frames": -9}})
    )
    cfg, source, warning = decoding_for(ckpt)
    assert cfg == DecodeConfig() and source == "built-in defaults" and "ctc.decode.json" in warning

    torch.save({"extra": {"decode": {"ctc_onset_window": 3}}}, ckpt)
    cfg, source, warning = decoding_for(ckpt)
    assert (
        cfg.ctc_onset_window == 3 and "validation decoding" in source and "decode_sweep" in warning
    )

    chosen = DecodeConfig(ctc_shift_frames=-2, ctc_decoder="beam", frame_threshold=0.4)
    path = write_decoding(ckpt, chosen, {"val/note_f1": 0.5})
    assert path == decoding_path(ckpt) == tmp_path / "models" / "ctc.decode.json"
    assert json.loads(path.read_text())["val/note_f1"] == 0.5
    assert decoding_for(ckpt) == (chosen, str(path), None)

    torch.save(
        {"extra": {"decode": {"ctc_onset_window": 3}}, "other": 1}, ckpt
    )  # retrained: another file
    cfg, source, warning = decoding_for(ckpt)
    assert cfg.ctc_onset_window == 3 and "belongs to another checkpoint" in warning


def test_a_bad_decoding_file_names_the_key(tmp_path):
    import torch

    from mtlib.train import file_digest
    from mtlib.transcriber import decoding_for

    ckpt = tmp_path / "seq2seq.pt"
    torch.save({"extra": {}}, ckpt)
    (tmp_path / "seq2seq.decode.json").write_text(
        json.dumps({"decode": {"no_such_key": 1}, "checkpoint_sha256": file_digest(ckpt)})
    )
    with pytest.raises(Exception, match="no_such_key"):
        decoding_for(ckpt)


def tiny_checkpoint(path, seed: int = 0):
    """An untrained CTC model that emits notes (random output biases per emission slot) in a
    checkpoint with the feature settings, segment length and vocabulary the train stages record."""
    import torch

    from mtlib.features import FeatureConfig
    from mtlib.models import build_model, save_checkpoint
    from mtlib.vocab import Vocabulary

    fcfg, vocab = FeatureConfig(), Vocabulary(max_shift=16, min_pitch=48, max_pitch=71)
    torch.manual_seed(seed)
    model = build_model(
        "ctc",
        {
            "encoder": {"cnn_channels": [4, 4], "lstm_hidden": 8, "lstm_layers": 1, "proj_dim": 8},
            "ctc": {"upsample": 2},
            "n_mels": fcfg.n_bins,
            "n_pitches": vocab.n_pitches,
        },
        vocab,
    )
    torch.nn.init.normal_(model.head.bias, 0.0, 3.0)
    save_checkpoint(
        path,
        model,
        {"kind": "ctc", "features": fcfg.describe(), "seg_frames": 64, "vocab": vocab.config()},
    )
    return path


def test_the_python_api_transcribes_a_path_or_an_array_to_notes_midi_and_head_probabilities(
    tmp_path,
):
    """`mtlib.transcriber` and `Transcriber`: nothing written, the same notes from a file and from
    its samples, MIDI holding those notes, per-frame onset probabilities, clear errors."""
    import numpy as np
    import soundfile as sf

    import mtlib

    ckpt = tiny_checkpoint(tmp_path / "ctc.pt")
    rate = 16000
    t = np.arange(3 * rate) / rate
    audio = (
        0.2 * np.sin(2 * np.pi * 220 * t) * (t < 1.5) + 0.2 * np.sin(2 * np.pi * 330 * t) * (t >= 1)
    ).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, rate, subtype="FLOAT")
    with pytest.warns(
        UserWarning, match=r"ctc\.decode\.json"
    ):  # no decode_sweep result belongs to it
        transcriber = mtlib.Transcriber.load(ckpt, device="cpu")
    assert transcriber.kind == "ctc" and transcriber.decoding_source == "built-in defaults"
    before = sorted(p.name for p in tmp_path.iterdir())
    from_file = mtlib.transcribe(tmp_path / "a.wav", model=transcriber)
    from_array = transcriber(
        np.stack([audio, audio], axis=1), sample_rate=rate
    )  # stereo: channels averaged
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert (
        isinstance(from_file, mtlib.Transcription) and from_file.notes
    )  # the untrained model emits notes
    assert from_file.notes == from_array.notes
    T = 3 * rate // 512 + 1
    assert (
        from_file.head_probs["onset"].shape == (T, 24) and 0 <= from_file.head_probs["onset"].min()
    )
    midi = from_file.midi()
    got = sorted(
        (n.pitch, round(n.start, 3), round(n.end, 3)) for i in midi.instruments for n in i.notes
    )
    assert got == sorted((n.pitch, round(n.onset, 3), round(n.offset, 3)) for n in from_file.notes)
    with pytest.warns(UserWarning, match="silent"):
        assert transcriber(np.zeros(rate, np.float32), sample_rate=rate).notes == []
    with pytest.raises(ValueError, match="sample_rate"):
        transcriber(audio)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        transcriber(np.zeros((2, 3, 4)), sample_rate=rate)
    beam = transcriber.with_decoder("beam")
    assert beam.decoding.ctc_decoder == "beam" and transcriber.decoding.ctc_decoder == "greedy"
    with pytest.raises(
        ValueError, match="constrained is not a ctc decoder; ctc takes greedy or beam"
    ):
        transcriber.with_decoder("constrained")


def test_a_cut_off_file_is_an_error_and_nan_samples_are_zeroed_with_a_warning(tmp_path):
    """A WAV whose data stops before its header says is refused, naming the file (it used to be
    transcribed as its first half); NaN/Inf samples are set to 0 and counted, so the rest of the
    file keeps its notes (one NaN used to blank every note of its segment)."""
    import numpy as np
    import soundfile as sf

    from mtlib.errors import AudioError
    from mtlib.features import FeatureConfig, stream_track_features
    from mtlib.transcriber import Transcriber

    rate = 16000
    t = np.arange(2 * rate) / rate
    audio = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "whole.wav", audio, rate, subtype="FLOAT")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # the header still says 2 s
    transcriber = Transcriber.load(
        tiny_checkpoint(tmp_path / "ctc.pt"), device="cpu", decoding=DecodeConfig()
    )
    with pytest.raises(AudioError, match=r"cut\.wav.*truncated.*32000 samples"):
        transcriber(tmp_path / "cut.wav")
    from mtlib.audio import load_audio

    with pytest.raises(AudioError, match=r"cut\.wav.*truncated"):
        load_audio(tmp_path / "cut.wav")

    holed = audio.copy()
    holed[8000:8368] = np.nan  # 23 ms of NaN
    holed[9000] = np.inf
    sf.write(tmp_path / "nan.wav", holed, rate, subtype="FLOAT")
    zeroed = audio.copy()
    zeroed[8000:8368] = 0
    zeroed[9000] = 0
    sf.write(tmp_path / "zeroed.wav", zeroed, rate, subtype="FLOAT")
    cfg = FeatureConfig()
    with pytest.warns(UserWarning, match=r"nan\.wav: 369 NaN/Inf sample\(s\) set to 0"):
        feats, _ = stream_track_features(tmp_path / "nan.wav", cfg)
    assert np.isfinite(feats).all()
    np.testing.assert_array_equal(feats, stream_track_features(tmp_path / "zeroed.wav", cfg)[0])
    with pytest.warns(UserWarning, match="369 NaN/Inf"):
        assert np.isfinite(load_audio(tmp_path / "nan.wav")[0]).all()
