"""Tuning robustness: note F1 of a model on a test split played some cents sharp or flat.

Each track is read as if recorded at rate * 2**(cents / 1200) (pitch and tempo move together, as a
tape played fast; the labels' times are scaled by the same factor), transcribed with the
checkpoint's own decoding (its `<name>.decode.json`), and scored like `evaluate` (mir_eval note F1,
onset ±50 ms, mean over tracks). Real ensembles tune to A = 440-446 Hz (0 to +23 cents), period
bands lower, and pianos drift; the demo's splits are all at A = 440 Hz.

    .venv/bin/python -m benchmarks.bench_tuning --model data/models/ctc.pt --split test_unseen -30 -15 0 15 30
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def main() -> None:
    import numpy as np
    import soundfile as sf

    from mtlib import metrics as M
    from mtlib.pipeline import load_tracks, reference_notes
    from mtlib.transcriber import Transcriber

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cents", nargs="+", type=float, help="Detunings to measure, in cents.")
    ap.add_argument("--model", type=Path, default=Path("data/models/ctc.pt"))
    ap.add_argument("--split", default="test_unseen")
    ap.add_argument("--manifest", default="data/manifest.parquet")
    ap.add_argument("--features", default="data/features")
    args = ap.parse_args()
    transcriber = Transcriber.load(args.model)
    tracks = load_tracks(args.manifest, args.features, args.split)
    print(f"| {args.model} on {args.split} | note F1 | P | R |\n|---|---|---|---|")
    for cents in args.cents:
        ratio = 2 ** (cents / 1200)
        rows = []
        for track in tracks:
            audio, rate = sf.read(track.audio, dtype="float32")
            est = transcriber(audio, int(round(rate * ratio))).notes
            ref = [
                replace(n, onset=n.onset / ratio, offset=n.offset / ratio)
                for n in reference_notes(track, transcriber.vocab)
            ]
            rows.append(M.note_metrics(ref, est))
        mean = {
            k: float(np.mean([r[k] for r in rows]))
            for k in ("note/f1", "note/precision", "note/recall")
        }
        print(
            f"| {cents:+.0f} cents | {mean['note/f1']:.4f} | {mean['note/precision']:.3f} | "
            f"{mean['note/recall']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
