"""What train_ctc / train_seq2seq, decode_sweep and evaluate do, as functions of params and paths.

The stages in `stages/` only parse options and call these. Feature and vocabulary definitions
are read from the data folders the stages depend on (features/config.json, tokens/stats.json),
never from today's params.yaml, and checkpoints carry them onwards.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlib.decode import DecodeConfig
from mtlib.notes import Note


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

    from mtlib.musicnet import MusicNetWarning, read_labels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MusicNetWarning)  # already reported by the segment stage
        return read_labels(track.labels, track.file_rate, vocab.min_pitch, vocab.max_pitch)


def track_features(track: TrackRef) -> np.ndarray:
    return np.asarray(np.load(track.features, mmap_mode="r"), dtype=np.float32)


def score_tracks(
    transcriber,
    tracks: Sequence[TrackRef],
    refs: dict[str, list[Note]],
    onset_tolerance: float = 0.05,
    cache: dict | None = None,
) -> dict[str, float]:
    """Mean mir_eval note F1 (and P, R) and note-with-offset F1 over whole tracks, transcribed by
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
    keys = ("note/precision", "note/recall", "note/f1", "note_offset/f1")
    return {k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in keys}


# --------------------------------------------------------------------------- training


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


def train_stage(
    kind: str, params_path, manifest_path, features_dir, tokens_dir, out, live_dir, resume_path
) -> None:
    """Build loaders and the model from the data and params, train, keep the best checkpoint.

    Only the train loader augments (`train.augment`, `mtlib.augment.AugmentedDataset`); the val
    loader, validation on whole tracks, the decode sweep and evaluation see unaugmented features."""
    import pandas as pd
    import torch

    from mtlib.dataset import SegmentDataset, load_feature_stats
    from mtlib.models import build_model
    from mtlib.params import load_params
    from mtlib.segments import read_feature_config
    from mtlib.train import (
        file_digest,
        init_encoder_from,
        run_signature,
        seed_everything,
        token_class_weights,
        train,
    )

    params = load_params(params_path)
    cfg, acfg, mcfg = train_config(params, kind), augment_config(params), model_config(params, kind)
    fcfg, seg_frames = read_feature_config(features_dir)
    vocab = load_vocab(tokens_dir)
    stats_path = Path(manifest_path).with_name("feature_stats.npz")
    mean, std = load_feature_stats(stats_path)
    manifest = pd.read_parquet(manifest_path)
    train_set, val_set = SegmentDataset(manifest, "train"), SegmentDataset(manifest, "val")
    if len(train_set) == 0:
        raise ValueError(f"{manifest_path}: no train segments")
    seed_everything(cfg.seed)
    model = build_model(kind, {**mcfg, "n_mels": fcfg.n_bins}, vocab)
    model.set_feature_stats(torch.as_tensor(mean), torch.as_tensor(std))
    init_digest = ""
    if cfg.init_encoder:
        init_encoder_from(model, cfg.init_encoder)
        init_digest = file_digest(cfg.init_encoder)
        print(f"[{kind}] encoder initialised from {cfg.init_encoder}")
    train_loader, val_loader = segment_loaders(kind, train_set, val_set, vocab, cfg, acfg)
    vcfg = validation_decode_config(params)
    val_tracks = load_tracks(manifest_path, features_dir, "val")
    validate = validation(fcfg, seg_frames, vocab, vcfg, val_tracks, val_loader)
    class_weights = None
    if kind == "seq2seq" and cfg.class_weights > 0:
        class_weights = token_class_weights(train_set.tokens, vocab, cfg.class_weights)
    describe = (dataclasses.asdict(cfg), acfg.describe(), dataclasses.asdict(vcfg))
    digests = (file_digest(manifest_path), file_digest(stats_path), init_digest)
    signature = run_signature(kind, mcfg, describe[0], *digests, *describe[1:])
    extra = {
        "kind": kind,
        "features": fcfg.describe(),
        "seg_frames": seg_frames,
        "vocab": vocab.config(),
        "train": describe[0],
        "augment": describe[1],
        "decode": describe[2],  # the decoding it was validated with: `mt transcribe`'s fallback
    }
    loaders = (train_loader, val_loader, validate)
    result = train(
        kind, model, cfg, *loaders, out, resume_path, signature, extra, live_dir, class_weights
    )
    print(
        f"[{kind}] best val note F1 {result.best_f1:.4f} at epoch {result.best_epoch} "
        f"of {result.epochs_run} → {out}"
    )


