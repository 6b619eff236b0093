"""Which decoding rule ends the notes whose offsets miss: each model's chosen decoding (the bundle
decode_sweep wrote beside its checkpoint) on the val tracks, then again with one offset rule
switched off at a time, and what each switch does to every note whose onset and pitch were
found (mir_eval's onset match, ±`eval.onset_tolerance`).

For each switch it counts the notes that were early and become right ("early fixed"), late and
become right, and right and go wrong ("broken"), with val note-with-offset F1 and frame F1 as
the sweep scores them. A rule that ends many notes early which nothing else would is where the
offsets can still gain; a rule whose switch breaks more than it fixes is earning its place. Val,
not test: the sweep chooses on val, so reading the rules there keeps the test splits unseen.

    .venv/bin/python -m benchmarks.offset_rules            # from the repo root, after `dvc repro`

R34 (Intel host, its own models): of the 326 early CTC notes on val, switching off the legato
rule fixes 31 (and breaks 142 right ones), the offset head's peaks 34 (breaking 235): the frame
head's own threshold ends most of the rest (BENCHMARKS.md, R34).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.offset_errors import classify_offsets
from mtlib.pipeline import KINDS

# One offset rule off at a time (decode.* keys; docs/decoding.md), and all of them at once: the
# frame head's threshold alone.
SWITCHES = {
    "legato rule off (legato_semitones 0)": {"legato_semitones": 0},
    "offset head off (offset_threshold 0)": {"offset_threshold": 0.0},
    "hold off (offset_hold 0)": {"offset_hold": 0.0},
    "relative floor off (frame_relative 0)": {"frame_relative": 0.0},
    "frame threshold halved": {"frame_threshold": 0.5},  # a factor: see `switched`
    "frame head's threshold alone": {
        "legato_semitones": 0,
        "offset_threshold": 0.0,
        "frame_relative": 0.0,
    },
}


def switched(decoding, change: dict):
    """`decoding` with `change` applied (frame_threshold as a factor), or None when the change
    would leave it as it is (the rule is already off)."""
    values = dict(change)
    if "frame_threshold" in values:
        values["frame_threshold"] = decoding.frame_threshold * values["frame_threshold"]
    if all(getattr(decoding, k) == v for k, v in values.items()):
        return None
    return dataclasses.replace(decoding, **values)


def effects(base: dict, other: dict) -> Counter:
    """How the outcomes of the found notes moved from `base` to `other` ({note: "ok" | "early" |
    "late"}): "early fixed", "late fixed", "ok -> early", "ok -> late" (a note found in one only
    is not counted)."""
    out = Counter()
    for key, was in base.items():
        now = other.get(key)
        if now is None or now == was:
            continue
        if now == "ok":
            out[f"{was} fixed"] += 1
        elif was == "ok":
            out[f"ok -> {now}"] += 1
    return out


def outcomes(transcriber, outputs: dict, refs: dict, tolerances) -> tuple[dict, dict]:
    """({(track, reference index): outcome}, {"note_offset/f1", "frame/f1": mean over tracks}) of
    `transcriber`'s decoding of the cached model `outputs`."""
    from mtlib.metrics import note_metrics

    found, rows = {}, []
    for tid, out in outputs.items():
        notes = transcriber.notes_from(out).notes
        ref = refs[tid]
        ref_iv = np.array([(n.onset, n.offset) for n in ref]).reshape(-1, 2)
        est_iv = np.array([(n.onset, n.offset) for n in notes]).reshape(-1, 2)
        pairs = classify_offsets(
            ref_iv, [n.pitch for n in ref], est_iv, [n.pitch for n in notes], *tolerances
        )
        found.update({(tid, int(i)): outcome for i, outcome, _ in pairs})
        rows.append(note_metrics(ref, notes, onset_tolerance=tolerances[0]))
    keys = ("note_offset/f1", "frame/f1")
    return found, {k: float(np.mean([r[k] for r in rows])) for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, default=Path("data/models"))
    ap.add_argument("--models", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--manifest", type=Path, default=Path("data/manifest.parquet"))
    ap.add_argument("--features", type=Path, default=Path("data/features"))
    ap.add_argument("--split", default="val", help="manifest split (val: what the sweep chose on)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="eval.* tolerances")
    args = ap.parse_args(argv)
    from mtlib.params import load_params
    from mtlib.pipeline import load_tracks, reference_notes, track_features
    from mtlib.transcriber import Transcriber

    params = load_params(args.params)
    tolerances = (float(params["eval"]["onset_tolerance"]), float(params["eval"]["offset_ratio"]))
    tracks = load_tracks(args.manifest, args.features, args.split)
    for kind in args.models:
        base = Transcriber.load(args.models_dir / f"{kind}.pt")
        refs = {t.id: reference_notes(t, base.vocab) for t in tracks}
        outputs = {t.id: base.run(track_features(t)) for t in tracks}
        found, scores = outcomes(base, outputs, refs, tolerances)
        tally = Counter(found.values())
        print(
            f"\n{kind} on {args.split} ({len(tracks)} tracks), its chosen decoding: {len(found)} "
            f"notes found, offsets ok / early / late {tally['ok']} / {tally['early']} / "
            f"{tally['late']}; note+offset F1 {scores['note_offset/f1']:.4f}, frame F1 "
            f"{scores['frame/f1']:.4f}"
        )
        for name, change in SWITCHES.items():
            decoding = switched(base.decoding, change)
            if decoding is None:
                print(f"  {name:40s} (already off in the chosen decoding)")
                continue
            other, s = outcomes(
                dataclasses.replace(base, decoding=decoding), outputs, refs, tolerances
            )
            e = effects(found, other)
            print(
                f"  {name:40s} early fixed {e['early fixed']:4d}, late fixed {e['late fixed']:4d}, "
                f"broken {e['ok -> early']:4d} early + {e['ok -> late']:4d} late; note+offset F1 "
                f"{s['note_offset/f1'] - scores['note_offset/f1']:+.4f}, frame F1 "
                f"{s['frame/f1'] - scores['frame/f1']:+.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
