"""What the later stages share: tracks of a manifest split and their references, scoring whole
tracks as evaluation scores them, and the params sections as configs.

The stages' jobs live next to what they drive: `mtlib.train.train_stage` (train_ctc /
train_seq2seq), `mtlib.sweep.sweep_stage` (decode_sweep), `mtlib.evaluate.evaluate_stage`
(evaluate); `stages/` only parses options and calls them. Feature and vocabulary definitions are
read from the data folders the stages depend on (features/config.json, tokens/stats.json), never
from today's params.yaml, and checkpoints carry them onwards.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlib.decode import DecodeConfig
from mtlib.notes import Note

KINDS = ("ctc", "seq2seq")  # the two models, in the order the sweep and evaluation take them


@dataclass(frozen=True)
class TrackRef:
    """A track as later stages see it: where its audio, labels and features are."""

    id: str
    split: str  # train | val | test (the manifest's split)
    audio: str
    labels: str
    file_rate: int
    features: str
    n_frames: int
    duration: float


def load_tracks(manifest_path: str | Path, features_dir: str | Path, split: str) -> list[TrackRef]:
    """The tracks of one manifest split, with their files, in manifest order."""
    import pandas as pd

    manifest = pd.read_parquet(manifest_path, columns=["split", "track"])
    tracks = pd.read_parquet(Path(features_dir) / "tracks.parquet")
    ids = list(dict.fromkeys(manifest.loc[manifest.split == split, "track"].astype(str)))
    rows = {str(r.track): r for r in tracks.itertuples()}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ValueError(
            f"{manifest_path}: {split} track(s) {', '.join(missing[:5])} are not in "
            f"{Path(features_dir) / 'tracks.parquet'}; rerun segment and manifest (dvc repro)"
        )
    return [
        TrackRef(
            i,
            split,
            str(rows[i].audio),
            str(rows[i].labels),
            int(rows[i].file_rate),
            str(rows[i].features),
            int(rows[i].n_frames),
            float(rows[i].duration),
        )
        for i in ids
    ]


def load_vocab(tokens_dir: str | Path):
    from mtlib.vocab import Vocabulary

    stats = json.loads((Path(tokens_dir) / "stats.json").read_text())
    return Vocabulary(**stats["vocab"])


def reference_notes(track: TrackRef, vocab) -> list[Note]:
    """The track's labels in seconds (the same pitch range the models can emit)."""
    import warnings

    from mtlib.musicnet import MusicNetWarning, read_label_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MusicNetWarning)  # already reported by the segment stage
        return read_label_file(track.labels, track.file_rate, vocab.min_pitch, vocab.max_pitch)


def track_features(track: TrackRef) -> np.ndarray:
    return np.asarray(np.load(track.features, mmap_mode="r"), dtype=np.float32)


SCORE_KEYS = ("note/precision", "note/recall", "note/f1", "note_offset/f1")


def score_tracks(
    transcriber,
    tracks: Sequence[TrackRef],
    refs: dict[str, list[Note]],
    onset_tolerance: float = 0.05,
    cache: dict | None = None,
    keys: Sequence[str] = SCORE_KEYS,
) -> dict[str, float]:
    """Mean mir_eval scores over whole tracks (`keys` of `mtlib.metrics.note_metrics`: by default
    note F1, P, R and note-with-offset F1), transcribed by
    `transcriber` (a `mtlib.transcriber.Transcriber`) exactly as evaluation transcribes. With a
    `cache` dict, each track's model output is kept per `DecodeConfig.model_run_key`, so configs
    that differ only in post-processing (onset windows, offsets, frame threshold) run the model once."""
    from mtlib.metrics import note_metrics

    rows = []
    for t in tracks:
        key = (t.id, transcriber.decoding.model_run_key(transcriber.kind))
        out = cache.get(key) if cache is not None else None
        if out is None:
            out = transcriber.run(track_features(t))
            if cache is not None:
                cache[key] = out
        tr = transcriber.notes_from(out)
        rows.append(note_metrics(refs[t.id], tr.notes, onset_tolerance=onset_tolerance))
    return {k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in keys}


def model_config(params: dict[str, Any], kind: str) -> dict[str, Any]:
    from mtlib.params import section

    return {
        "encoder": dict(section(params, "model.encoder")),
        kind: dict(section(params, f"model.{kind}")),
    }


def train_config(params: dict[str, Any], kind: str):
    from mtlib.params import config_from, section
    from mtlib.train import TrainConfig

    merged = {**section(params, "train.common"), **section(params, f"train.{kind}")}
    return config_from(TrainConfig, merged, f"train.common + train.{kind}")


def validation_decode_config(params: dict[str, Any]) -> DecodeConfig:
    """How validation decodes during training: `train.validate` (decode.* keys) over the
    DecodeConfig defaults. A section of its own, so that `dvc exp run -S decode.<key>=...` reruns
    decode_sweep and evaluate only, not training; validation still goes through the very
    function evaluation uses (`mtlib.transcriber.Transcriber.transcribe_features`)."""
    from mtlib.params import section

    return decode_config(dict(section(params, "train.validate") or {}))


def augment_config(params: dict[str, Any]):
    """The `train.augment` section as an AugmentConfig (an empty section: the defaults)."""
    from mtlib.augment import AugmentConfig
    from mtlib.params import config_from, section

    return config_from(AugmentConfig, section(params, "train.augment") or {}, "train.augment")


def decode_config(values: dict[str, Any]) -> DecodeConfig:
    from mtlib.params import config_from

    return config_from(DecodeConfig, values, "decode")
