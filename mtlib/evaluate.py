"""The evaluate stage: both models on whole test tracks of each split, scored with mir_eval.

Refined notes (the result) and raw/ (the model's own tokens, no head refinement) per model and
split, token error rate and token F1, onset-error histograms, predictions as MIDI and MusicNet
CSV, piano rolls, and real-time factors kept apart in metrics/speed.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtlib.musicnet import split_file_suffix
from mtlib.pipeline import (
    KINDS,
    TrackRef,
    load_tracks,
    reference_notes,
)


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
    from mtlib import events as ev
    from mtlib import metrics as M
    from mtlib.features import track_features as featurize
    from mtlib.transcriber import add_counts

    feature_cfg, vocab = transcriber.features, transcriber.vocab
    rows, notes, errors = [], {}, []
    audio_seconds = wall = 0.0
    tokens = np.zeros(5, dtype=np.int64)  # edit distance, reference length, matches, n_ref, n_est
    counts: dict[str, int] = {}
    for t in tracks:
        t0 = time.perf_counter()
        feats = featurize(t.audio, feature_cfg)  # timed: the real-time factor includes the features
        feat_s = time.perf_counter() - t0
        tr = transcriber.transcribe_features(feats)
        wall += feat_s + tr.seconds
        audio_seconds += t.duration
        add_counts(counts, tr.counts)
        ref = reference_notes(t, vocab)
        est = tr.notes
        notes[t.id] = (ref, est)
        raw = M.note_metrics(
            ref, tr.raw, onset_tolerance=onset_tolerance, offset_ratio=offset_ratio
        )
        row = {
            "track": t.id,
            **M.note_metrics(ref, est, onset_tolerance=onset_tolerance, offset_ratio=offset_ratio),
            **M.f1_at_tolerances(ref, est),
            **{f"raw/{k}": v for k, v in raw.items()},
        }
        errors.append(M.onset_errors(ref, est))
        ref_frames = ev.notes_to_frame_notes(ref, feature_cfg.sample_rate, feature_cfg.hop_length)
        tokens += segment_token_scores(transcriber, ref_frames, tr, feats.shape[0])
        row.update(frame_onset_scores(ref_frames, tr.frame_notes))
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


def segment_token_scores(transcriber, ref_fn, tr, n_frames: int) -> np.ndarray:
    """[edit distance, reference length, matches, n_ref, n_est] of a track's decoded tokens
    against the reference tokens (from its reference frame notes `ref_fn`) of the same segments
    (TER and micro token F1 when summed)."""
    from mtlib import metrics as M
    from mtlib.decode import decoding_for_kind

    vocab = transcriber.vocab
    out = np.zeros(5, dtype=np.int64)
    for s, toks in zip(tr.segment_starts, tr.segment_tokens):
        gold = decoding_for_kind(transcriber.kind).reference_tokens(
            ref_fn, s, min(transcriber.seg_frames, n_frames - s), vocab
        )
        out += [M.edit_distance(gold, list(toks)), len(gold), *M.token_counts(gold, list(toks))]
    return out


def frame_onset_scores(ref_fn, est_frame_notes) -> dict[str, float]:
    """Onset F1 at ±2 and ±3 feature frames, on (frame, pitch) pairs of reference and
    estimated frame notes."""
    from mtlib import metrics as M

    ref_on = [(f.onset, f.pitch) for f in ref_fn]
    est_on = [(f.onset, f.pitch) for f in est_frame_notes]
    return {f"onset_f1@{k}frames": M.onset_f1_frames(ref_on, est_on, k) for k in (2, 3)}


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

    params = load_params(params_path)
    eval_cfg, test_split = section(params, "eval"), split_name(params)
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    present = set(pd.read_parquet(manifest_path, columns=["split"]).split)
    splits = list(eval_cfg["splits"])
    if not present.intersection(splits):
        raise ValueError(f"{manifest_path}: no tracks in eval.splits ({', '.join(splits)})")
    # every input is checked before anything is written
    split_tracks = {s: load_tracks(manifest_path, features_dir, s) for s in splits if s in present}
    transcribers = [swept_transcriber(Path(models_dir) / f"{k}.pt", Path(sweep_dir)) for k in KINDS]
    speed: dict[str, float] = {}
    with atomic_dir(out_dir) as pred_tmp, atomic_dir(plots_dir) as plot_tmp:
        for transcriber in transcribers:
            kind, decoding = transcriber.kind, transcriber.decoding
            for split in splits:
                name = f"{kind}{split_file_suffix(split)}"
                if split not in present:
                    print(
                        f"[evaluate {kind}] no {split} tracks in {manifest_path}: {metrics_dir / name}.json records tracks: 0"
                    )
                    write_evaluation(metrics_dir, name, {"tracks": 0}, [], np.zeros(0))
                    continue
                tracks = split_tracks[split]
                summary, rows, notes, errs = evaluate_model(
                    transcriber, tracks, eval_cfg["onset_tolerance"], eval_cfg["offset_ratio"]
                )
                speed[f"{kind}/rtf{split_file_suffix(split)}"] = summary.pop("rtf")
                summary.update({f"decode/{k}": v for k, v in dataclasses.asdict(decoding).items()})
                summary["split"] = test_split if split == "test" else f"folder:{split}"
                groups = group_scores(tracks, rows, notes, eval_cfg["onset_tolerance"])
                write_evaluation(metrics_dir, name, summary, rows, errs, groups)
                write_predictions(
                    pred_tmp / kind,
                    plot_tmp,
                    kind,
                    tracks,
                    notes,
                    int(eval_cfg["pianorolls"]),
                    float(eval_cfg["pianoroll_seconds"]),
                )
                print(
                    f"[evaluate {kind} {split}] note F1 {summary['note/f1']:.4f} (P {summary['note/precision']:.3f}, "
                    f"R {summary['note/recall']:.3f}), frame F1 {summary['frame/f1']:.3f}, "
                    f"rtf {speed[f'{kind}/rtf{split_file_suffix(split)}']:.0f}x"
                )
    write_json(metrics_dir / "speed.json", speed)


def split_name(params: dict) -> str:
    """What the `test` split is (split.test, `SplitConfig.describe`), recorded in its metrics."""
    from mtlib.dataset import SplitConfig
    from mtlib.params import config_from

    return config_from(SplitConfig, params.get("split", {}), "split").describe()


def swept_transcriber(checkpoint: Path, sweep_dir: Path):
    """The Transcriber of `checkpoint` with the decoding `mt transcribe --checkpoint` uses for it
    (decode_sweep's, beside it), checked against the sweep stage's own best_<kind>.json."""
    from mtlib.transcriber import Transcriber, decoding_for

    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found (train it with dvc repro)")
    decoding, source, warning = decoding_for(checkpoint)
    if warning:
        raise ValueError(f"{checkpoint}: {warning}; run decode_sweep first")
    transcriber = Transcriber.load(checkpoint, decoding=decoding)
    swept = json.loads((sweep_dir / f"best_{transcriber.kind}.json").read_text())
    if swept["checkpoint_sha256"] != json.loads(Path(source).read_text())["checkpoint_sha256"]:
        raise ValueError(
            f"{source} and {sweep_dir}/best_{transcriber.kind}.json disagree; rerun decode_sweep"
        )
    print(f"[evaluate {transcriber.kind}] decoding from {source}")
    return transcriber


GROUP_COLUMNS = ["group", "name", "tracks", "notes", "note_f1", "note_recall"]


def group_scores(
    tracks: Sequence[TrackRef], rows: list[dict], notes: dict, onset_tolerance: float
) -> list[dict]:
    """Results by ensemble and by instrument, the rows of metrics/by_group_<name>.csv:

    - `ensemble`: the mean over a group's tracks of note F1 and recall, by the `ensemble` column
      of musicnet_metadata.csv beside the tracks' folders (no rows when there is none);
    - `instrument`: the recall of the reference notes of each instrument (the label's program),
      summed over tracks. Recall only: neither model outputs an instrument, so an estimated note
      cannot be told to belong to one (note_f1 is empty)."""
    import pretty_midi

    from mtlib.metrics import match_notes
    from mtlib.musicnet import metadata_by_root

    by_track = {r["track"]: r for r in rows}
    by_root = metadata_by_root(t.audio for t in tracks)
    metadata = {t: row for meta in by_root.values() for t, row in meta.items()}
    ensembles: dict[str, list[dict]] = {}
    for t in tracks:
        meta = metadata.get(t.id, {})
        if meta.get("ensemble"):
            ensembles.setdefault(meta["ensemble"], []).append(by_track[t.id])
    out = [
        {
            "group": "ensemble",
            "name": name,
            "tracks": len(group),
            "notes": int(sum(r["n_ref"] for r in group)),
            "note_f1": float(np.mean([r["note/f1"] for r in group])),
            "note_recall": float(np.mean([r["note/recall"] for r in group])),
        }
        for name, group in sorted(ensembles.items())
    ]
    found: dict[int, list[int]] = {}  # program -> [reference notes, matched, tracks]
    for ref, est in notes.values():
        matched = {i for i, _ in match_notes(ref, est, onset_tolerance)}
        for program in {n.program for n in ref}:
            found.setdefault(program, [0, 0, 0])[2] += 1
        for i, n in enumerate(ref):
            found[n.program][0] += 1
            found[n.program][1] += i in matched
    for program, (n_ref, hit, n_tracks) in sorted(found.items()):
        name = pretty_midi.program_to_instrument_name(program - 1) if program > 0 else "unknown"
        out.append(
            {"group": "instrument", "name": f"{program} {name}", "tracks": n_tracks, "notes": n_ref}
            | {"note_f1": float("nan"), "note_recall": hit / n_ref}
        )
    return out


def write_evaluation(
    metrics_dir: Path,
    name: str,
    summary: dict,
    rows: list[dict],
    errs: np.ndarray,
    groups: list[dict] = (),
) -> None:
    """metrics/<name>.json, per_track_<name>.csv, onset_errors_<name>.csv (a 10 ms histogram)
    and by_group_<name>.csv (`group_scores`)."""
    import pandas as pd

    from mtlib.io import atomic_path, write_json

    write_json(metrics_dir / f"{name}.json", summary)
    with atomic_path(metrics_dir / f"by_group_{name}.csv") as p:
        pd.DataFrame(list(groups), columns=GROUP_COLUMNS).to_csv(p, index=False)
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
