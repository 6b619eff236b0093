"""Whole-track transcription: features → non-overlapping segments → batched model → tokens with
frames → events in absolute frames → stitched notes, refined by the encoder's heads (read over
overlapping windowings of the track, `decode.head_passes`).

One path serves validation during training, decode_sweep, evaluate and `mt transcribe`, so a
number reported anywhere is produced by the code a user runs. Segments are streamed through the
model in batches, so memory is bounded by a batch plus the track's features and notes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlib.decode import DecodeConfig, adjust_offsets, decoding_for_kind, refine_notes

if TYPE_CHECKING:
    import pretty_midi

    from mtlib.features import FeatureConfig
    from mtlib.notes import Note
    from mtlib.vocab import Vocabulary


@dataclass
class Transcription:
    """A track's transcription, nothing written to disk.

    `notes` (seconds, a list of `mtlib.Note`) and `midi()` are the result; `frame_notes` the
    same notes in feature frames, refined by the encoder's heads as the decoding says;
    `raw_notes` the model's own tokens paired into notes with no head refinement (evaluate's raw/
    figures). `head_probs` holds the encoder heads' per-frame probabilities over the whole
    track, {"onset", "frame"} (T, n_pitches), for the heads the model has; `counts` the decoding
    counts (tokens dropped and why, `mtlib.events.TOKEN_COUNTS`)."""

    frame_notes: list
    segment_starts: list[int]
    segment_tokens: list[list[int]]  # Seq2Seq tokens or CTC ids, per segment
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time spent in the model and decoding
    raw_notes: list = field(default_factory=list)
    head_probs: dict[str, np.ndarray] = field(default_factory=dict)
    sample_rate: int = 0  # of the features: frame f starts at f * hop_length / sample_rate seconds
    hop_length: int = 0

    @property
    def notes(self) -> list[Note]:
        """The transcribed notes in seconds, sorted."""
        return self.in_seconds(self.frame_notes)

    @property
    def raw(self) -> list[Note]:
        """The raw notes (the model's own tokens, no head refinement) in seconds, sorted."""
        return self.in_seconds(self.raw_notes)

    def in_seconds(self, frame_notes) -> list[Note]:
        """Frame notes of this track in seconds (at the feature rate it was transcribed at)."""
        from mtlib.events import frame_notes_to_notes

        if not self.sample_rate:
            raise ValueError(
                "this Transcription has no feature rate (made from features alone): use frame_notes"
            )
        return frame_notes_to_notes(frame_notes, self.sample_rate, self.hop_length)

    def midi(self, default_program: int = 1) -> pretty_midi.PrettyMIDI:
        """The notes as a `pretty_midi.PrettyMIDI` (program 1, piano, unless told otherwise)."""
        from mtlib.midi import to_pretty_midi

        return to_pretty_midi(self.notes, default_program)


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


def window_bounds(n_frames: int, window: int, offset: int = 0) -> list[tuple[int, int]]:
    """(start, end) of consecutive non-overlapping windows of at most `window` frames over a track
    of n_frames: [0, offset), then [offset, offset + window), ... (offset 0: [0, window), ...)."""
    starts = list(range(offset, max(n_frames, 1), window))
    starts = [0, *starts] if offset > 0 else starts
    return [(s, min(s + window, e)) for s, e in zip(starts, [*starts[1:], n_frames])]


def segment_batches(
    features: np.ndarray, seg_frames: int, batch_size: int, offset: int = 0
) -> Iterator[tuple[list[int], list[int], dict]]:
    """Yield (starts, lengths, batch) over consecutive non-overlapping segments of a track, the
    `window_bounds` of seg_frames and `offset` (a first segment of `offset` frames, then whole ones).

    features: (T, n_mels). batch: features (B, seg_frames, n_mels) float32 zero-padded and
    feature_lengths (B,)."""
    import torch

    bounds = window_bounds(features.shape[0], seg_frames, offset)
    for i in range(0, len(bounds), batch_size):
        chunk = [s for s, _ in bounds[i : i + batch_size]]
        lengths = [e - s for s, e in bounds[i : i + batch_size]]
        x = np.zeros((len(chunk), max(lengths), features.shape[1]), dtype=np.float32)
        for j, (s, n) in enumerate(zip(chunk, lengths)):
            x[j, :n] = features[s : s + n]
        yield (
            chunk,
            lengths,
            {
                "features": torch.from_numpy(x),
                "feature_lengths": torch.tensor(lengths, dtype=torch.int64),
            },
        )


def place_heads(track_probs: dict, probs: dict, starts, lengths, n_frames: int) -> None:
    """A batch's head probabilities {name: (B, T, P) tensor} into the track's {name: (T, P)}."""
    for name, x in probs.items():
        x = x.float().cpu().numpy()
        track = track_probs.setdefault(name, np.zeros((n_frames, x.shape[-1]), np.float32))
        for b, (s, n) in enumerate(zip(starts, lengths)):
            track[s : s + n] = x[b, :n]


def edge_weights(n_frames: int, window: int, offset: int = 0) -> np.ndarray:
    """(T,) each frame's distance to the nearer edge of its window (`window_bounds`), plus 0.5."""
    w = np.zeros(n_frames, np.float32)
    for s, e in window_bounds(n_frames, window, offset):
        i = np.arange(e - s)
        w[s:e] = np.minimum(i, e - s - 1 - i) + 0.5
    return w


def window_heads(
    model, features: np.ndarray, window: int, passes: int, batch_size: int, first=None
) -> dict[str, np.ndarray]:
    """The encoder heads' probabilities over a track {name: (T, P)}, read over `passes`
    windowings into windows of `window` frames, the k-th starting its second window at
    round(k * window / passes), and averaged with each frame weighted by its distance to its
    window's nearer edge (`edge_weights`): a BiLSTM at a window's edge hears one side only, so
    each frame is read mostly where it sits inside a window. `first`: the heads of the windowing
    at offset 0 if already computed (the token run's, when `window` is the model's segment).

    Written here: overlapping windows cross-faded with a triangular window are what
    transcription systems do at inference, but no library does it for a model's own heads."""
    import torch

    T = features.shape[0]
    offsets = [round(k * window / passes) for k in range(passes)]
    if window < 1 or len(set(offsets)) < passes:
        raise ValueError(
            f"decode.head_passes {passes} needs a head window of at least as many frames "
            f"(decode.head_window gives {window})"
        )
    total: dict[str, np.ndarray] = {}
    weight = np.zeros((T, 1), np.float32)
    device = next(model.parameters()).device
    for k, offset in enumerate(offsets):
        probs: dict[str, np.ndarray] = {}
        if k == 0 and first is not None:
            probs = first
        else:
            with torch.no_grad():
                for starts, lengths, batch in segment_batches(features, window, batch_size, offset):
                    batch = {key: v.to(device) for key, v in batch.items()}
                    _, _, logits = model.encoder.encode_batch(batch)
                    place_heads(
                        probs,
                        model.encoder.head_probs(logits, batch["features"].shape[1]),
                        starts,
                        lengths,
                        T,
                    )
        w = edge_weights(T, window, offset)[:, None]
        for name, x in probs.items():
            total[name] = total.get(name, 0) + x * w
        weight += w
    return {name: (x / np.maximum(weight, 1e-6)).astype(np.float32) for name, x in total.items()}


def add_counts(counts: dict[str, int], more: dict[str, int]) -> None:
    """counts += more, key by key (decoding counts of several segments or tracks)."""
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + int(v)


def n_segments(n_frames: int, seg_frames: int) -> int:
    """How many segments `segment_batches` cuts a track of n_frames into."""
    return len(range(0, max(n_frames, 1), seg_frames))


@dataclass
class Transcriber:
    """A trained model with everything its transcriptions depend on: the feature settings it was
    trained on, its segment length, vocabulary and decoding. Build one from a checkpoint with
    `Transcriber.load(path)`; call it on audio (`transcriber("song.wav")`).

    Every transcription in the project goes through `transcribe_features` (validation during
    training, decode_sweep, evaluate, `mt transcribe`), so a number reported anywhere is
    produced by the code a user runs. The model kind's own decoding sits behind
    `mtlib.decode.decoding_for_kind` (`CTCDecoding`, `Seq2SeqDecoding`)."""

    model: Any
    features: FeatureConfig
    seg_frames: int
    vocab: Vocabulary
    decoding: DecodeConfig = field(default_factory=DecodeConfig)
    decoding_source: str = (
        "given"  # where `decoding` came from (a bundle, the checkpoint, defaults)
    )
    checkpoint: str | None = None  # the file it was loaded from

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def device(self):
        return next(self.model.parameters()).device

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", decoding: DecodeConfig | None = None
    ) -> Transcriber:
        """The model in checkpoint `path` on `device` (auto: CUDA when present), with the decoding
        that belongs to it (`decoding_for`: decode_sweep's choice beside it, checked by SHA-256),
        unless `decoding` is given. Warns (UserWarning) when no sweep result belongs to it."""
        import warnings

        from mtlib.features import FeatureConfig
        from mtlib.models import load_checkpoint
        from mtlib.train import resolve_device

        dev = resolve_device(device) if isinstance(device, str) else device
        model, extra = load_checkpoint(path, map_location=dev)
        missing = [k for k in ("features", "seg_frames") if k not in extra]
        if missing:
            raise ValueError(
                f"{path}: checkpoint records no {', '.join(missing)} (not written by the train stages)"
            )
        features = FeatureConfig.from_dict(extra["features"])
        source = "given"
        if decoding is None:
            decoding, source, warning = decoding_for(path, extra)
            if warning:
                warnings.warn(warning, stacklevel=2)
        seg_frames = int(extra["seg_frames"])
        return cls(model, features, seg_frames, model.vocab, decoding, source, str(path))

    def with_decoding(self, **changes) -> Transcriber:
        """The same model with some decode.* keys changed (e.g. `with_decoding(ctc_decoder="beam")`)."""
        return dataclasses.replace(self, decoding=dataclasses.replace(self.decoding, **changes))

    def with_decoder(self, name: str) -> Transcriber:
        """The same model decoding with the named token decoder: greedy or beam for CTC;
        constrained (greedy under the token grammar), greedy or beam for Seq2Seq."""
        key, names = decoding_for_kind(self.kind).DECODERS
        if name not in names:
            raise ValueError(
                f"--decoder {name} is not a {self.kind} decoder; {self.kind} takes {' or '.join(names)}"
            )
        return self.with_decoding(**{key: name})

    def run(
        self, features: np.ndarray, on_batch: Callable[[int], None] | None = None
    ) -> ModelOutput:
        """One track's features (T, n_bins) through the model and its token decoder (the decoding
        keys in `DecodeConfig.model_run_key`); `on_batch(n)` after each batch of n segments. The
        heads' probabilities are the token run's, or with decode.head_passes > 1 (or a
        decode.head_window other than the segment) the cross-faded windowings of `window_heads`."""
        model, vocab, cfg = self.model, self.vocab, self.decoding
        kind_decoding = decoding_for_kind(model.kind)
        device = self.device
        model.eval()
        t0 = time.perf_counter()
        T = features.shape[0]
        segments: list[tuple[int, int, list[int], list[int] | None]] = []
        head_probs: dict[str, np.ndarray] = {}
        for starts, lengths, batch in segment_batches(features, self.seg_frames, cfg.batch_size):
            decoded, probs = kind_decoding.decode_batch(
                model, {k: v.to(device) for k, v in batch.items()}, vocab, cfg
            )
            place_heads(head_probs, probs, starts, lengths, T)
            segments += [
                (s, n, ids, frames) for s, n, (ids, frames) in zip(starts, lengths, decoded)
            ]
            if on_batch is not None:
                on_batch(len(starts))
        window = cfg.head_window or self.seg_frames
        if head_probs and (cfg.head_passes > 1 or window != self.seg_frames):
            first = head_probs if window == self.seg_frames else None
            head_probs = window_heads(
                model, features, window, cfg.head_passes, cfg.batch_size, first
            )
        return ModelOutput(model.kind, T, segments, head_probs, time.perf_counter() - t0)

    def notes_from(self, out: ModelOutput) -> Transcription:
        """Tokens → events in track frames → paired notes (the raw notes) → refined by the heads.

        Pairing comes first and refinement works on whole notes, so no refinement can separate a
        NOTE_ON from its NOTE_OFF; both models' notes go through `mtlib.decode.refine_notes`."""
        from mtlib import events as ev

        vocab, cfg = self.vocab, self.decoding
        kind_decoding = decoding_for_kind(out.kind)
        t0 = time.perf_counter()
        placed, counts = [], {}
        for start, n, ids, frames in out.segments:
            ties, events, c = kind_decoding.segment_events(ids, frames, n, vocab, cfg)
            placed.append((start, ties, events))
            add_counts(counts, c)
        orphans: list[tuple[int, int]] = []
        unended: list[tuple[int, int]] = []
        own, c = ev.stitch_segments(placed, out.n_frames, orphans, unended)
        add_counts(counts, c)
        raw = adjust_offsets(own, cfg.offset_shift_frames, out.n_frames, cfg.max_note_frames)
        refined = refine_notes(
            own, out.head_probs, cfg, out.kind, vocab.min_pitch, out.n_frames, orphans, unended
        )
        return Transcription(
            refined,
            [s[0] for s in out.segments],
            [list(s[2]) for s in out.segments],
            counts,
            out.seconds + time.perf_counter() - t0,
            raw,
            out.head_probs,
            self.features.sample_rate,
            self.features.hop_length,
        )

    def transcribe_features(
        self, features: np.ndarray, on_batch: Callable[[int], None] | None = None
    ) -> Transcription:
        """One track's features (T, n_bins) → its Transcription: `run`, then `notes_from`."""
        return self.notes_from(self.run(features, on_batch))

    def features_of(self, audio, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
        """(features (T, n_bins), the audio's own rate) of a file path, or of an array (N,) or
        (N, channels) at `sample_rate` (channels are averaged). Files are streamed: any length."""
        from mtlib.audio import resample
        from mtlib.features import audio_features, stream_track_features

        if isinstance(audio, (str, Path)):
            return stream_track_features(audio, self.features, device=self.device)
        if sample_rate is None:
            raise ValueError("transcribing an array needs its sample_rate")
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError(
                f"audio must be a non-empty array of shape (N,) or (N, channels), got shape {np.shape(audio)}"
            )
        samples = resample(samples, int(sample_rate), self.features.sample_rate)
        return audio_features(samples, self.features, device=self.device), int(sample_rate)

    def __call__(
        self, audio, sample_rate: int | None = None, on_batch: Callable[[int], None] | None = None
    ) -> Transcription:
        """Transcribe an audio file (any format libsndfile reads) or an array at `sample_rate`.

        Digital silence runs no model (an undertrained model may still "hear" notes) and gives an
        empty Transcription with a warning."""
        import warnings

        from mtlib.features import is_silent

        feats, _ = self.features_of(audio, sample_rate)
        if is_silent(feats, self.features):
            warnings.warn(
                f"{audio if isinstance(audio, (str, Path)) else 'audio'}: silent (no frequency band above "
                "-100 dBFS); no notes",
                stacklevel=2,
            )
            return Transcription(
                [],
                [],
                [],
                sample_rate=self.features.sample_rate,
                hop_length=self.features.hop_length,
            )
        return self.transcribe_features(feats, on_batch)


def transcribe(
    audio,
    model: str | Path | Transcriber = "data/models/ctc.pt",
    sample_rate: int | None = None,
    device: str = "auto",
) -> Transcription:
    """Transcribe `audio` (a file path, or an array with its `sample_rate`) with `model` (a
    checkpoint path or a loaded `Transcriber`); nothing is written to disk.

        >>> import mtlib
        >>> result = mtlib.transcribe("song.wav", model="data/models/ctc.pt")
        >>> result.midi().write("song.mid")
    """
    transcriber = (
        model if isinstance(model, Transcriber) else Transcriber.load(model, device=device)
    )
    return transcriber(audio, sample_rate)


# --------------------------------------------------------------------------- a checkpoint's decoding, a transcription's record
# (the files `mt transcribe` writes are handled in mtlib/transcribe_files.py)


def decoding_path(checkpoint: str | Path) -> Path:
    """Where the decoding chosen for a checkpoint lives: beside it, `<name>.decode.json`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".decode.json")


def write_decoding(
    checkpoint: str | Path,
    cfg: DecodeConfig,
    scores: dict[str, float],
    path: str | Path | None = None,
) -> Path:
    """Write the decoding config chosen for `checkpoint` (decode_sweep), tied to it by its SHA-256:
    {"decode": {...}, "checkpoint": name, "checkpoint_sha256": ..., **scores}, atomically."""
    import dataclasses
    import json

    from mtlib.io import atomic_path
    from mtlib.train import file_digest

    path = Path(path) if path is not None else decoding_path(checkpoint)
    blob = {
        "decode": dataclasses.asdict(cfg),
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": file_digest(checkpoint),
        **scores,
    }
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(blob, indent=2, sort_keys=True) + "\n")
    return path


def decoding_for(
    checkpoint: str | Path, extra: dict | None = None
) -> tuple[DecodeConfig, str, str | None]:
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
    if bundle.is_file():
        blob = json.loads(bundle.read_text())
        if blob.get("checkpoint_sha256") == file_digest(checkpoint):
            return config_from(DecodeConfig, blob["decode"], str(bundle)), str(bundle), None
        problem = (
            f"{bundle} belongs to another checkpoint (its SHA-256 differs from {checkpoint}'s)"
        )
    if extra is None and Path(checkpoint).is_file():  # read only when no bundle belongs to it
        import torch

        extra = torch.load(checkpoint, map_location="cpu", weights_only=False).get("extra", {})
    if extra and extra.get("decode"):
        return (
            config_from(DecodeConfig, extra["decode"], f"{checkpoint}: decode"),
            f"{checkpoint} (its validation decoding)",
            f"{problem}: decoding as the model was validated (run decode_sweep to tune it)",
        )
    return (
        DecodeConfig(),
        "built-in defaults",
        f"{problem}, and the checkpoint records no decoding: built-in defaults",
    )


SIDECAR_FORMAT = "mtlib transcription"


def transcription_record(
    transcriber: Transcriber, audio: Path, csv: Path, rate: int, notes: Sequence[Note]
) -> dict[str, Any]:
    """`<name>.json` beside a transcription: the rate of its CSV's sample indices (which `mt score`
    reads, `mtlib.metrics.label_file_rate`), and what produced it."""
    return {
        "format": SIDECAR_FORMAT,
        "csv": csv.name,
        "csv_sample_rate": int(rate),
        "audio": str(audio),
        "model": transcriber.kind,
        "checkpoint": transcriber.checkpoint,
        "decoding_source": transcriber.decoding_source,
        "decoding": dataclasses.asdict(transcriber.decoding),
        "notes": len(notes),
    }
