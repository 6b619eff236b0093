"""Whole-track transcription: features → non-overlapping segments → batched model → tokens with
frames → events in absolute frames → stitched notes.

One path serves validation during training, decode_sweep, evaluate and `mt transcribe`, so a
number reported anywhere is produced by the code a user runs. Segments are streamed through the
model in batches, so memory is bounded by a batch plus the track's features and notes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from mtlib.decode import DecodeConfig, adjust_offsets, ctc_beam, ctc_greedy, refine_notes, s2s_beam, s2s_greedy


@dataclass
class Transcription:
    """A track's transcription: frame notes, per-segment tokens (for TER), and decoding counts.

    `frame_notes` are the result (refined by the encoder's heads as `cfg` says); `raw_notes` are
    the model's own tokens paired into notes with no head refinement (evaluate's raw/ figures)."""

    frame_notes: list
    segment_starts: list[int]
    segment_tokens: list[list[int]]  # Seq2Seq tokens or CTC ids, per segment
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time spent in the model and decoding
    raw_notes: list = field(default_factory=list)


@dataclass
class ModelOutput:
    """A track through the model and its token decoder, before any post-processing.

    segments: (start frame, length, ids, frames) per segment; frames are CTC emission frames
    before the latency correction (None for Seq2Seq, whose tokens carry time). head_probs: the
    encoder heads' probabilities over the whole track, {"onset", "frame"}: (T, P) float32."""

    kind: str
    n_frames: int
    segments: list[tuple[int, int, list[int], list[int] | None]]
    head_probs: dict[str, np.ndarray]
    seconds: float = 0.0


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


def n_segments(n_frames: int, seg_frames: int) -> int:
    """How many segments `segment_batches` cuts a track of n_frames into."""
    return len(range(0, max(n_frames, 1), seg_frames))


