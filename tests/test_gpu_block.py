"""README's "Real MusicNet on one GPU" block, read from the README itself, on the CPU: its feature
settings and model sizes build, featurise, and train a few steps for both models, so the block
cannot rot while no GPU runs it (issue 15, point 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from benchmarks.gpu_block import merge, readme_block, slice_root
from tests.test_bench_scale import write_track

README = Path(__file__).resolve().parents[1] / "README.md"
gpu_block = readme_block  # the block as benchmarks/gpu_block.py reads it for the GPU run


@pytest.mark.parametrize("kind", ["ctc", "seq2seq"])
def test_the_readme_gpu_block_builds_and_trains_on_the_cpu(kind):
    import functools

    import torch

    from mtlib.dataset import collate
    from mtlib.events import tokenize_track
    from mtlib.features import FeatureConfig, track_features
    from mtlib.models import build_model, feature_keys
    from mtlib.notes import Note
    from mtlib.params import config_from
    from mtlib.vocab import Vocabulary

    block = gpu_block()
    params = yaml.safe_load((README.parent / "params.yaml").read_text())
    audio = {**params["audio"], **block["audio"]}
    cfg = config_from(FeatureConfig, audio, "audio")
    assert (cfg.features, cfg.hop_length, cfg.n_bins) == ("logmel", 256, 229)  # as the README says
    vocab = config_from(Vocabulary, params["vocab"], "vocab")
    rate, seconds = cfg.sample_rate, block["segment"]["seconds"]
    t = np.arange(int(rate * seconds)) / rate
    wav = (0.2 * np.sin(2 * np.pi * 261.63 * t) * (t < 1.5)).astype(np.float32)
    path = Path(__file__).parent / ".gpu_block.wav"
    sf.write(path, wav, rate)
    try:
        feats = track_features(path, cfg)
    finally:
        path.unlink()
    assert feats.shape[1] == cfg.n_bins and np.isfinite(feats).all()
    notes = [Note(0.1, 1.5, 60, 1), Note(2.0, 3.0, 64, 1)]
    n = feats.shape[0]
    rows = tokenize_track(notes, n, [(0, 0, n)], vocab, rate, cfg.hop_length).rows
    items = [{**rows[0], "features": feats, "track": "t"} for _ in range(2)]
    batch = functools.partial(collate, vocab=vocab)(items)
    model_cfg = {**params["model"], **block["model"]}
    model_cfg = {k: model_cfg[k] for k in ("encoder", kind)}
    torch.manual_seed(0)
    model = build_model(kind, {**model_cfg, **feature_keys(cfg)}, vocab)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(3):
        _, losses = model(batch)
        total = sum(v for k, v in losses.items() if k.startswith("loss/"))
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert all(np.isfinite(totals)) and totals[-1] < totals[0], totals


def test_merge_sets_the_blocks_keys_one_by_one_as_dvc_exp_run_would():
    base = {"model": {"encoder": {"lstm_hidden": 192, "onset_weight": 1.0}, "ctc": {"upsample": 4}}}
    base["train"] = {"common": {"device": "auto", "seed": 0}}
    over = {"model": {"encoder": {"lstm_hidden": 384}}, "train": {"common": {"device": "cuda"}}}
    merged = merge(base, over)
    assert merged["model"]["encoder"] == {"lstm_hidden": 384, "onset_weight": 1.0}
    assert merged["model"]["ctc"] == {"upsample": 4} and merged["train"]["common"]["seed"] == 0
    assert base["model"]["encoder"]["lstm_hidden"] == 192  # the base is not modified
    merged = merge(
        params := yaml.safe_load((README.parent / "params.yaml").read_text()), gpu_block()
    )
    assert merged["audio"]["n_mels"] == 229 and merged["audio"]["bins_per_semitone"] == 3
    assert merged["model"]["seq2seq"]["frame_weight"] == params["model"]["seq2seq"]["frame_weight"]


def test_the_gpu_slice_takes_tracks_by_id_up_to_its_minutes(tmp_path):
    demo, root = tmp_path / "demo", tmp_path / "slice"
    for tid, seconds in [(10, 30.0), (2, 30.0), (3, 45.0), (4, 20.0)]:  # by id: 2, 3, 4, 10
        write_track(demo, "train", tid, seconds, [(100, 5000, 60)])
    for tid in (1, 5):
        write_track(demo, "test", tid, 6.0, [(2000, 9000, 64 + tid)])
    taken = slice_root(demo, root, {"train": 1.5, "test": 0.15})
    # 2 (0.5 min) + 3 (0.75) = 1.25; 4 (0.33) would make 1.58 > 1.5, 10 (0.5) too: skipped
    assert sorted(p.name for p in (root / "train_data").iterdir()) == ["2.wav", "3.wav"]
    assert all((root / "train_data" / n).is_symlink() for n in ("2.wav", "3.wav"))
    assert taken["train"] == pytest.approx(1.25)
    # test audio is copied as FLAC with the very samples of the 16-bit WAV (one track fits 0.15)
    assert sorted(p.name for p in (root / "test_data").iterdir()) == ["1.flac"]
    flac, rate = sf.read(root / "test_data" / "1.flac", dtype="int16")
    wav, _ = sf.read(demo / "test_data" / "1.wav", dtype="int16")
    assert rate == 44100 and np.array_equal(flac, wav)
    assert sorted(p.name for p in (root / "test_labels").iterdir()) == ["1.csv"]
    from mtlib.musicnet import list_tracks

    assert {(t.split, t.id) for t in list_tracks(root)} == {
        ("train", "2"),
        ("train", "3"),
        ("test", "1"),
    }
