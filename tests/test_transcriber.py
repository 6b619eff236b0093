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


@pytest.mark.parametrize("n_frames", [1, 10, 124, 125, 126, 300])
@pytest.mark.parametrize("offset", [0, 2, 62])
def test_segments_at_any_offset_cover_the_track_once_in_order(n_frames, offset):
    import numpy as np

    from mtlib.transcriber import segment_batches

    features = np.arange(n_frames * 3, dtype=np.float32).reshape(n_frames, 3)
    covered = []
    for starts, lengths, batch in segment_batches(features, 125, 2, offset):
        for j, (s, n) in enumerate(zip(starts, lengths)):
            assert 1 <= n <= 125
            assert np.array_equal(batch["features"][j, :n].numpy(), features[s : s + n])
            assert not batch["features"][j, n:].any()  # zero padding past the segment
            covered += range(s, s + n)
    assert covered == list(range(n_frames))
    if 0 < offset < n_frames:  # the first segment ends where the offset windowing begins
        first = next(segment_batches(features, 125, 2, offset))
        assert first[0][:2] == [0, offset][: len(first[0])] and first[1][0] == offset


def test_edge_weights_are_each_frames_distance_to_its_windows_nearer_edge():
    import numpy as np

    from mtlib.transcriber import edge_weights

    # windows [0, 2), [2, 6), [6, 10)
    assert edge_weights(10, 4, 2).tolist() == [0.5, 0.5, 0.5, 1.5, 1.5, 0.5, 0.5, 1.5, 1.5, 0.5]
    # windows [0, 4), [4, 8), [8, 10)
    assert edge_weights(10, 4).tolist() == [0.5, 1.5, 1.5, 0.5, 0.5, 1.5, 1.5, 0.5, 0.5, 0.5]
    assert np.array_equal(edge_weights(5, 5), [0.5, 1.5, 2.5, 1.5, 0.5])


class _WindowEncoder:
    """A stand-in encoder whose one head reads its input `mode`: "position" (each frame's index
    in its window: what a window's edge does to a BiLSTM, made visible) or "feature" (the frame's
    first feature: no context at all)."""

    def __init__(self, mode):
        self.mode = mode

    def encode_batch(self, batch):
        import torch

        x = batch["features"]
        if self.mode == "position":
            value = torch.arange(x.shape[1], dtype=torch.float32)[None].expand(x.shape[0], -1)
        else:
            value = x[..., 0]
        return None, batch["feature_lengths"], {"onset": value[..., None]}

    def head_probs(self, heads, n_frames):
        return {k: v[:, :n_frames] for k, v in heads.items()}


class _WindowModel:
    def __init__(self, mode):
        import torch

        self.encoder = _WindowEncoder(mode)
        self._p = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self._p])


def test_window_heads_cross_fade_windowings_by_distance_to_the_window_edge():
    import numpy as np

    from mtlib.transcriber import window_heads

    features = np.arange(10, dtype=np.float32)[:, None].repeat(2, axis=1)
    got = window_heads(_WindowModel("position"), features, 4, 2, 3)["onset"][:, 0]
    # windowing 1: [0, 4) [4, 8) [8, 10); windowing 2 (offset 2): [0, 2) [2, 6) [6, 10)
    pos1, w1 = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]), np.array([1, 3, 3, 1, 1, 3, 3, 1, 1, 1])
    pos2, w2 = np.array([0, 1, 0, 1, 2, 3, 0, 1, 2, 3]), np.array([1, 1, 1, 3, 3, 1, 1, 3, 3, 1])
    assert np.allclose(got, (pos1 * w1 + pos2 * w2) / (w1 + w2))
    assert np.isclose(got[3], 1.5) and np.isclose(got[4], 1.5)  # each read mostly mid-window
    # a head without context reads every frame the same in every windowing: unchanged
    for passes in (1, 2, 3, 4):
        plain = window_heads(_WindowModel("feature"), features, 4, passes, 3)["onset"][:, 0]
        assert np.allclose(plain, np.arange(10))
    # the first windowing's heads, handed in, stand for their own pass
    first = {"onset": np.full((10, 1), 7.0, np.float32)}
    mixed = window_heads(_WindowModel("position"), features, 4, 2, 3, first)["onset"][:, 0]
    assert np.allclose(mixed, (7.0 * w1 + pos2 * w2) / (w1 + w2))
    with pytest.raises(ValueError, match="head_passes 5 needs a head window of at least"):
        window_heads(_WindowModel("position"), features, 4, 5, 3)


def test_head_passes_change_the_heads_and_never_the_tokens(tmp_path):
    import numpy as np

    from mtlib.transcriber import Transcriber

    ckpt = tiny_checkpoint(tmp_path / "ctc.pt")
    one = Transcriber.load(ckpt, device="cpu", decoding=DecodeConfig(head_passes=1))
    features = np.random.default_rng(0).normal(size=(200, one.features.n_bins)).astype(np.float32)
    base = one.run(features)
    same = one.with_decoding(head_window=64).run(features)  # the segment's length: one pass
    two = one.with_decoding(head_passes=2).run(features)
    longer = one.with_decoding(head_window=200).run(features)
    assert all(np.array_equal(base.head_probs[k], same.head_probs[k]) for k in base.head_probs)
    for out in (two, longer):
        assert out.segments == base.segments  # the tokens: the model's own segments
        assert set(out.head_probs) == set(base.head_probs)
        onset = out.head_probs["onset"]
        assert (
            onset.shape == base.head_probs["onset"].shape and 0 <= onset.min() <= onset.max() <= 1
        )
        assert not np.array_equal(onset, base.head_probs["onset"])
    # mid-segment frames (32 of 64: far from both edges) weigh most in the first windowing
    mid = np.abs(two.head_probs["onset"][32] - base.head_probs["onset"][32]).max()
    edge = np.abs(two.head_probs["onset"][63] - base.head_probs["onset"][63]).max()
    assert mid < edge
    assert DecodeConfig(head_passes=2).model_run_key("ctc") != DecodeConfig().model_run_key("ctc")
    with pytest.raises(ValueError, match=r"decode.head_passes \(0\)"):
        DecodeConfig(head_passes=0)