def run_model(model, kind: str, features: np.ndarray, seg_frames: int, vocab, cfg: DecodeConfig, device=None,
              on_batch: Callable[[int], None] | None = None) -> ModelOutput:
    """One track's features (T, n_bins) through the model ('ctc' or 'seq2seq') and its token
    decoder (cfg's keys in `DecodeConfig.model_run_key`); `on_batch(n)` after each batch."""
    import torch

    device = device or next(model.parameters()).device
    model.eval()
    t0 = time.perf_counter()
    T = features.shape[0]
    segments: list[tuple[int, int, list[int], list[int] | None]] = []
    head_probs: dict[str, np.ndarray] = {}

    def keep_heads(probs: dict, starts, lengths) -> None:
        for name, x in probs.items():
            track = head_probs.setdefault(name, np.zeros((T, vocab.ctc.n_pitches), np.float32))
            x = x.float().cpu().numpy()
            for b, (s, n) in enumerate(zip(starts, lengths)):
                track[s: s + n] = x[b, :n]

    for starts, lengths, batch in segment_batches(features, seg_frames, cfg.batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        if kind == "ctc":
            with torch.no_grad():
                out = model.infer(batch)
            keep_heads(out["head_probs"], starts, lengths)
            log_probs = out["log_probs"].float().cpu().numpy()
            slot_lengths = out["lengths"].cpu().numpy()
            for b, (s, n) in enumerate(zip(starts, lengths)):
                if cfg.ctc_decoder == "beam":
                    ids, slots = ctc_beam(log_probs[b], int(slot_lengths[b]), cfg.ctc_beam_width)
                else:
                    ids, slots = ctc_greedy(log_probs[b], int(slot_lengths[b]))
                frames = np.asarray(model.slot_to_frame(slots), dtype=np.int64)
                segments.append((s, n, ids.tolist(), frames.tolist()))
        else:
            with torch.no_grad():  # one encoder pass for both the decoder and the heads
                H, mask, _, heads = model.encode(batch)
            keep_heads(model.encoder.head_probs(heads, batch["features"].shape[1]), starts, lengths)
            if cfg.s2s_decoder == "beam":
                seqs = s2s_beam(model, H, mask, vocab, lengths, cfg)
            else:
                seqs = s2s_greedy(model, H, mask, vocab, lengths, cfg, constrained=cfg.s2s_decoder == "constrained")
            segments += [(s, n, list(toks), None) for s, n, toks in zip(starts, lengths, seqs)]
        if on_batch is not None:
            on_batch(len(starts))
    return ModelOutput(kind, T, segments, head_probs, time.perf_counter() - t0)


def notes_from_output(out: ModelOutput, vocab, cfg: DecodeConfig) -> Transcription:
    """Tokens → events in track frames → paired notes (the raw notes) → refined by the heads.

    Pairing comes first and refinement works on whole notes, so no refinement can separate a
    NOTE_ON from its NOTE_OFF. CTC token frames get cfg.ctc_shift_frames (a latency correction)
    before pairing; both models' notes then go through `mtlib.decode.refine_notes`."""
    from mtlib import events as ev

    t0 = time.perf_counter()
    pieces, counts = [], {}
    for start, n, ids, frames in out.segments:
        if out.kind == "ctc":
            shifted = np.clip(np.asarray(frames, dtype=np.int64) + cfg.ctc_shift_frames, 0, max(0, n - 1))
            events, c = ev.ctc_to_events(ids, shifted.tolist(), vocab.ctc)
            pieces.append((start, None, events))
        else:
            ties, events, c = ev.tokens_to_segment_events(ids, vocab, n)  # events past the end counted, dropped
            pieces.append((start, ties, events))
        _add(counts, c)
    own, c = ev.stitch_segments(pieces, out.n_frames)
    _add(counts, c)
    raw = adjust_offsets(own, cfg.offset_shift_frames, out.n_frames, cfg.max_note_frames)
    refined = refine_notes(own, out.head_probs, cfg, out.kind, vocab.min_pitch, out.n_frames)
    return Transcription(refined, [s[0] for s in out.segments], [list(s[2]) for s in out.segments], counts,
                         out.seconds + time.perf_counter() - t0, raw)


def transcribe_features(model, kind: str, features: np.ndarray, seg_frames: int, vocab, cfg: DecodeConfig, device=None,
                        on_batch: Callable[[int], None] | None = None) -> Transcription:
    """Transcribe one track's features (T, n_bins) with a trained model ('ctc' or 'seq2seq'):
    `run_model` then `notes_from_output`. `on_batch(n)` is called after each batch with its
    number of segments (progress bars)."""
    return notes_from_output(run_model(model, kind, features, seg_frames, vocab, cfg, device, on_batch), vocab, cfg)


# --------------------------------------------------------------------------- `mt transcribe`: audio files → MIDI, CSV, PNG


def audio_suffixes() -> set[str]:
    """File suffixes (lower case, with the dot) of every format the installed libsndfile reads."""
    import soundfile as sf

    return {f".{ext.lower()}" for ext in sf.available_formats()} | {".oga", ".opus"}


def find_audio(paths: Sequence[str | Path]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(inputs, problems) for files and folders given on the command line.

    inputs: (audio file, output stem relative to --out): a file's own stem, or for a folder the
    file's path inside the folder without its suffix (so equal names in sub-folders do not clash).
    problems: (path, what is wrong) for paths that do not exist or folders without audio."""
    suffixes = audio_suffixes()
    inputs: list[tuple[Path, Path]] = []
    problems: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                problems.append((p, f"no audio files ({', '.join(sorted(suffixes))}) in this folder"))
            inputs += [(f, f.relative_to(p).with_suffix("")) for f in found]
        elif p.is_file():
            inputs.append((p, Path(p.stem)))
        else:
            problems.append((p, "no such file or folder"))
    seen: dict[Path, Path] = {}
    for f, stem in inputs:
        if stem in seen:
            problems.append((f, f"its outputs would overwrite those of {seen[stem]} (same name {stem})"))
        seen.setdefault(stem, f)
    clashes = {f for f, _ in problems}
    return [(f, s) for f, s in inputs if f not in clashes or seen[s] == f], problems


def decoding_path(checkpoint: str | Path) -> Path:
    """Where the decoding chosen for a checkpoint lives: beside it, `<name>.decode.json`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".decode.json")


def write_decoding(checkpoint: str | Path, cfg: DecodeConfig, scores: dict[str, float], path: str | Path | None = None) -> Path:
    """Write the decoding config chosen for `checkpoint` (decode_sweep), tied to it by its SHA-256:
    {"decode": {...}, "checkpoint": name, "checkpoint_sha256": ..., **scores}, atomically."""
    import dataclasses
    import json

    from mtlib.io import atomic_path
    from mtlib.train import file_digest

    path = Path(path) if path is not None else decoding_path(checkpoint)
    blob = {"decode": dataclasses.asdict(cfg), "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": file_digest(checkpoint), **scores}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(blob, indent=2, sort_keys=True) + "\n")
    return path


