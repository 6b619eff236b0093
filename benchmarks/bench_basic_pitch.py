"""A peer reference: Basic Pitch 0.4.0 (Spotify, Apache-2.0) on the demo's test splits, scored
exactly as `evaluate` scores our models (mir_eval note F1, onset ±50 ms, via `mt score`).

Basic Pitch is kept out of the project's requirements: this script builds its own virtual
environment in `.bench/basic-pitch-venv` (git-ignored) with `basic-pitch==0.4.0 --no-deps` and the
plain dependencies its ONNX model needs (no TensorFlow; it runs offline from its wheel), runs it
there on every file of `test_data/`, `test_unseen_data/` and `test_recorded_data/`, writes its notes as MusicNet label
CSVs, and scores them against the labels with the project's `mt score`.

    .venv/bin/python -m benchmarks.bench_basic_pitch        # from the repo root, after `dvc repro`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import venv
from pathlib import Path

VENV = Path(".bench/basic-pitch-venv")
PACKAGES = [
    "onnxruntime",
    "resampy<0.4.3",
    "scikit-learn",
    "librosa",
    "mir_eval",
    "pretty_midi",
    "soundfile",
    "scipy",
    "numpy<2.3",
    "typing_extensions",
]


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.create(VENV, with_pip=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run(pip + ["--no-deps", "basic-pitch==0.4.0"], check=True)
        subprocess.run(pip + PACKAGES, check=True)
    return python


def transcribe_folder(audio_dir: Path, out_dir: Path) -> None:
    """Runs inside the Basic Pitch venv: every WAV → a MusicNet CSV of Basic Pitch's notes."""
    import csv

    import soundfile as sf
    from basic_pitch import ICASSP_2022_MODEL_PATH
    from basic_pitch.inference import Model, predict

    model = Model(ICASSP_2022_MODEL_PATH)  # the bundled nmp.onnx
    out_dir.mkdir(parents=True, exist_ok=True)
    for wav in sorted(audio_dir.glob("*.wav")):
        rate = sf.info(str(wav)).samplerate
        _, _, notes = predict(str(wav), model)  # (start s, end s, pitch, amplitude, bends)
        with open(out_dir / f"{wav.stem}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            # mtlib.musicnet.LABEL_COLUMNS (mtlib is not installed in this venv)
            w.writerow("start_time end_time instrument note start_beat end_beat note_value".split())
            for start, end, pitch, *_ in sorted(notes, key=lambda n: (n[0], n[2])):
                a, b = round(start * rate), round(end * rate)
                if b > a:
                    w.writerow([a, b, 0, int(pitch), "", "", ""])
        print(f"{wav}: {len(notes)} notes", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root", type=Path, default=Path("data/musicnet_demo"), help="MusicNet-layout root"
    )
    ap.add_argument(
        "--out", type=Path, default=Path(".bench/basic_pitch"), help="where the CSVs go"
    )
    ap.add_argument("--splits", nargs="+", default=["test", "test_unseen", "test_recorded"])
    ap.add_argument(
        "--inner", nargs=2, type=Path, help=argparse.SUPPRESS
    )  # audio dir, out dir (in the venv)
    args = ap.parse_args()
    if args.inner:
        transcribe_folder(*args.inner)
        return
    python = ensure_venv()
    rows = []
    for split in args.splits:
        pred = args.out / split
        subprocess.run(
            [str(python), __file__, "--inner", str(args.root / f"{split}_data"), str(pred)],
            check=True,
        )
        scores = args.out / f"{split}.json"
        subprocess.run(
            [
                str(Path(sys.executable).parent / "mt"),
                "score",
                str(args.root / f"{split}_labels"),
                str(pred),
                "--json",
                str(scores),
            ],
            check=True,
            capture_output=True,
        )
        mean = json.loads(scores.read_text())["mean"]
        rows.append((split, mean))
    print(
        "| split | note P | note R | note F1 | note+offset F1 | frame F1 |\n|---|---|---|---|---|---|"
    )
    for split, m in rows:
        print(
            f"| {split} | {m['note/precision']:.3f} | {m['note/recall']:.3f} | {m['note/f1']:.3f} | "
            f"{m['note_offset/f1']:.3f} | {m['frame/f1']:.3f} |"
        )


if __name__ == "__main__":
    main()