def segment_loaders(kind: str, train_set, val_set, vocab, cfg, acfg):
    """(train_loader(epoch), val loader): batches bucketed by length (tokens for Seq2Seq, frames
    for CTC); the train set augmented with draws seeded per (seed, epoch, item)."""
    import functools

    import torch

    from mtlib.augment import AugmentedDataset
    from mtlib.dataset import BucketBatchSampler, collate

    col = functools.partial(collate, vocab=vocab)
    length_key = "n_tokens" if kind == "seq2seq" else "n_frames"
    sampler = BucketBatchSampler(
        train_set.lengths(length_key), cfg.batch_size, shuffle=True, seed=cfg.seed
    )
    augmented = AugmentedDataset(train_set, acfg, cfg.seed, vocab)

    def train_loader(epoch: int):
        sampler.set_epoch(epoch)
        augmented.set_epoch(epoch)  # before the DataLoader copies the dataset into its workers
        return torch.utils.data.DataLoader(
            augmented, batch_sampler=sampler, collate_fn=col, num_workers=cfg.num_workers
        )

    val_sampler = BucketBatchSampler(val_set.lengths(length_key), cfg.batch_size, shuffle=False)
    val_loader = torch.utils.data.DataLoader(val_set, batch_sampler=val_sampler, collate_fn=col)
    return train_loader, val_loader


def validation(
    fcfg, seg_frames: int, vocab, vcfg: DecodeConfig, tracks: Sequence[TrackRef], val_loader
):
    """validate(model) → {"val/note_f1": ..., ...}: whole val tracks transcribed as evaluation
    transcribes them (`score_tracks` with a Transcriber decoding as `train.validate` says); for
    Seq2Seq also without the grammar (what the constraints rescue) and teacher-forced token accuracy."""
    from mtlib.transcriber import Transcriber

    refs = {t.id: reference_notes(t, vocab) for t in tracks}

    def validate(model) -> dict[str, float]:
        transcriber = Transcriber(model, fcfg, seg_frames, vocab, vcfg, "train.validate")
        out = {f"val/{k}": v for k, v in score_tracks(transcriber, tracks, refs).items()}
        if model.kind == "seq2seq":
            r = score_tracks(transcriber.with_decoding(s2s_decoder="greedy"), tracks, refs)
            out.update({f"val/{k}_plain": v for k, v in r.items()})
            out["val/token_acc_tf"] = teacher_forced_accuracy(model, val_loader)
        return {k.replace("val/note/", "val/note_"): v for k, v in out.items()}

    return validate


def teacher_forced_accuracy(model, loader) -> float:
    """Next-token accuracy with gold history (what the teacher-forced loss sees), ignoring PAD."""
    import torch

    from mtlib.train import move

    model.eval()
    device = next(model.parameters()).device
    right = total = 0
    with torch.no_grad():
        for batch in loader:
            batch = move(batch, device)
            outputs, _ = model(batch)
            pred = outputs["logits"].argmax(-1)
            gold = batch["tokens"]
            keep = gold != model.vocab.PAD
            right += int((pred[keep] == gold[keep]).sum())
            total += int(keep.sum())
    model.train()
    return right / max(1, total)


# --------------------------------------------------------------------------- checkpoints and decoding


def decode_config(values: dict[str, Any]) -> DecodeConfig:
    from mtlib.params import config_from

    return config_from(DecodeConfig, values, "decode")


