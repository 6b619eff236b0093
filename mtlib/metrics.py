"""Transcription metrics: the field's (mir_eval) on notes, the seed's own on tokens, and the
onset-error diagnostic. Every function returns plain floats in flat dicts keyed like
"note/f1", so results go straight into dvclive and `metrics/*.json`.

Conventions for empty input (mir_eval warns and returns 0 there): when both reference and
estimate are empty every score is 1.0 (nothing to find, nothing wrongly found); when only one
side is empty, precision, recall and F1 are 0.0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from mtlib.notes import Note, notes_to_arrays

FRAME_HOP_SECONDS = 0.01  # the 10 ms grid of mir_eval.multipitch, as in MAPS/MusicNet papers
MIN_DURATION = 1e-3  # mir_eval rejects intervals of zero length; decoders may emit them
TOLERANCES = (0.025, 0.05, 0.1, 0.2)


# --- note level (mir_eval.transcription) -------------------------------------------------


def _note_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    """mir_eval's (intervals, Hz) with every duration at least MIN_DURATION."""
    intervals, pitches = notes_to_arrays(notes)
    if len(intervals):
        intervals[:, 1] = np.maximum(intervals[:, 1], intervals[:, 0] + MIN_DURATION)
    return intervals, pitches


def _prf(precision: float, recall: float, f1: float, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}/precision": float(precision),
        f"{prefix}/recall": float(recall),
        f"{prefix}/f1": float(f1),
    }


def _empty_prf(n_ref: int, n_est: int, prefix: str) -> dict[str, float] | None:
    """The convention for an empty side (see module docstring), or None if both sides hold data."""
    if n_ref and n_est:
        return None
    score = 1.0 if n_ref == n_est == 0 else 0.0
    return _prf(score, score, score, prefix)


def _note_prf(
    ref: Sequence[Note],
    est: Sequence[Note],
    onset_tolerance: float,
    offset_ratio: float | None,
    prefix: str,
):
    import mir_eval

    empty = _empty_prf(len(ref), len(est), prefix)
    if empty is not None:
        return empty
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        *_note_arrays(ref),
        *_note_arrays(est),
        onset_tolerance=onset_tolerance,
        offset_ratio=offset_ratio,
    )
    return _prf(p, r, f, prefix)


def frame_metrics(
    ref_notes: Sequence[Note], est_notes: Sequence[Note], hop: float = FRAME_HOP_SECONDS
) -> dict[str, float]:
    """Frame-level P/R/F1 as mir_eval.multipitch.metrics defines them (true positives summed over
    frames, over the estimated or reference pitches summed over frames), both note lists sampled
    on one `hop` grid.

    Counted here rather than through mir_eval: mir_eval matches each frame's pitches one by one
    within a quarter tone (a bipartite match per frame, in Python), which took 92% of the decode
    sweep's time. Notes sit on the MIDI grid, where a pitch can only match itself, so the true
    positives are the intersection of the two piano rolls; tests/test_metrics.py checks that the
    scores equal mir_eval.multipitch.metrics' exactly."""
    end = max([n.offset for n in (*ref_notes, *est_notes)], default=0.0)
    n_frames = int(math.ceil(end / hop)) + 1
    ref, est = _roll(ref_notes, n_frames, hop), _roll(est_notes, n_frames, hop)
    n_ref, n_est = ref.sum(), est.sum()
    empty = _empty_prf(int(n_ref), int(n_est), "frame")
    if empty is not None:
        return empty
    true_positives = float(np.logical_and(ref, est).sum())
    p, r = true_positives / n_est, true_positives / n_ref  # mir_eval's own expressions
    return _prf(p, r, 2 * p * r / (p + r) if p + r else 0.0, "frame")


