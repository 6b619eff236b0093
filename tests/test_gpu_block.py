"""README's "Real MusicNet on one GPU" block, read from the README itself, on the CPU: its feature
settings and model sizes build, featurise, and train a few steps for both models, so the block
cannot rot while no GPU runs it (issue 15, point 5)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def gpu_block() -> dict:
    text = README.read_text()
    section = text[text.index("## Real MusicNet on one GPU") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README's GPU section holds a ```yaml block"
    return yaml.safe_load(block.group(1))


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
    import soundfile as sf

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
