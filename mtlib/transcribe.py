"""Whole-track transcription: features → non-overlapping segments → batched model → tokens with
frames → events in absolute frames → stitched notes.

One path serves validation during training, decode_sweep, evaluate and `mt transcribe`, so a
number reported anywhere is produced by the code a user runs. Segments are streamed through the
model in batches, so memory is bounded by a batch plus the track's features and notes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from mtlib.decode import DecodeConfig, ctc_beam, ctc_greedy, refine_onsets, s2s_beam, s2s_greedy


@dataclass
class Transcription:
    """A track's transcription: frame notes, per-segment tokens (for TER), and decoding counts."""

    frame_notes: list
    segment_starts: list[int]
    segment_tokens: list[list[int]]  # Seq2Seq tokens or CTC ids, per segment
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time spent in the model and decoding


def segment_batches(features: np.ndarray, seg_frames: int, batch_size: int) -> Iterator[tuple[list[int], list[int], dict]]:
    """Yield (starts, lengths, batch) over consecutive non-overlapping segments of a track.

    features: (T, n_mels). batch: features (B, seg_frames, n_mels) float32 zero-padded and
    feature_lengths (B,)."""
    import torch

    T = features.shape[0]
    starts = list(range(0, max(T, 1), seg_frames))
    for i in range(0, len(starts), batch_size):
        chunk = starts[i: i + batch_size]
        lengths = [min(seg_frames, T - s) for s in chunk]
        x = np.zeros((len(chunk), max(lengths), features.shape[1]), dtype=np.float32)
        for j, (s, n) in enumerate(zip(chunk, lengths)):
            x[j, :n] = features[s: s + n]
        yield chunk, lengths, {"features": torch.from_numpy(x), "feature_lengths": torch.tensor(lengths, dtype=torch.int64)}


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + int(v)


def transcribe_features(model, kind: str, features: np.ndarray, seg_frames: int, vocab, cfg: DecodeConfig, device=None) -> Transcription:
    """Transcribe one track's features (T, n_mels) with a trained model ('ctc' or 'seq2seq')."""
    import torch

    from mtlib import events as ev

    device = device or next(model.parameters()).device
    model.eval()
    t0 = time.perf_counter()
    pieces, starts_all, tokens_all, counts = [], [], [], {}
    for starts, lengths, batch in segment_batches(features, seg_frames, cfg.batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        if kind == "ctc":
            with torch.no_grad():
                out = model.infer(batch)
            log_probs = out["log_probs"].float().cpu().numpy()
            slot_lengths = out["lengths"].cpu().numpy()
            onset_probs = out.get("onset_probs")
            onset_probs = onset_probs.float().cpu().numpy() if onset_probs is not None else None
            for b, (s, n) in enumerate(zip(starts, lengths)):
                if cfg.ctc_decoder == "beam":
                    ids, slots = ctc_beam(log_probs[b], int(slot_lengths[b]), cfg.ctc_beam_width)
                else:
                    ids, slots = ctc_greedy(log_probs[b], int(slot_lengths[b]))
                frames = np.asarray(model.slot_to_frame(slots), dtype=np.int64)
                frames = np.clip(frames + cfg.ctc_shift_frames, 0, max(0, n - 1))
                if onset_probs is not None and cfg.ctc_onset_window > 0:
                    is_on = (ids >= 1) & (ids <= vocab.ctc.n_pitches)
                    frames[is_on] = refine_onsets(frames[is_on], ids[is_on] - 1, onset_probs[b, :n], cfg.ctc_onset_window, cfg.ctc_onset_threshold)
                events, c = ev.ctc_to_events(ids.tolist(), frames.tolist(), vocab.ctc)
                _add(counts, c)
                pieces.append((s, None, events))
                starts_all.append(s)
                tokens_all.append(ids.tolist())
        else:
            if cfg.s2s_decoder == "beam":
                seqs = s2s_beam(model, batch, vocab, lengths, cfg)
            else:
                seqs = s2s_greedy(model, batch, vocab, lengths, cfg, constrained=cfg.s2s_decoder == "constrained")
            for s, n, toks in zip(starts, lengths, seqs):
                ties, events, c = ev.tokens_to_segment_events(toks, vocab, n)  # events past the end counted, dropped
                _add(counts, c)
                pieces.append((s, ties, events))
                starts_all.append(s)
                tokens_all.append(list(toks))
    frame_notes, c = ev.stitch_segments(pieces, features.shape[0])
    _add(counts, c)
    return Transcription(frame_notes, starts_all, tokens_all, counts, time.perf_counter() - t0)
