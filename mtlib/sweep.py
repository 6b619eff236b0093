"""The decode_sweep stage: each model's decoding chosen on whole val tracks.

A grid over decode.* keys (`sweep.<kind>` in params.yaml): the onset keys first, by val note
F1, then the offset keys on the best onset config, by val note-with-offset F1. The model runs
once per distinct model-run key (`DecodeConfig.model_run_key`); the rest only re-post-processes.
The choice is written beside the checkpoint, tied to it by SHA-256 (`mtlib.transcriber.write_decoding`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtlib.decode import DecodeConfig
from mtlib.pipeline import (
    KINDS,
    TrackRef,
    decode_config,
    load_tracks,
    reference_notes,
    score_tracks,
)

# Keys that move offsets only: they cannot change onset-only note F1, so the sweep tries them
# after the rest, on the best config, ranked by note-with-offset F1.
OFFSET_KEYS = (
    "frame_threshold",
    "frame_scope",
    "frame_cut_frames",
    "offset_threshold",
    "offset_shift_frames",
)


def acting_offsets(values: dict[str, Any]) -> tuple:
    """The offset keys' values that can change the notes, given the others (`refine_notes`): with
    `frame_threshold` 0 the frame head ends no note, so its scope, cut and the offset head's
    threshold do nothing; with `frame_scope` all no note keeps its tokens' NOTE_OFF, so the cut
    does nothing. Two offset configs with the same value decode alike; the sweep scores one."""
    inert = set()
    if values.get("frame_threshold", DecodeConfig.frame_threshold) <= 0:
        inert = {"frame_scope", "frame_cut_frames", "offset_threshold"}
    elif values.get("frame_scope", DecodeConfig.frame_scope) == "all":
        inert = {"frame_cut_frames"}
    return tuple((k, values[k]) for k in OFFSET_KEYS if k in values and k not in inert)


def sweep_grid(base: dict[str, Any], grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values over `base` (keys the grid does not vary stay)."""
    keys = sorted(grid)
    return [
        {**base, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))
    ] or [dict(base)]


def run_sweep(
    base: dict[str, Any],
    grid: dict[str, list],
    score: Callable[[dict], dict],
    log: Callable[[dict], None] = lambda row: None,
):
    """The decode_sweep search. Every config of `grid` (over `base`) but the OFFSET_KEYS is scored
    by `score(values) -> {"note/f1", "note_offset/f1", ...}` and ranked by note F1 (onsets only);
    then the OFFSET_KEYS the grid has (they cannot change that score) are tried, every
    combination that decodes differently (`acting_offsets`), on the best config and ranked by
    note-with-offset F1. Ties go to the config scored first.

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
    chosen = {**base, **{k: python_value(best[k]) for k in sorted(grid)}}
    if offset_grid:
        tried, seen = [best], {acting_offsets(chosen)}
        for values in sweep_grid(chosen, offset_grid):
            if (key := acting_offsets(values)) not in seen:
                seen.add(key)
                tried.append(scored(values))
        best = max(tried, key=lambda r: r["note_offset/f1"])
        chosen.update({k: python_value(best[k]) for k in offset_grid})
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
        for kind in KINDS:
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


def python_value(x):
    """A numpy scalar from a pandas row as the Python value it holds (for JSON and DecodeConfig)."""
    return x.item() if hasattr(x, "item") else x
