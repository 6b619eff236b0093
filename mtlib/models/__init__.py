"""The two transcription models on one shared encoder, `build_model`, and checkpoints.

A checkpoint holds the model's kind and configs next to its weights (nanoGPT style), so
evaluation and `mt transcribe` rebuild the model from the checkpoint alone, never from today's
params.yaml. Feature normalisation stats are buffers of the encoder, so they travel with it.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from mtlib.io import atomic_path
from mtlib.models.ctc import CTCConfig, CTCModel
from mtlib.models.encoder import Encoder, EncoderConfig
from mtlib.models.seq2seq import AdditiveAttention, DecoderState, Seq2SeqConfig, Seq2SeqModel
from mtlib.params import config_from
from mtlib.vocab import Vocabulary

__all__ = [
    "AdditiveAttention",
    "CTCConfig",
    "CTCModel",
    "DecoderState",
    "Encoder",
    "EncoderConfig",
    "PER_MODEL_ENCODER_KEYS",
    "Seq2SeqConfig",
    "Seq2SeqModel",
    "build_model",
    "load_checkpoint",
    "model_config",
    "save_checkpoint",
    "count_parameters",
    "feature_keys",
]

MODELS = {"ctc": (CTCModel, CTCConfig), "seq2seq": (Seq2SeqModel, Seq2SeqConfig)}

# Encoder fields the data decide rather than model.encoder; they may sit at the top level
# (n_pitches, if given, must agree with the vocabulary's pitch range).
DATA_KEYS = ("n_mels", "n_pitches", "harmonic_shifts")
# Encoder fields each model sets in its own section (model.ctc / model.seq2seq), over
# model.encoder: the frame head decides Seq2Seq's offsets, while the CTC tokens' own offsets beat
# it, so the shared encoder carries it only where it pays (BENCHMARKS.md, issue 12).
PER_MODEL_ENCODER_KEYS = (
    "frame_weight",
    "frame_detach",
    "frame_hidden",
    "frame_layers",
    "frame_features",
    "offset_weight",
)


def feature_keys(feature_cfg) -> dict[str, Any]:
    """The DATA_KEYS a FeatureConfig decides: the feature bins and, for hcqt, the harmonic shifts."""
    return {"n_mels": feature_cfg.n_bins, "harmonic_shifts": feature_cfg.harmonic_shifts}


def build_model(kind: str, config: dict[str, Any], vocab: Vocabulary) -> CTCModel | Seq2SeqModel:
    """A fresh model from {"encoder": {...}, kind: {...}, "n_mels": ...} and the vocabulary,
    the only place that knows token ids (the CTC model emits `vocab.ctc`'s).

    The nested sections are `model.encoder` and `model.<kind>` of params.yaml; unknown keys are
    an error naming them. n_mels may be given at the top level or in "encoder"; the onset and
    frame heads get one row per pitch of the vocabulary. PER_MODEL_ENCODER_KEYS in the model's
    own section override "encoder"."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(MODELS)})")
    model_cls, head_cls = MODELS[kind]
    head_values = dict(config.get(kind, {}))
    own = {k: head_values.pop(k) for k in PER_MODEL_ENCODER_KEYS if k in head_values}
    encoder_values = {
        **config.get("encoder", {}),
        **{k: config[k] for k in DATA_KEYS if k in config},
        **own,
    }
    if encoder_values.setdefault("n_pitches", vocab.n_pitches) != vocab.n_pitches:
        raise ValueError(
            f"model.encoder: n_pitches {encoder_values['n_pitches']} disagrees with the vocabulary's "
            f"{vocab.n_pitches} pitches ({vocab.min_pitch}-{vocab.max_pitch})"
        )
    enc_cfg = config_from(EncoderConfig, encoder_values, "model.encoder")
    head_cfg = config_from(head_cls, head_values, f"model.{kind}")
    return model_cls(enc_cfg, head_cfg, vocab)


def model_config(model: CTCModel | Seq2SeqModel) -> dict[str, Any]:
    """The config dict that `build_model(model.kind, ..., model.vocab)` rebuilds it from."""
    return {"encoder": dataclasses.asdict(model.enc_cfg), model.kind: dataclasses.asdict(model.cfg)}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(
    path: str | Path, model: CTCModel | Seq2SeqModel, extra: dict[str, Any] | None = None
) -> None:
    """Write kind, configs, vocabulary, weights (with the feature stats) and `extra` atomically."""
    state = {
        "kind": model.kind,
        "config": model_config(model),
        "vocab": model.vocab.config(),
        "vocab_size": model.vocab_size,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    # Through a buffer: torch.save names the archive inside the file after the file it writes,
    # here atomic_path's random temporary name, so the bytes would differ from run to run.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[CTCModel | Seq2SeqModel, dict]:
    """(model in eval mode, extra) from a checkpoint written by `save_checkpoint`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from exc
    # checkpoints written before models took the vocabulary carry it in extra (the train stages')
    vocab_cfg = state.get("vocab") or state.get("extra", {}).get("vocab")
    missing = [k for k in ("kind", "config", "vocab_size", "state_dict") if k not in state]
    missing += [] if vocab_cfg else ["vocab"]
    if missing:
        raise ValueError(f"{path}: not an mtlib checkpoint (missing {', '.join(missing)})")
    model = build_model(state["kind"], state["config"], Vocabulary(**vocab_cfg))
    if model.vocab_size != state["vocab_size"]:
        raise ValueError(
            f"{path}: its vocabulary {vocab_cfg} has {model.vocab_size} ids, "
            f"its weights {state['vocab_size']}"
        )
    model.load_state_dict(state["state_dict"])
    model.to(map_location)
    return model.eval(), state.get("extra", {})
