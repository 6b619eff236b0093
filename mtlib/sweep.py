"""The decode_sweep stage: each model's decoding chosen on whole val tracks.

A grid over decode.* keys (`sweep.<kind>` in params.yaml): the onset keys first, by val note
F1, then the re-onset gate on the best config, by val note F1 too, then the offset keys on the
best config, by val note-with-offset F1 plus a quarter of frame F1 (`sweep.frame_f1_weight`),
then the legato rule on the best of those, ranked the same way.
The model runs once per distinct model-run key (`DecodeConfig.model_run_key`); the rest only
re-post-processes.
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
    SCORE_KEYS,
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
    "frame_relative",
    "frame_scope",
    "frame_cut_frames",
    "offset_threshold",
    "offset_hold",
    "offset_hold_frames",
    "offset_shift_frames",
)

# Keys that act on the notes the other note keys give (`merge_reonsets` in `refine_notes`, after
# the onset refinement and confirmation): the sweep tries them on the best config of the rest,
# ranked by note F1, so they add configs rather than multiply the grid.
TAIL_KEYS = ("reonset_threshold",)

# Offset keys tried on the best config of the OFFSET_KEYS (whose grid is scored with these at
# their decode.* values), ranked as the offset keys are: they add configs rather than multiply
# the offset grid, the costliest part of the sweep.
OFFSET_TAIL_KEYS = ("legato_semitones",)


def acting_offsets(values: dict[str, Any]) -> tuple:
    """The offset keys' values that can change the notes, given the others (`refine_notes`): with
    `frame_threshold` 0 the frame head ends no note, so its relative floor, scope, cut and the
    offset head's threshold (and its hold) do nothing; with `frame_scope` all no note keeps its tokens'
    NOTE_OFF, so the cut does nothing; with `offset_threshold` 0 no release peak is looked for, so
    `offset_hold` does nothing, and with `offset_hold` 0 neither does its window. Two offset
    configs with the same value decode alike; the sweep scores one."""

    def get(key):
        return values.get(key, getattr(DecodeConfig, key))

    hold = {"offset_hold", "offset_hold_frames"}
    if get("frame_threshold") <= 0:
        inert = {"frame_scope", "frame_relative", "frame_cut_frames", "offset_threshold", *hold}
    else:
        inert = {"frame_cut_frames"} if get("frame_scope") == "all" else set()
        if get("offset_threshold") <= 0:
            inert |= hold
        elif get("offset_hold") <= 0:
            inert.add("offset_hold_frames")
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
    frame_weight: float = 0.0,
):
    """The decode_sweep search. Every config of `grid` (over `base`) but the TAIL_KEYS and
    OFFSET_KEYS and OFFSET_TAIL_KEYS is scored by `score(values) -> {"note/f1", "note_offset/f1",
    ...}` and ranked by note F1 (onsets only); then the TAIL_KEYS the grid has are tried on the
    best config, ranked by note F1 too; then the OFFSET_KEYS (they cannot change that score),
    every combination that decodes differently (`acting_offsets`), on the best config and ranked
    by note-with-offset F1 plus `frame_weight` x frame F1 (`score` then returns "frame/f1" too);
    then the OFFSET_TAIL_KEYS on the best of those, ranked the same way. Ties go to the config
    scored first.

    Returns (rows: the grid keys' values and scores of every config scored, the grid keys in
    table order, the chosen decode config, the chosen row)."""
    grid = dict(grid)
    offset_grid = {k: grid.pop(k) for k in OFFSET_KEYS if k in grid}
    tail_grid = {k: grid.pop(k) for k in TAIL_KEYS if k in grid}
    offset_tail = {k: grid.pop(k) for k in OFFSET_TAIL_KEYS if k in grid}
    keys = sorted(grid) + sorted(tail_grid) + sorted(offset_grid) + sorted(offset_tail)
    late = {**tail_grid, **offset_grid, **offset_tail}
    base = {**{k: getattr(DecodeConfig, k) for k in late}, **base}
    rows: list[dict[str, Any]] = []

    def scored(values):
        rows.append({**{k: values[k] for k in keys}, **score(values)})
        log(rows[-1])
        return rows[-1]

    def note_rank(row):
        return row["note/f1"]

    def by_offsets(row):
        return offset_rank(row, frame_weight)

    def try_each(tail: dict, rank, best: dict) -> dict:
        """Each value of `tail`'s keys once, on the chosen config (`best`'s row): the best row
        of them all, ranked by `rank` (ties to the config scored first); `chosen` takes it."""
        tried = [best] + [
            scored(values)
            for values in sweep_grid(chosen, tail)
            if any(values[k] != chosen[k] for k in tail)
        ]
        top = max(tried, key=rank)
        chosen.update({k: python_value(top[k]) for k in tail})
        return top

    best = max((scored(values) for values in sweep_grid(base, grid)), key=note_rank)
    chosen = {**base, **{k: python_value(best[k]) for k in sorted(grid)}}
    if tail_grid:
        best = try_each(tail_grid, note_rank, best)
    if offset_grid:
        tried, seen = [best], {acting_offsets(chosen)}
        for values in sweep_grid(chosen, offset_grid):
            if (key := acting_offsets(values)) not in seen:
                seen.add(key)
                tried.append(scored(values))
        best = max(tried, key=by_offsets)
        chosen.update({k: python_value(best[k]) for k in offset_grid})
    if offset_tail:
        best = try_each(offset_tail, by_offsets, best)
    return rows, keys, chosen, best


def offset_rank(row: dict, frame_weight: float) -> float:
    """How the sweep ranks offset configs: note-with-offset F1, plus `frame_weight` x frame F1.
    A small weight decides between configs whose offsets note-with-offset F1 scores alike (its
    tolerance, 20% of a note's length, hardly sees a frame more or less; frame F1 counts every
    frame of every note)."""
    return row["note_offset/f1"] + (frame_weight * row["frame/f1"] if frame_weight else 0.0)


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
    frame_weight = float(section(params, "sweep").get("frame_f1_weight", 0.0))
    with atomic_dir(out_dir) as tmp:
        for kind in KINDS:
            checkpoint = Path(models_dir) / f"{kind}.pt"
            transcriber = Transcriber.load(checkpoint, decoding=decode_config(base))
            tracks = load_tracks(manifest_path, features_dir, "val")
            grid = dict(section(params, f"sweep.{kind}") or {})
            table, chosen, scores = sweep_model(transcriber, tracks, base, grid, frame_weight)
            shutil.copyfile(
                write_decoding(checkpoint, decode_config(chosen), scores), tmp / f"best_{kind}.json"
            )
            with atomic_path(Path(plots_dir) / f"sweep_{kind}.csv") as p:
                table.to_csv(p, index=False)


def sweep_model(
    transcriber,
    tracks: Sequence[TrackRef],
    base: dict[str, Any],
    grid: dict[str, list],
    frame_weight: float = 0.0,
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
            **score_tracks(candidate, tracks, refs, cache=cache, keys=(*SCORE_KEYS, "frame/f1")),
            "seconds": time.perf_counter() - t0,
        }

    def log(row):
        print(f"[sweep {transcriber.kind}] " + ", ".join(f"{k}={v}" for k, v in row.items()))

    rows, keys, chosen, best = run_sweep(base, grid, score, log=log, frame_weight=frame_weight)
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
