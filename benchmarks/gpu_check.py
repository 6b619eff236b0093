"""GPU check: features, training under AMP, and decoding on CUDA, for a machine with a GPU.

Not a test (CI has no GPU): run it by hand where CUDA is present, `python benchmarks/gpu_check.py`,
and record what it prints in BENCHMARKS.md. It checks, on synthetic harmonic tones built here
(so it needs no data set, no SoundFont and no DVC):

1. Features on CUDA equal the CPU's (both front ends): the nnAudio CQT and torchaudio's mel.
2. Both models, at the default encoder size with onset and frame heads, train on CUDA under
   AMP through `mtlib.train.train` (the code `dvc repro` runs): losses finite and falling, and
   the trained model transcribes held-out tones (mir_eval note F1 printed).
3. The same weights decode the same notes on CUDA and on the CPU (`Transcriber.transcribe_features`).
4. Train steps per second on CUDA for a batch of 16 four-second segments.

Exit status 1 if a check fails. Options: --epochs (default 12), --out (a JSON summary), and
--device cpu --tracks 3 --seconds 20 for a dry run of the script itself on a machine without one.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATE = 16000
SEG_SECONDS = 4.0


def tones(seed: int, seconds: float, cfg) -> tuple[np.ndarray, list]:
    """A track of random harmonic notes (1-4 at once, MIDI 40-84) and its frame notes."""
    from mtlib.events import FrameNote

    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    y = np.zeros(n, np.float32)
    notes = []
    t = 0.1
    while t < seconds - 0.6:
        for _ in range(rng.integers(1, 5)):
            pitch = int(rng.integers(40, 85))
            dur = float(rng.uniform(0.15, 0.8))
            start, stop = int(t * RATE), min(n, int((t + dur) * RATE))
            k = np.arange(stop - start) / RATE
            f0 = 440.0 * 2 ** ((pitch - 69) / 12)
            wave = sum(np.sin(2 * np.pi * h * f0 * k) / h for h in range(1, 6) if h * f0 < RATE / 2)
            env = np.exp(-3.0 * k) * np.minimum(1.0, k / 0.005)
            y[start:stop] += (0.2 * rng.uniform(0.3, 1.0) * env * wave).astype(np.float32)
            on = int(round(t * RATE / cfg.hop_length))
            off = max(on + 1, int(round((t + dur) * RATE / cfg.hop_length)))
            notes.append(FrameNote(on, off, pitch))
        t += float(rng.uniform(0.15, 0.5))
    return y, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--epochs", type=int, default=12, help="training epochs per model on the synthetic tones"
    )
    ap.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only for a dry run of this script")
    ap.add_argument("--tracks", type=int, default=14, help="synthetic tracks (the last 2 held out)")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds per synthetic track")
    args = ap.parse_args()

    import torch

    from mtlib.dataset import collate
    from mtlib.decode import DecodeConfig
    from mtlib.events import (
        canonical_frame_notes,
        ctc_targets,
        frame_notes_to_notes,
        segment_tokens,
    )
    from mtlib.features import FeatureConfig, audio_features
    from mtlib.metrics import note_metrics
    from mtlib.models import build_model, feature_keys
    from mtlib.train import TrainConfig, train
    from mtlib.transcriber import Transcriber
    from mtlib.vocab import Vocabulary

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (--device cpu runs the script itself)")
        return 1
    if dev == "cpu":
        torch.set_num_threads(1)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    summary: dict = {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    failures: list[str] = []

    # 1. features
    probe, _ = tones(99, 6.0, FeatureConfig())
    for front in ("logmel", "cqt"):
        fcfg = FeatureConfig(sample_rate=RATE, features=front)
        gpu, cpu = audio_features(probe, fcfg, device=dev), audio_features(probe, fcfg)
        err = float(np.abs(gpu - cpu).max())
        summary[f"features/{front}/max_abs_diff"] = err
        if err > 5e-3:  # log power: the mel filterbank matmul runs in another order on the GPU
            failures.append(f"{front} features differ on CUDA by {err:.2e}")

    fcfg = FeatureConfig(sample_rate=RATE, features="cqt")
    vocab = Vocabulary(max_shift=64, min_pitch=21, max_pitch=108)
    seg = int(SEG_SECONDS * RATE / fcfg.hop_length)
    tracks = []
    for seed in range(args.tracks):
        y, notes = tones(seed, args.seconds, fcfg)
        tracks.append((audio_features(y, fcfg, device=dev), canonical_frame_notes(notes)[0]))
    train_tracks, val_tracks = tracks[:-2], tracks[-2:]
    feats_all = np.concatenate([f for f, _ in train_tracks])
    mean, std = feats_all.mean(0), feats_all.std(0)

    items = []
    for feats, notes in train_tracks:
        for s in range(0, feats.shape[0] - seg, seg // 2):
            ids, frames = ctc_targets(notes, s, seg, vocab.ctc)
            items.append(
                {
                    "features": feats[s : s + seg],
                    "tokens": np.asarray(segment_tokens(notes, s, seg, vocab)),
                    "ctc_tokens": ids,
                    "ctc_frames": frames,
                    "track": "t",
                    "segment": 0,
                    "start_frame": s,
                }
            )
    col = functools.partial(collate, vocab=vocab)
    summary["train_segments"] = len(items)

    def loader(epoch: int):
        order = np.random.default_rng(epoch).permutation(len(items))
        return torch.utils.data.DataLoader([items[i] for i in order], batch_size=16, collate_fn=col)

    dcfg = DecodeConfig(
        ctc_onset_window=4,
        ctc_onset_threshold=0.1,
        s2s_onset_window=6,
        frame_threshold=0.5,
        max_len=450,
        max_note_frames=938,
    )

    def score(model, kind: str, device) -> float:
        f1 = []
        for feats, notes in val_tracks:
            tr = Transcriber(model.to(device), fcfg, seg, vocab, dcfg).transcribe_features(feats)
            f1.append(
                note_metrics(
                    frame_notes_to_notes(notes, RATE, fcfg.hop_length),
                    frame_notes_to_notes(tr.frame_notes, RATE, fcfg.hop_length),
                )["note/f1"]
            )
        return float(np.mean(f1))

    for kind in ("ctc", "seq2seq"):
        torch.manual_seed(0)
        cfg = {
            "encoder": {
                "cnn_channels": [16, 32],
                "proj_dim": 256,
                "lstm_hidden": 192,
                "lstm_layers": 2,
                "onset_weight": 1.0,
                "frame_weight": 1.0,
            },
            kind: {"upsample": 4, "align_window": 3} if kind == "ctc" else {"position_window": 32},
            **feature_keys(fcfg),
            "n_pitches": vocab.ctc.n_pitches,
        }
        model = build_model(kind, cfg, vocab)
        model.set_feature_stats(mean, std)
        tcfg = TrainConfig(
            device=dev,
            threads=1 if dev == "cpu" else 0,
            epochs=args.epochs,
            lr=0.003 if kind == "ctc" else 0.002,
            val_every=args.epochs,
            warmup_steps=50,
        )
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = train(
                kind,
                model,
                tcfg,
                loader,
                loader(0),
                lambda m, kind=kind: {"val/note_f1": score(m, kind, dev)},
                Path(tmp) / "best.pt",
                Path(tmp) / "resume.pt",
                "gpu-check",
                {},
            )
            seconds = time.perf_counter() - t0
        losses = [row.get("train/loss/total", float("nan")) for row in result.history]
        summary[f"{kind}/train_seconds"] = seconds
        summary[f"{kind}/loss_first_last"] = [losses[0], losses[-1]]
        summary[f"{kind}/note_f1_heldout"] = score(model, kind, dev)
        if not all(np.isfinite(losses)) or losses[-1] >= losses[0]:
            failures.append(f"{kind}: losses not finite and falling: {losses}")
        # 3. the same weights on the CPU
        cpu_model = model.to("cpu")
        feats, _ = val_tracks[0]
        a = Transcriber(cpu_model, fcfg, seg, vocab, dcfg).transcribe_features(feats).frame_notes
        model.to(dev)
        b = Transcriber(model, fcfg, seg, vocab, dcfg).transcribe_features(feats).frame_notes
        same = len(set(a) & set(b)) / len(set(a) | set(b)) if a or b else 1.0
        summary[f"{kind}/cpu_cuda_same_notes"] = same
        summary[f"{kind}/note_f1_cpu_track0"] = note_metrics(
            frame_notes_to_notes(val_tracks[0][1], RATE, fcfg.hop_length),
            frame_notes_to_notes(a, RATE, fcfg.hop_length),
        )["note/f1"]
        if same < 0.98:
            failures.append(f"{kind}: CPU and CUDA decode different notes ({same:.3f} in common)")
        # 4. throughput
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in col(items[:16]).items()}
        for i in range(13):
            if i == 3:
                sync()
                t0 = time.perf_counter()
            with torch.autocast(dev, dtype=torch.float16, enabled=dev == "cuda"):
                _, losses_ = model(batch)
            opt.zero_grad()
            sum(losses_.values()).backward()
            opt.step()
        sync()
        summary[f"{kind}/train_steps_per_s"] = 10 / (time.perf_counter() - t0)
        print(
            f"[gpu {kind}] "
            + ", ".join(
                f"{k.split('/', 1)[1]}={v}" for k, v in summary.items() if k.startswith(kind)
            ),
            flush=True,
        )

    summary["failures"] = failures
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