def decoding_for(checkpoint: str | Path, extra: dict | None = None) -> tuple[DecodeConfig, str, str | None]:
    """(config, where it came from, warning or None) for decoding with the model in `checkpoint`,
    whatever the working directory:

    1. `<name>.decode.json` beside it (decode_sweep's choice), if its SHA-256 is this file's;
    2. else the decoding the checkpoint itself was validated with (`extra["decode"]`, saved by
       training), with a warning that no sweep result belongs to it;
    3. else the built-in defaults, with a warning."""
    import json

    from mtlib.params import config_from
    from mtlib.train import file_digest

    bundle = decoding_path(checkpoint)
    problem = f"no {bundle.name} beside {checkpoint}"
    if extra is None and Path(checkpoint).is_file():
        import torch

        extra = torch.load(checkpoint, map_location="cpu", weights_only=False).get("extra", {})
    if bundle.is_file():
        blob = json.loads(bundle.read_text())
        if blob.get("checkpoint_sha256") == file_digest(checkpoint):
            return config_from(DecodeConfig, blob["decode"], str(bundle)), str(bundle), None
        problem = f"{bundle} belongs to another checkpoint (its SHA-256 differs from {checkpoint}'s)"
    if extra and extra.get("decode"):
        return (config_from(DecodeConfig, extra["decode"], f"{checkpoint}: decode"), f"{checkpoint} (its validation decoding)",
                f"{problem}: decoding as the model was validated (run decode_sweep to tune it)")
    return DecodeConfig(), "built-in defaults", f"{problem}, and the checkpoint records no decoding: built-in defaults"


@dataclass
class FileResult:
    path: Path
    notes: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)


def transcribe_file(model, kind: str, fcfg, seg_frames: int, vocab, dcfg: DecodeConfig, path: Path, out_stem: Path,
                    device=None, on_start: Callable[[int], None] | None = None,
                    on_batch: Callable[[int], None] | None = None, roll_seconds: float | None = None) -> FileResult:
    """Transcribe one audio file and write `<out_stem>.mid`, `.csv` (MusicNet labels at the
    file's own rate) and `.png`. Features are streamed, so memory stays bounded on long files.

    on_start(n_segments) is called once the features are known. Errors reading the audio are
    returned in FileResult.error (naming the file), not raised, so other files still get done."""
    import warnings

    from mtlib import events as ev
    from mtlib.errors import AudioError
    from mtlib.features import is_silent, stream_track_features
    from mtlib.midi import write_midi
    from mtlib.musicnet import write_labels
    from mtlib.plots import transcription_png

    t0 = time.perf_counter()
    try:
        feats, rate = stream_track_features(path, fcfg, device=device)
    except AudioError as exc:
        return FileResult(path, error=str(exc))
    if on_start is not None:
        on_start(n_segments(feats.shape[0], seg_frames))
    if is_silent(feats, fcfg):
        # Digital silence: nothing to hear, so no model runs (an undertrained model may still "hear" notes).
        notes = []
        warnings.warn(f"{path}: silent audio (no frequency band above -100 dBFS); writing an empty MIDI file", stacklevel=2)
    else:
        tr = transcribe_features(model, kind, feats, seg_frames, vocab, dcfg, device=device, on_batch=on_batch)
        notes = ev.frame_notes_to_notes(tr.frame_notes, fcfg.sample_rate, fcfg.hop_length)
        if not notes:
            warnings.warn(f"{path}: no notes found; writing an empty MIDI file", stacklevel=2)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    outputs = [out_stem.with_suffix(".mid"), out_stem.with_suffix(".csv"), out_stem.with_suffix(".png")]
    write_midi(outputs[0], notes)
    write_labels(outputs[1], notes, rate)
    transcription_png(outputs[2], notes, f"{path.name} ({kind})", seconds=roll_seconds)
    duration = (feats.shape[0] - 1) * fcfg.hop_length / fcfg.sample_rate
    return FileResult(path, len(notes), duration, time.perf_counter() - t0, outputs=outputs)
