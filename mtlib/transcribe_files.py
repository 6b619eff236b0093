"""`mt transcribe`'s file handling: finding the audio inputs, and writing each one's outputs
(MIDI, label CSV, piano roll, JSON record, and on request the sonified and A/B WAVs) together or
not at all. Kept apart from `mtlib.transcriber` (the model and its decoding), which the training
and evaluation stages import: nothing here is a dependency of theirs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mtlib.transcriber import Transcriber, n_segments, transcription_record

if TYPE_CHECKING:
    from mtlib.notes import Note


def audio_suffixes() -> set[str]:
    """File suffixes (lower case, with the dot) of every format the installed libsndfile reads,
    with the other names files of those formats go by (.aif for AIFF, .oga and .opus for OGG)."""
    import soundfile as sf

    suffixes = {f".{ext.lower()}" for ext in sf.available_formats()}
    aliases = {".aiff": {".aif", ".aifc"}, ".ogg": {".oga", ".opus"}, ".wav": {".wave"}}
    return suffixes.union(*(names for ext, names in aliases.items() if ext in suffixes))


def find_audio(
    paths: Sequence[str | Path],
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
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
                problems.append(
                    (p, f"no audio files ({', '.join(sorted(suffixes))}) in this folder")
                )
            inputs += [(f, f.relative_to(p).with_suffix("")) for f in found]
        elif p.is_file():
            inputs.append((p, Path(p.stem)))
        else:
            problems.append((p, "no such file or folder"))
    kept: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}  # output stem -> the input that writes it
    files: set[Path] = set()
    for f, stem in inputs:
        real = f.resolve()
        if real in files:  # the same file given twice (or inside a folder given too): once
            continue
        files.add(real)
        if stem in seen:
            problems.append(
                (f, f"its outputs would overwrite those of {seen[stem]} (same name {stem})")
            )
            continue
        seen[stem] = f
        kept.append((f, stem))
    return kept, problems


@dataclass
class FileResult:
    path: Path
    notes: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)


OUTPUT_SUFFIXES = (".mid", ".csv", ".png", ".json")
SONIFY_SUFFIXES = (".sonified.wav", ".ab.wav")


def transcribe_file(
    transcriber: Transcriber,
    path: Path,
    out_stem: Path,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    roll_seconds: float | None = None,
    sonify: bool = False,
) -> FileResult:
    """Transcribe one audio file and write `<out_stem>.mid`, `.csv` (MusicNet labels at the
    file's own rate), `.png` and `.json` (`transcription_record`: the CSV's rate, what made it),
    with `sonify` also `.sonified.wav` and `.ab.wav` (`write_outputs`), all or none. Features
    are streamed, so memory stays bounded on long files (sonifying reads the audio whole).

    on_start(n_segments) is called once the features are known. Errors reading the audio are
    returned in FileResult.error (naming the file), not raised, so other files still get done;
    so are outputs that cannot be written (checked before the model runs where possible)."""
    import warnings

    from mtlib.errors import AudioError
    from mtlib.features import is_silent
    from mtlib.io import output_problem

    t0 = time.perf_counter()
    suffixes = OUTPUT_SUFFIXES + (SONIFY_SUFFIXES if sonify else ())
    outputs = [out_stem.with_name(out_stem.name + s) for s in suffixes]
    problem = output_problem(outputs)
    if problem:  # before the model runs, so a batch does not pay for outputs it cannot write
        return FileResult(path, error=f"{path}: {problem}")
    try:
        feats, rate = transcriber.features_of(path)
    except AudioError as exc:
        return FileResult(path, error=str(exc))
    if on_start is not None:
        on_start(n_segments(feats.shape[0], transcriber.seg_frames))
    if is_silent(feats, transcriber.features):
        # Digital silence: nothing to hear, so no model runs (an undertrained model may still "hear" notes).
        notes = []
        warnings.warn(
            f"{path}: silent audio (no frequency band above -100 dBFS); writing an empty MIDI file",
            stacklevel=2,
        )
    else:
        notes = transcriber.transcribe_features(feats, on_batch=on_batch).notes
        if not notes:
            warnings.warn(f"{path}: no notes found; writing an empty MIDI file", stacklevel=2)
    try:
        write_outputs(outputs, transcriber, path, notes, rate, roll_seconds)
    except OSError as exc:
        return FileResult(path, error=f"{path}: writing {out_stem}.*: {exc}")
    feature_cfg = transcriber.features
    duration = (feats.shape[0] - 1) * feature_cfg.hop_length / feature_cfg.sample_rate
    return FileResult(path, len(notes), duration, time.perf_counter() - t0, outputs=outputs)


def write_outputs(
    outputs: list[Path],
    transcriber: Transcriber,
    path: Path,
    notes: Sequence[Note],
    rate: int,
    roll_seconds: float | None,
) -> None:
    """The files of one transcription, together or not at all (`mtlib.io.atomic_files`): MIDI,
    label CSV, piano roll, JSON record, and when `outputs` holds two more, the notes rendered at
    the input's rate (`mtlib.sonify.sonify`) and the A/B stereo file (`ab_pair`)."""
    from mtlib.audio import load_audio, write_wav
    from mtlib.io import atomic_files, write_json
    from mtlib.midi import write_midi
    from mtlib.musicnet import write_labels
    from mtlib.plots import transcription_png

    with atomic_files(outputs) as (mid, csv, png, sidecar, *sound):
        write_midi(mid, notes)
        write_labels(csv, notes, rate)
        transcription_png(png, notes, f"{path.name} ({transcriber.kind})", seconds=roll_seconds)
        write_json(sidecar, transcription_record(transcriber, path, outputs[1], rate, notes))
        if sound:
            from mtlib.sonify import ab_pair, sonify

            original, _ = load_audio(path)  # mono at the file's own rate
            rendered = sonify(notes, rate, original.size)
            write_wav(sound[0], rendered, rate)
            write_wav(sound[1], ab_pair(original, rendered), rate)
