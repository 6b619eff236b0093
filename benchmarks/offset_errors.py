"""Where the offsets go wrong: every note whose onset a model found (mir_eval's onset and pitch
match, ±`eval.onset_tolerance`: 50 ms), sorted by whether its offset is right (within mir_eval's
tolerance: `eval.offset_ratio` of the note's length, 20%, at least 50 ms), early or late, per
instrument (GM program), and for the demo's piano whether the key release can be heard at all.

The demo's piano labels keep the KEY release (as MusicNet's and the Disklavier recordings' do),
while under the generated sustain pedal the string rings on until the pedal lifts
(`mtlib.sampler`, `mtlib.demo.sounding_until`). A piano note whose sound outlasts its key release
by more than the offset tolerance has a label offset the audio does not show ("under the pedal");
the others ("heard") end where the sound ends. The pedal is not stored with the data: this script
replays each test piece's performance from the corpus and params.yaml (`mtlib.demo.perform`, the
renderer's own code path) and checks that its piano notes are the label file's.

    .venv/bin/python -m benchmarks.offset_errors            # from the repo root, after `dvc repro`
    .venv/bin/python -m benchmarks.offset_errors --json offsets.json

Onset matching then an offset check approximates mir_eval's note-with-offset F1, which matches
onsets, pitches and offsets at once: counts can differ from it by a few notes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import mir_eval
import numpy as np
import pandas as pd

PIANO = 1
SPLITS = {"test": "", "test_unseen": "u", "test_recorded": "r"}
# mir_eval's offset_min_tolerance, which evaluate leaves at its default (mtlib.metrics)
MIN_OFFSET_TOLERANCE = 0.05


def offset_tolerance(ref_intervals: np.ndarray, offset_ratio: float = 0.2) -> np.ndarray:
    """mir_eval's offset tolerance per reference note: `offset_ratio` of its length, at least
    50 ms."""
    lengths = ref_intervals[:, 1] - ref_intervals[:, 0]
    return np.maximum(MIN_OFFSET_TOLERANCE, offset_ratio * lengths)


def classify_offsets(
    ref_intervals: np.ndarray,
    ref_pitches: np.ndarray,
    est_intervals: np.ndarray,
    est_pitches: np.ndarray,
    onset_tolerance: float = 0.05,
    offset_ratio: float = 0.2,
) -> list[tuple[int, str, float]]:
    """(reference index, "ok" | "early" | "late", offset error in tolerances) for each reference
    note whose onset and pitch an estimated note matches (mir_eval.transcription.match_notes
    without offsets, onsets within `onset_tolerance` seconds; MIDI pitches); "ok" within
    `offset_tolerance(.., offset_ratio)`, that is, an error of at most 1 tolerance either way."""
    if not len(ref_intervals) or not len(est_intervals):
        return []
    pairs = mir_eval.transcription.match_notes(
        ref_intervals,
        mir_eval.util.midi_to_hz(np.asarray(ref_pitches, float)),
        est_intervals,
        mir_eval.util.midi_to_hz(np.asarray(est_pitches, float)),
        onset_tolerance=onset_tolerance,
        offset_ratio=None,
    )
    tol = offset_tolerance(ref_intervals, offset_ratio)
    out = []
    for i, j in pairs:
        d = est_intervals[j, 1] - ref_intervals[i, 1]
        out.append((i, "ok" if abs(d) <= tol[i] else ("early" if d < 0 else "late"), d / tol[i]))
    return out


# Reference note lengths (seconds) the breakdown groups by: the tolerance is the 50 ms floor below
# 0.25 s and 20% of the note above, so short and long notes miss in different ways.
LENGTHS = (0.25, 0.5, 1.0, 2.0)


def length_group(length: float) -> str:
    """ "length <a-b> s" for a reference note of `length` seconds (LENGTHS' bounds)."""
    lo = max([0.0, *(b for b in LENGTHS if b <= length)])
    hi = min([b for b in LENGTHS if b > length], default=None)
    return f"length {lo:g}-{hi:g} s" if hi is not None else f"length {lo:g}+ s"


def pedal_hidden(
    ref_intervals: np.ndarray, sounding_end: np.ndarray, offset_ratio: float = 0.2
) -> np.ndarray:
    """True where a note sounds on past its key release by more than the offset tolerance."""
    return sounding_end - ref_intervals[:, 1] > offset_tolerance(ref_intervals, offset_ratio)


def replay_piano(root: Path, cfg) -> dict[str, dict[tuple[int, int], int]]:
    """{test id: {(onset sample, MIDI pitch): sounding end sample}} of every piano note of the
    demo's test pieces, replayed with `cfg` (the demo's DemoConfig); checked against the label
    files."""
    from music21 import corpus

    from mtlib.demo import candidate_order, perform, score_to_piece, sounding_until
    from mtlib.timebase import seconds_to_samples

    pool_of = {path: pool for pool, path in candidate_order(cfg.seed)}
    meta = pd.read_csv(root / "musicnet_metadata.csv", dtype={"id": str})
    out: dict[str, dict[tuple[int, int], int]] = {}
    for tid, path in zip(meta["id"], meta["catalog_name"]):
        labels = root / "test_labels" / f"{tid}.csv"
        if not labels.exists():
            continue
        if path not in pool_of:
            raise SystemExit(f"{labels}: piece {path} is not in the demo's test candidates")
        played = perform(score_to_piece(corpus.parse(path), path, pool_of[path], cfg), cfg)
        piano = [n for n in played.piece.notes if n.program == PIANO] if played else []
        ends = sounding_until(piano, played.pedal) if piano else []
        rate = cfg.sample_rate  # the demo writes its labels at its audio's rate
        notes = {
            (seconds_to_samples(n.onset, rate), n.pitch): seconds_to_samples(end, rate)
            for n, end in zip(piano, ends)
        }
        lab = pd.read_csv(labels)
        lab = lab[lab.instrument == PIANO]
        keys = set(zip(lab.start_time.astype(int), lab.note.astype(int)))
        if keys != set(notes):
            raise SystemExit(
                f"{labels}: the replayed piano notes are not the label file's "
                f"({len(notes)} against {len(lab)}): were the labels built with other params?"
            )
        out[tid] = notes
    return out


def breakdown(
    root: Path,
    predictions: Path,
    model: str,
    split: str,
    piano: dict,
    tolerances: tuple[float, float] = (0.05, 0.2),
) -> dict[str, Counter]:
    """Counts per group ("program <n>", "piano heard", "piano under the pedal", "all", and the
    note's length group, `length_group`) and outcome, plus "notes" (every reference note) and
    "near" (misses within 2 tolerances) for each group; `tolerances`: evaluate's
    (`eval.onset_tolerance`, `eval.offset_ratio`). Both CSVs are read as evaluate
    and `mt score` read them (mtlib.musicnet.read_labels at the track WAV's rate: evaluate writes
    its predictions at that rate)."""
    from mtlib.metrics import label_file_rate
    from mtlib.musicnet import read_labels
    from mtlib.timebase import seconds_to_samples

    counts: dict[str, Counter] = {}
    prefix = SPLITS[split]
    for labels in sorted((root / f"{split}_labels").glob("*.csv")):
        tid = labels.stem
        base = tid[len(prefix) :] if prefix and tid.startswith(prefix) else tid
        est_file = predictions / model / f"{tid}.csv"
        if not est_file.exists():
            raise SystemExit(f"{est_file}: no predictions (run `dvc repro evaluate` first)")
        rate, _ = label_file_rate(labels, default_rate=0)
        if not rate:
            raise SystemExit(f"{labels}: no WAV beside it in {root} to give its sample rate")
        ref, est = read_labels(labels, rate), read_labels(est_file, rate)
        ref_iv = np.array([(n.onset, n.offset) for n in ref]).reshape(-1, 2)
        est_iv = np.array([(n.onset, n.offset) for n in est]).reshape(-1, 2)
        programs = np.array([n.program for n in ref])
        groups = [f"program {p}" for p in programs]
        if base in piano:
            ends = np.array(
                [
                    piano[base].get(
                        (seconds_to_samples(n.onset, rate), n.pitch),
                        seconds_to_samples(n.offset, rate),
                    )
                    for n in ref
                ]
            )
            hidden = pedal_hidden(ref_iv, ends / rate, tolerances[1])
            groups = [
                ("piano under the pedal" if h else "piano heard") if p == PIANO else g
                for g, p, h in zip(groups, programs, hidden)
            ]
        lengths = [length_group(b - a) for a, b in ref_iv]
        for g, length in zip(groups, lengths):
            for key in (g, "all", length):
                counts.setdefault(key, Counter())["notes"] += 1
        for i, outcome, ratio in classify_offsets(
            ref_iv, [n.pitch for n in ref], est_iv, [n.pitch for n in est], *tolerances
        ):
            for key in (groups[i], "all", lengths[i]):
                counts[key][outcome] += 1
                counts[key]["near"] += int(1 < abs(ratio) <= 2)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("data/musicnet_demo"), help="the demo data")
    ap.add_argument(
        "--predictions",
        type=Path,
        default=Path("data/predictions"),
        help="evaluate's note CSVs: <dir>/<model>/<track id>.csv",
    )
    ap.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="the params the demo data was built with (demo.*) and evaluated with (eval.*)",
    )
    ap.add_argument("--models", nargs="+", default=["ctc", "seq2seq"])
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    ap.add_argument("--json", type=Path, help="also write every count here")
    args = ap.parse_args(argv)
    from mtlib.demo import DemoConfig
    from mtlib.params import config_from, load_params, section

    params = load_params(args.params)
    cfg = config_from(DemoConfig, section(params, "demo"), "demo")
    tolerances = (float(params["eval"]["onset_tolerance"]), float(params["eval"]["offset_ratio"]))
    piano = replay_piano(args.root, cfg)
    result = {}
    for model in args.models:
        for split in args.splits:
            counts = breakdown(args.root, args.predictions, model, split, piano, tolerances)
            result[f"{model}/{split}"] = {g: dict(c) for g, c in counts.items()}
            print(
                f"\n{model} {split}: matched onsets whose offset is ok / early / late "
                "(near: the misses within 2 tolerances)"
            )
            by_length = [g for g in map(length_group, (0.0, *LENGTHS)) if g in counts]
            rest = sorted(
                (g for g in counts if g not in by_length), key=lambda g: -counts[g]["notes"]
            )
            for g in [*rest, *by_length]:
                c = counts[g]
                found, missed = c["ok"] + c["early"] + c["late"], c["early"] + c["late"]
                if not found:
                    continue
                near = f"{c['near'] / missed:.0%}" if missed else "-"
                print(
                    f"  {g:24s} {c['notes']:5d} notes, {found:5d} found: "
                    + " / ".join(f"{c[k] / found:.0%}" for k in ("ok", "early", "late"))
                    + f"  (near {near})"
                )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