def _roll(notes: Sequence[Note], n_frames: int, hop: float) -> np.ndarray:
    """Notes → a boolean piano roll (n_frames, 128): pitch p sounds at frame t (time t * hop)
    when onset <= t * hop < offset."""
    roll = np.zeros((n_frames, 128), dtype=bool)
    for n in notes:
        first = int(math.ceil(n.onset / hop - 1e-9))
        stop = int(math.ceil(n.offset / hop - 1e-9))
        roll[max(first, 0) : min(stop, n_frames), n.pitch] = True
    return roll


def note_metrics(
    ref_notes: Sequence[Note],
    est_notes: Sequence[Note],
    onset_tolerance: float = 0.05,
    offset_ratio: float = 0.2,
) -> dict[str, float]:
    """The headline scores of one track: note (onset only), note with offset, and frame P/R/F1.

    Keys: note/{precision,recall,f1}, note_offset/{...}, frame/{...}."""
    return {
        **_note_prf(ref_notes, est_notes, onset_tolerance, None, "note"),
        **_note_prf(ref_notes, est_notes, onset_tolerance, offset_ratio, "note_offset"),
        **frame_metrics(ref_notes, est_notes),
    }


def f1_at_tolerances(
    ref_notes: Sequence[Note], est_notes: Sequence[Note], tolerances: Iterable[float] = TOLERANCES
) -> dict[str, float]:
    """Onset-only note F1 at several onset tolerances, keyed "note/f1@50ms": shows late but heard notes."""
    return {
        f"note/f1@{round(tol * 1000)}ms": _note_prf(ref_notes, est_notes, tol, None, "note")[
            "note/f1"
        ]
        for tol in tolerances
    }


def match_notes(
    ref_notes: Sequence[Note],
    est_notes: Sequence[Note],
    onset_tolerance: float = 0.05,
    offset_ratio: float | None = None,
) -> list[tuple[int, int]]:
    """One-to-one (ref index, est index) pairs matched by mir_eval (pitch within 50 cents)."""
    import mir_eval

    if not ref_notes or not est_notes:
        return []
    pairs = mir_eval.transcription.match_notes(
        *_note_arrays(ref_notes),
        *_note_arrays(est_notes),
        onset_tolerance=onset_tolerance,
        offset_ratio=offset_ratio,
    )
    return sorted((int(i), int(j)) for i, j in pairs)


# --- onset timing diagnostic ---------------------------------------------------------------


def onset_errors(
    ref_notes: Sequence[Note], est_notes: Sequence[Note], tolerance: float = 0.2
) -> np.ndarray:
    """Signed onset errors (estimate − reference, seconds) of notes matched within `tolerance`.

    A generous tolerance keeps late-but-heard notes in the sample, so the distribution shows a
    model's latency (positive = late). Ordered by reference note."""
    ref_onsets = np.array([n.onset for n in ref_notes], dtype=float)
    est_onsets = np.array([n.onset for n in est_notes], dtype=float)
    pairs = match_notes(ref_notes, est_notes, onset_tolerance=tolerance)
    if not pairs:
        return np.zeros(0)
    ref_idx, est_idx = np.array(pairs).T
    return est_onsets[est_idx] - ref_onsets[ref_idx]


def onset_error_summary(errors: Sequence[float] | np.ndarray) -> dict[str, float]:
    """median, p10, p90, mean (seconds) and count of onset errors; NaN statistics when empty."""
    errors = np.asarray(errors, dtype=float)
    if errors.size == 0:
        return {"median": math.nan, "p10": math.nan, "p90": math.nan, "mean": math.nan, "count": 0}
    p10, median, p90 = np.percentile(errors, [10, 50, 90])
    stats = {"median": median, "p10": p10, "p90": p90, "mean": errors.mean()}
    return {**{k: float(v) for k, v in stats.items()}, "count": int(errors.size)}


# --- token level (the seed's own) ----------------------------------------------------------