def sweep_grid(base: dict[str, Any], grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values over `base` (keys the grid does not vary stay)."""
    keys = sorted(grid)
    return [
        {**base, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))
    ] or [dict(base)]


# Keys that move offsets only: they cannot change onset-only note F1, so the sweep tries them
# after the rest, on the best config, ranked by note-with-offset F1.
OFFSET_KEYS = ("frame_threshold", "offset_shift_frames")


def run_sweep(
    base: dict[str, Any],
    grid: dict[str, list],
    score: Callable[[dict], dict],
    log: Callable[[dict], None] = lambda row: None,
):
    """The decode_sweep search. Every config of `grid` (over `base`) but the OFFSET_KEYS is scored
    by `score(values) -> {"note/f1", "note_offset/f1", ...}` and ranked by note F1 (onsets only);
    then the OFFSET_KEYS the grid has (they cannot change that score) are tried, every
    combination, on the best config and ranked by note-with-offset F1. Ties go to the config
    scored first.

    Returns (rows: the grid keys' values and scores of every config scored, the grid keys in
    table order, the chosen decode config, the chosen row)."""
    grid = dict(grid)
    offset_grid = {k: grid.pop(k) for k in OFFSET_KEYS if k in grid}
    keys = sorted(grid) + sorted(offset_grid)
    base = {**{k: getattr(DecodeConfig, k) for k in offset_grid}, **base}
    rows: list[dict[str, Any]] = []

    def scored(values):
        rows.append({**{k: values[k] for k in keys}, **score(values)})
        log(rows[-1])
        return rows[-1]

    best = max((scored(values) for values in sweep_grid(base, grid)), key=lambda r: r["note/f1"])
    chosen = {**base, **{k: _plain(best[k]) for k in sorted(grid)}}
    if offset_grid:
        tried = [best] + [
            scored(values)
            for values in sweep_grid(chosen, offset_grid)
            if any(values[k] != chosen[k] for k in offset_grid)
        ]
        best = max(tried, key=lambda r: r["note_offset/f1"])
        chosen.update({k: _plain(best[k]) for k in offset_grid})
    return rows, keys, chosen, best


def sweep_stage(params_path, models_dir, manifest_path, features_dir, out_dir, plots_dir) -> None:
    """Score each decoding config of the grid on whole val tracks (`sweep_model`); keep the best
    per model: in data/sweep and, tied by SHA-256 to the checkpoint it was chosen for, beside the
    checkpoint, where `mt transcribe --checkpoint FILE` finds it."""
    import shutil

    from mtlib.io import atomic_dir, atomic_path
    from mtlib.params import load_params, section
    from mtlib.transcriber import Transcriber, write_decoding

    params = load_params(params_path)
    base = dict(section(params, "decode"))
    with atomic_dir(out_dir) as tmp:
        for kind in ("ctc", "seq2seq"):
            checkpoint = Path(models_dir) / f"{kind}.pt"
            transcriber = Transcriber.load(checkpoint, decoding=decode_config(base))
            tracks = load_tracks(manifest_path, features_dir, "val")
            grid = dict(section(params, f"sweep.{kind}") or {})
            table, chosen, scores = sweep_model(transcriber, tracks, base, grid)
            shutil.copyfile(
                write_decoding(checkpoint, decode_config(chosen), scores), tmp / f"best_{kind}.json"
            )
            with atomic_path(Path(plots_dir) / f"sweep_{kind}.csv") as p:
                table.to_csv(p, index=False)


def sweep_model(
    transcriber, tracks: Sequence[TrackRef], base: dict[str, Any], grid: dict[str, list]
):
    """(table of every config tried with its val scores, the chosen decode values, their scores)
    for one model. Each track's model output is cached per model-run key, so configs that differ
    only in post-processing do not run the model again."""
    import pandas as pd

    refs = {t.id: reference_notes(t, transcriber.vocab) for t in tracks}
    cache: dict = {}

    def score(values):
        t0 = time.perf_counter()
        candidate = dataclasses.replace(transcriber, decoding=decode_config(values))
        return {
            **score_tracks(candidate, tracks, refs, cache=cache),
            "seconds": time.perf_counter() - t0,
        }

    def log(row):
        print(f"[sweep {transcriber.kind}] " + ", ".join(f"{k}={v}" for k, v in row.items()))

    rows, keys, chosen, best = run_sweep(base, grid, score, log=log)
    scores = {
        "val/note_f1": float(best["note/f1"]),
        "val/note_offset_f1": float(best["note_offset/f1"]),
    }
    table = pd.DataFrame(rows)
    table.insert(0, "config", [", ".join(f"{k}={r[k]}" for k in keys) or "default" for r in rows])
    return table, chosen, scores


def _plain(x):
    return x.item() if hasattr(x, "item") else x


# --------------------------------------------------------------------------- evaluation


def evaluate_model(
    transcriber,
    tracks: Sequence[TrackRef],
    onset_tolerance: float = 0.05,
    offset_ratio: float = 0.2,
):
    """Transcribe whole tracks from their audio with `transcriber` and score them: the refined
    notes (the result) and, under raw/, the model's own tokens paired into notes without the
    heads' refinement, so a comparison of the two models stays honest about what the shared
    heads contribute.

    Returns (summary dict, per-track rows, {track: (reference notes, estimated notes)}, onset errors)."""
    from mtlib import metrics as M
    from mtlib.features import track_features as featurize
    from mtlib.transcriber import add_counts

    fcfg, vocab = transcriber.features, transcriber.vocab
    rows, notes, errors = [], {}, []
    audio_seconds = wall = 0.0
    tokens = np.zeros(5, dtype=np.int64)  # edit distance, reference length, matches, n_ref, n_est
    counts: dict[str, int] = {}
    for t in tracks:
        t0 = time.perf_counter()
        feats = featurize(t.audio, fcfg)  # timed: the real-time factor includes the features
        feat_s = time.perf_counter() - t0
        tr = transcriber.transcribe_features(feats)
        wall += feat_s + tr.seconds
        audio_seconds += t.duration
        add_counts(counts, tr.counts)
        ref = reference_notes(t, vocab)
        est = tr.notes
        notes[t.id] = (ref, est)
        raw_notes = dataclasses.replace(tr, frame_notes=tr.raw_notes).notes
        raw = M.note_metrics(
            ref, raw_notes, onset_tolerance=onset_tolerance, offset_ratio=offset_ratio
        )
        row = {
            "track": t.id,
            **M.note_metrics(ref, est, onset_tolerance=onset_tolerance, offset_ratio=offset_ratio),
            **M.f1_at_tolerances(ref, est),
            **{f"raw/{k}": v for k, v in raw.items()},
        }
        errors.append(M.onset_errors(ref, est))
        tokens += segment_token_scores(transcriber, ref, tr, feats.shape[0])
        row.update(frame_onset_scores(ref, tr.frame_notes, fcfg))
        row["n_ref"], row["n_est"] = len(ref), len(est)
        rows.append(row)
    keys = [k for k in rows[0] if k != "track"] if rows else []
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    edit, ref_len, tp, n_ref_tok, n_est_tok = (int(x) for x in tokens)
    summary["ter"] = edit / max(1, ref_len)
    prec = tp / max(1, n_est_tok)
    rec = tp / max(1, n_ref_tok)
    summary["token_f1"] = 2 * prec * rec / max(1e-12, prec + rec)
    summary["rtf"] = audio_seconds / max(1e-9, wall)  # seconds of audio per wall second
    errs = np.concatenate(errors) if errors else np.zeros(0)
    summary.update({f"onset_error/{k}": v for k, v in M.onset_error_summary(errs).items()})
    summary.update({f"decode_counts/{k}": v for k, v in counts.items()})
    summary["tracks"] = len(rows)
    return summary, rows, notes, errs


def segment_token_scores(transcriber, ref: list[Note], tr, n_frames: int) -> np.ndarray:
    """[edit distance, reference length, matches, n_ref, n_est] of a track's decoded tokens
    against the reference tokens of the same segments (TER and micro token F1 when summed)."""
    from mtlib import events as ev
    from mtlib import metrics as M
    from mtlib.decode import decoding_for_kind

    fcfg, vocab = transcriber.features, transcriber.vocab
    ref_fn = ev.notes_to_frame_notes(ref, fcfg.sample_rate, fcfg.hop_length)
    out = np.zeros(5, dtype=np.int64)
    for s, toks in zip(tr.segment_starts, tr.segment_tokens):
        gold = decoding_for_kind(transcriber.kind).reference_tokens(
            ref_fn, s, min(transcriber.seg_frames, n_frames - s), vocab
        )
        out += [M.edit_distance(gold, list(toks)), len(gold), *M.token_counts(gold, list(toks))]
    return out


def frame_onset_scores(ref: list[Note], est_frame_notes, fcfg) -> dict[str, float]:
    """Onset F1 at ±2 and ±3 feature frames, on (frame, pitch) pairs."""
    from mtlib import events as ev
    from mtlib import metrics as M

    ref_on = [
        (f.onset, f.pitch) for f in ev.notes_to_frame_notes(ref, fcfg.sample_rate, fcfg.hop_length)
    ]
    est_on = [(f.onset, f.pitch) for f in est_frame_notes]
    return {f"onset_f1@{k}frames": M.onset_f1_frames(ref_on, est_on, k) for k in (2, 3)}


def split_file_suffix(split: str) -> str:
    """ "" for the test split, "_<name>" for an extra `test_<name>` split (metrics/ctc_unseen.json)."""
    return "" if split == "test" else "_" + split.removeprefix("test_")


def evaluate_stage(
    params_path, models_dir, sweep_dir, manifest_path, features_dir, out_dir, metrics_dir, plots_dir
) -> None:
    """Both models on the whole tracks of each split in `eval.splits` ("test" and the demo's
    "test_unseen"): metrics JSON per model and split (same keys), per-track CSV, onset-error
    histogram, predictions as MIDI and MusicNet CSV, piano rolls as PNG, and the real-time
    factors in metrics/speed.json (kept apart so the accuracy metrics do not depend on the
    machine). A listed split with no tracks (a MusicNet root without that folder) is written
    with `tracks: 0` and a message, so `dvc metrics show` says it was not measured."""
    import pandas as pd

    from mtlib.io import atomic_dir, write_json
    from mtlib.params import load_params, section
    from mtlib.transcriber import Transcriber, decoding_for

    ecfg = section(load_params(params_path), "eval")
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    present = set(pd.read_parquet(manifest_path, columns=["split"]).split)
    speed: dict[str, float] = {}
    with atomic_dir(out_dir) as pred_tmp, atomic_dir(plots_dir) as plot_tmp:
        for kind in ("ctc", "seq2seq"):
            checkpoint = Path(models_dir) / f"{kind}.pt"
            # the decoding `mt transcribe --checkpoint` uses for this file (decode_sweep's, beside it)
            dcfg, source, warning = decoding_for(checkpoint)
            if warning:
                raise ValueError(f"{checkpoint}: {warning}; run decode_sweep first")
            transcriber = Transcriber.load(checkpoint, decoding=dcfg)
            swept = json.loads((Path(sweep_dir) / f"best_{kind}.json").read_text())
            if (
                swept["checkpoint_sha256"]
                != json.loads(Path(source).read_text())["checkpoint_sha256"]
            ):
                raise ValueError(
                    f"{source} and {sweep_dir}/best_{kind}.json disagree; rerun decode_sweep"
                )
            print(f"[evaluate {kind}] decoding from {source}")
            for split in ecfg["splits"]:
                name = f"{kind}{split_file_suffix(split)}"
                if split not in present:
                    print(
                        f"[evaluate {kind}] no {split} tracks in {manifest_path}: {metrics_dir / name}.json records tracks: 0"
                    )
                    write_evaluation(metrics_dir, name, {"tracks": 0}, [], np.zeros(0))
                    continue
                tracks = load_tracks(manifest_path, features_dir, split)
                summary, rows, notes, errs = evaluate_model(
                    transcriber, tracks, ecfg["onset_tolerance"], ecfg["offset_ratio"]
                )
                speed[f"{kind}/rtf{split_file_suffix(split)}"] = summary.pop("rtf")
                summary.update({f"decode/{k}": v for k, v in dataclasses.asdict(dcfg).items()})
                write_evaluation(metrics_dir, name, summary, rows, errs)
                write_predictions(
                    pred_tmp / kind,
                    plot_tmp,
                    kind,
                    tracks,
                    notes,
                    int(ecfg["pianorolls"]),
                    float(ecfg["pianoroll_seconds"]),
                )
                print(
                    f"[evaluate {kind} {split}] note F1 {summary['note/f1']:.4f} (P {summary['note/precision']:.3f}, "
                    f"R {summary['note/recall']:.3f}), frame F1 {summary['frame/f1']:.3f}, "
                    f"rtf {speed[f'{kind}/rtf{split_file_suffix(split)}']:.0f}x"
                )
    write_json(metrics_dir / "speed.json", speed)


def write_evaluation(
    metrics_dir: Path, name: str, summary: dict, rows: list[dict], errs: np.ndarray
) -> None:
    """metrics/<name>.json, per_track_<name>.csv and onset_errors_<name>.csv (a 10 ms histogram)."""
    import pandas as pd

    from mtlib.io import atomic_path, write_json

    write_json(metrics_dir / f"{name}.json", summary)
    with atomic_path(metrics_dir / f"per_track_{name}.csv") as p:
        pd.DataFrame(rows, columns=list(rows[0]) if rows else ["track"]).to_csv(p, index=False)
    edges = np.arange(-0.2, 0.2001, 0.01)
    hist, _ = np.histogram(np.clip(errs, -0.2, 0.2), bins=edges)
    with atomic_path(metrics_dir / f"onset_errors_{name}.csv") as p:
        pd.DataFrame(
            {"onset_error_ms": np.round((edges[:-1] + 0.005) * 1000, 1), "notes": hist}
        ).to_csv(p, index=False)


def write_predictions(
    pred_dir: Path,
    plot_dir: Path,
    kind: str,
    tracks: Sequence[TrackRef],
    notes: dict,
    pianorolls: int,
    pianoroll_seconds: float,
) -> None:
    """Each track's estimated notes as MIDI and MusicNet CSV; the first `pianorolls` as PNG."""
    from mtlib.midi import write_midi
    from mtlib.musicnet import write_labels
    from mtlib.plots import piano_roll_png

    rate = {t.id: t.file_rate for t in tracks}
    for i, (tid, (ref, est)) in enumerate(notes.items()):
        write_midi(pred_dir / f"{tid}.mid", est)
        write_labels(pred_dir / f"{tid}.csv", est, rate[tid])
        if i < pianorolls:
            piano_roll_png(
                plot_dir / f"{kind}_{tid}.png",
                ref,
                est,
                f"{kind} · track {tid}",
                seconds=pianoroll_seconds,
            )