def edit_distance(ref: Sequence[int], hyp: Sequence[int]) -> int:
    """Levenshtein distance between two token sequences (unit costs)."""
    # torchaudio.functional.edit_distance is a pure-Python double loop; this vectorizes each DP row
    ref_arr, hyp_arr = np.asarray(ref), np.asarray(hyp)
    cols = np.arange(len(hyp_arr) + 1)
    row = cols.copy()  # distances from an empty ref prefix
    for i, token in enumerate(ref_arr, start=1):
        diag_or_up = np.empty_like(row)
        diag_or_up[0] = i
        diag_or_up[1:] = np.minimum(
            row[:-1] + (hyp_arr != token), row[1:] + 1
        )  # substitute / delete
        # insertions chain along the row: d[j] = min_k<=j (diag_or_up[k] + j - k)
        row = np.minimum.accumulate(diag_or_up - cols) + cols
    return int(row[-1])


def _strip(tokens: Sequence[int], ignore: Iterable[int]) -> list[int]:
    drop = set(ignore)
    return [int(t) for t in tokens if int(t) not in drop]


def ter(ref_tokens: Sequence[int], hyp_tokens: Sequence[int], ignore: Iterable[int] = ()) -> float:
    """Token error rate: edit distance / len(ref), after dropping ids in `ignore` (e.g. PAD, EOS).

    An empty reference gives len(hyp) (each hypothesis token is one error), so 0.0 when both are empty."""
    ref, hyp = _strip(ref_tokens, ignore), _strip(hyp_tokens, ignore)
    return edit_distance(ref, hyp) / max(len(ref), 1)


def token_counts(
    ref_tokens: Sequence[int], hyp_tokens: Sequence[int], ignore: Iterable[int] = ()
) -> tuple[int, int, int]:
    """(matches, len(ref), len(hyp)) over token multisets, order ignored: matches =
    Σ_t min(count_ref(t), count_hyp(t)). Summed over segments, these give micro token F1."""
    ref, hyp = Counter(_strip(ref_tokens, ignore)), Counter(_strip(hyp_tokens, ignore))
    return sum((ref & hyp).values()), sum(ref.values()), sum(hyp.values())


def token_f1(
    ref_tokens: Sequence[int], hyp_tokens: Sequence[int], ignore: Iterable[int] = ()
) -> float:
    """Micro-F1 over token multisets (order ignored), from `token_counts`."""
    matches, n_ref, n_hyp = token_counts(ref_tokens, hyp_tokens, ignore)
    if n_ref == 0 or n_hyp == 0:
        return 1.0 if n_ref == n_hyp else 0.0
    return 2.0 * matches / (n_ref + n_hyp)


def onset_prf_frames(
    ref_onsets: Iterable[tuple[int, int]],
    est_onsets: Iterable[tuple[int, int]],
    tolerance_frames: int,
) -> tuple[float, float, float]:
    """Precision, recall, F1 of (frame, pitch) onsets: same pitch, |Δframe| <= tolerance, one-to-one."""
    import mir_eval

    ref_by_pitch: dict[int, list[int]] = {}
    est_by_pitch: dict[int, list[int]] = {}
    for frame, pitch in ref_onsets:
        ref_by_pitch.setdefault(int(pitch), []).append(int(frame))
    for frame, pitch in est_onsets:
        est_by_pitch.setdefault(int(pitch), []).append(int(frame))
    n_ref = sum(map(len, ref_by_pitch.values()))
    n_est = sum(map(len, est_by_pitch.values()))
    if n_ref == 0 or n_est == 0:
        score = 1.0 if n_ref == n_est else 0.0
        return score, score, score
    matched = sum(
        len(
            mir_eval.util.match_events(
                np.array(ref_by_pitch[p], float), np.array(est_by_pitch[p], float), tolerance_frames
            )
        )
        for p in ref_by_pitch.keys() & est_by_pitch.keys()
    )
    precision, recall = matched / n_est, matched / n_ref
    return precision, recall, (2 * precision * recall / (precision + recall) if matched else 0.0)


def onset_f1_frames(
    ref_onsets: Iterable[tuple[int, int]],
    est_onsets: Iterable[tuple[int, int]],
    tolerance_frames: int,
) -> float:
    """F1 of (frame, pitch) onsets within ±tolerance_frames (the seed's ±2 / ±3-frame onset F1)."""
    return onset_prf_frames(ref_onsets, est_onsets, tolerance_frames)[2]


# --- aggregation --------------------------------------------------------------------------


def mean_metrics(per_track: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average each key over the tracks that have it, ignoring NaN (e.g. onset errors of a silent track)."""
    keys = sorted({k for d in per_track for k in d})
    means = {}
    for key in keys:
        values = np.array([d[key] for d in per_track if key in d], dtype=float)
        values = values[~np.isnan(values)]
        means[key] = float(values.mean()) if values.size else math.nan
    return means


# --- scoring MusicNet-format label files (`mt score`) ---------------------------------------


def label_file_rate(csv_path: str | Path, default_rate: int) -> tuple[int, str]:
    """(the sample rate a label CSV's sample indices refer to, where that came from):

    1. its WAV's rate when the CSV sits in the MusicNet layout (<root>/<split>_labels/<id>.csv
       beside <root>/<split>_data/<id>.wav);
    2. the rate `mt transcribe` recorded in `<name>.json` beside the CSV it wrote;
    3. else `default_rate` (a CSV alone does not say its rate)."""
    import json

    from mtlib.audio import audio_info
    from mtlib.musicnet import AUDIO_SUFFIXES
    from mtlib.transcriber import SIDECAR_FORMAT

    csv_path = Path(csv_path)
    folder = csv_path.parent.name
    if folder.endswith("_labels"):
        data_dir = csv_path.parent.parent / (folder[: -len("_labels")] + "_data")
        for suffix in AUDIO_SUFFIXES:
            audio = data_dir / (csv_path.stem + suffix)
            if audio.exists():
                return audio_info(audio)[0], f"its audio {audio}"
    sidecar = csv_path.with_suffix(".json")
    if sidecar.is_file():
        try:
            blob = json.loads(sidecar.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            blob = None  # some other JSON file (or none): not ours to judge
        if isinstance(blob, dict) and blob.get("format") == SIDECAR_FORMAT:
            rate = blob.get("csv_sample_rate")
            if blob.get("csv") == csv_path.name and isinstance(rate, int) and rate > 0:
                return rate, str(sidecar)
    return default_rate, "the default rate"


def pair_label_files(ref: str | Path, pred: str | Path) -> list[tuple[Path, Path]]:
    """(reference CSV, prediction CSV) pairs: two files, or two folders matched by file name.

    Raises FileNotFoundError naming a missing path or the references that have no prediction."""
    ref, pred = Path(ref), Path(pred)
    for path in (ref, pred):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    if ref.is_file() and pred.is_file():
        return [(ref, pred)]
    if ref.is_dir() != pred.is_dir():
        raise ValueError(f"{ref}, {pred}: give two CSV files or two folders, not one of each")
    refs = sorted(ref.glob("*.csv"))
    if not refs:
        raise FileNotFoundError(f"{ref}: no .csv label files in this folder")
    missing = [p.name for p in refs if not (pred / p.name).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileNotFoundError(f"{pred}: no prediction for {shown}")
    return [(p, pred / p.name) for p in refs]


def score_label_files(
    ref_csv: str | Path,
    pred_csv: str | Path,
    default_rate: int = 44100,
    onset_tolerance: float = 0.05,
    offset_ratio: float = 0.2,
    ref_rate: int | None = None,
    est_rate: int | None = None,
) -> dict[str, float]:
    """note_metrics of two MusicNet-format label CSVs, each timed at `ref_rate` / `est_rate` when
    given, else by label_file_rate."""
    from mtlib.musicnet import read_labels

    ref_rate = ref_rate or label_file_rate(ref_csv, default_rate)[0]
    est_rate = est_rate or label_file_rate(pred_csv, default_rate)[0]
    ref = read_labels(ref_csv, ref_rate)
    est = read_labels(pred_csv, est_rate)
    return note_metrics(ref, est, onset_tolerance, offset_ratio)
