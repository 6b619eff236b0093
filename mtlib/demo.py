"""The built-in demo data: music21 corpus scores rendered through a General MIDI SoundFont into
exactly the MusicNet layout, so the whole pipeline runs (and is tested) without a download.

One note list per piece is the single source of truth: it is read from the score (ties stripped,
repeats NOT expanded, seconds from the score's full tempo map), varied (tempo, velocity, part
balance, onset timing), and then both written as the label CSV and played sample-accurately
through tinysoundfont, so labels and audio agree to the sample.

Ensembles (1-based GM programs, voices top to bottom) keep to instruments that speak quickly in
TimGM6mb. Measured from note-on, velocity 80, pitches across each instrument's range: time to
-30 dB of the note's peak RMS (2 ms windows; the sound has begun) piano <=3 ms, bassoon <=3,
clarinet <=5, violin <=5, cello <=7, viola <=7, oboe <=7, but flute 7-35 ms; time to -6 dB
(5 ms windows) piano 2-4 ms, bassoon 1-18, clarinet 5-26, oboe 11-38, cello 4-46, violin 16-40,
viola 23-46, flute 14-52, French horn 38-99. So MusicNet's flute and horn are left out: their
labels would sit ahead of their sound. tests/test_demo.py checks the -30 dB onset per program.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mtlib.musicnet import Beat
from mtlib.notes import Note
from mtlib.recording import UNSEEN_ROOM
from mtlib.timebase import seconds_to_samples

ENSEMBLES: dict[str, tuple[int, ...]] = {
    "piano": (1, 1, 1, 1),
    "string_quartet": (41, 41, 42, 43),  # violin I, violin II, viola, cello
    "wind_quartet": (69, 72, 71, 71),  # oboe, clarinet, two bassoons (flute, horn speak too slowly)
    "piano_strings": (41, 1, 1, 43),  # a piano trio: violin on top, cello in the bass, piano inside
}
# Part names in the corpus ("Violin I", "Violoncello.", "Piano") → GM program; first match wins.
PART_NAME_PROGRAMS: tuple[tuple[str, int], ...] = (
    ("cello", 43),
    ("viola", 42),
    ("violin", 41),
    ("contrabass|double bass|violone", 44),
    ("piano|pianoforte|klavier", 1),
    ("oboe", 69),
    ("clarinet", 72),
    ("bassoon", 71),  # no slow flute, horn
)

# The corpus pieces that may be drawn, by pool. Chorales are found at run time; quartet movements
# and piano pieces are listed (whole multi-movement files such as beethoven/opus132 are left out:
# they take tens of seconds to parse for 90 s of music).
QUARTET_PIECES: tuple[str, ...] = tuple(
    [f"beethoven/opus18no1/movement{m}.mxl" for m in range(1, 5)]
    + [f"beethoven/opus59no{n}/movement{m}.mxl" for n in (1, 2, 3) for m in range(1, 5)]
    + [f"haydn/opus1no1/movement{m}.mxl" for m in range(1, 6)]
    + [f"haydn/opus74no1/movement{m}.mxl" for m in range(1, 5)]
    + [
        f"mozart/{k}/movement{m}.mxl"
        for k, n in (("k155", 3), ("k156", 4), ("k458", 4), ("k80", 4))
        for m in range(1, n + 1)
    ]
    + [f"schumann_robert/opus41no1/movement{m}.mxl" for m in range(1, 6)]
)
PIANO_PIECES: tuple[str, ...] = (
    "chopin/mazurka06-2.krn",
    "joplin/maple_leaf_rag.mxl",
    "mozart/k545/movement1_exposition.mxl",
    *(f"schumann_clara/polonaise_op1n{n}.mxl" for n in range(1, 5)),
)
# Train-only pools (issue 11, point 3): more, and more varied, music to learn from. The test split
# is drawn from the three pools above only (POOL_PATTERN), so these change what the models hear in
# training and nothing they are tested on. "vocal": Renaissance and later vocal polyphony
# (Palestrina masses, Monteverdi madrigals, Trecento pieces; found at run time), played by a drawn
# ensemble like the chorales; "accompanied": a solo line or voices over a piano, MusicNet's
# "Accompanied ..." ensembles (named parts keep their instrument; unnamed voices all take one
# drawn SOLO_PROGRAMS instrument); "keyboard": more piano pieces.
ACCOMPANIED_PIECES: tuple[str, ...] = (
    "beach/prayer_of_a_tired_child.musicxml",
    "corelli/opus3no1/1grave.xml",
    "handel/rinaldo/Lascia_chio_pianga.mxl",
    "liliuokalani/aloha_oe.mxl",
    "schubert/Lindenbaum.xml",
    "schumann_clara/opus17/movement3.xml",
    "weber/concertino_clarinet.mxl",
)
KEYBOARD_PIECES: tuple[str, ...] = (
    "cpebach/h186.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "verdi/laDonnaEMobile.mxl",
)
VOCAL_FOLDERS = {"palestrina": ".krn", "monteverdi": ".mxl", "trecento": ".xml"}
EXTRA_POOLS = ("vocal", "accompanied", "keyboard")
SOLO_PROGRAMS = (41, 69, 72)  # violin, oboe, clarinet: quick to speak (module docstring)
# Timbre swap (demo.timbre_swap, training pieces only): GM programs a training part may be played
# by instead of its own, for timbres the test splits' instruments do not have (the models
# transcribe pitch, not instrument). Each speaks quickly in both training SoundFonts: from
# note-on to -30 dB of the note's peak (2 ms windows, velocity 80, pitches 43-86) at most 10 ms in
# TimGM6mb and MuseScore_General (tests/test_demo.py checks TimGM6mb): electric grand, electric
# piano, harpsichord, celesta, vibraphone, marimba, drawbar organ, accordion, nylon, steel and
# jazz guitar, acoustic bass, contrabass, pizzicato strings, harp, trumpet, soprano and tenor sax,
# English horn. Left out as too slow in one of them: church organ (14-34 ms), trombone, muted
# trumpet, horn, alto sax (11 ms), flute (28 ms), string ensemble (up to 61 ms).
SWAP_PROGRAMS = (3, 5, 7, 9, 12, 13, 17, 22, 25, 26, 27, 33, 44, 46, 47, 57, 65, 67, 70)
# The order pools are drawn in, repeated, and the odds of each ensemble for a chorale: chorales
# last ~40 s, cut movements 90 s, so by time about 43% piano, 30% string quartet, 14% piano with
# strings, 14% wind quartet while the small piano pool lasts (MusicNet is over half solo piano).
POOL_PATTERN = ("chorale", "quartet", "chorale", "chorale", "piano", "chorale", "chorale")
CHORALE_ENSEMBLE_ODDS = {
    "piano": 0.4,
    "piano_strings": 0.25,
    "string_quartet": 0.1,
    "wind_quartet": 0.25,
}
BASE_VELOCITY = 80
TAIL_SECONDS = 1.0  # audio kept after the last note-off, for the release
TARGET_RMS = 0.1  # -20 dBFS: each source's share of a piece is mixed at this loudness (dry)
MIN_NOTE = 0.03  # seconds: same-key strikes closer than this are one note
MIN_CUT_NOTE = 0.1  # seconds: a note starting this close to the cut would be a click, not a note


class DemoWarning(UserWarning):
    """A corpus piece that was skipped (failed to parse, unusable); names the piece."""


PIANO_SOURCES = {"salamander": 0.6, "TimGM6mb": 0.2, "MuseScore_General": 0.2}
OTHER_SOURCES = {"TimGM6mb": 0.5, "MuseScore_General": 0.5}
SAMPLER = "salamander"  # the sampled grand (mtlib.sampler)
ORCHESTRA = (
    "tonejs"  # recorded strings and reeds (mtlib.orchestra); every other source name is a SoundFont
)


@dataclass(frozen=True)
class DemoConfig:
    """params.yaml `demo:`; every random choice is drawn from `seed` and the piece's path."""

    seed: int = 0
    train_minutes: float = 90.0
    test_minutes: float = 8.0
    max_seconds: float = 90.0  # long movements are cut to their first max_seconds
    sample_rate: int = 44100
    tempo_jitter: float = 0.08  # relative tempo change per piece, uniform +-
    velocity_jitter: int = 12  # per-note MIDI velocity change, uniform +-
    part_balance: int = 10  # per-part MIDI velocity offset, uniform +-
    timing_jitter_ms: float = 8.0  # per-note onset shift, uniform +-
    transpose: int = (
        0  # whole-piece transposition in semitones, uniform integer +- (pitch augmentation)
    )
    # Sources, drawn per piece by these weights: one for the piece's piano parts, one per other
    # instrument. "salamander" is the sampled grand, "tonejs" the recorded strings and reeds (only
    # for the programs it has: mtlib.orchestra.PROGRAMS); other names are SoundFonts (mtlib.soundfont).
    piano_sources: dict = field(default_factory=lambda: dict(PIANO_SOURCES))
    other_sources: dict = field(default_factory=lambda: dict(OTHER_SOURCES))
    pedal: dict = field(
        default_factory=dict
    )  # mtlib.sampler.PedalConfig: generated sustain pedal for piano parts
    recording: dict = field(
        default_factory=dict
    )  # mtlib.recording.RecordingConfig: the training chain
    # The unseen-timbre test split: the test pieces again, every part through this SoundFont (never
    # a training source) and a room no training piece has; "" = no such split.
    unseen_soundfont: str = "FluidR3Mono"
    unseen_recording: dict = field(default_factory=lambda: dict(UNSEEN_RECORDING))
    # The recorded-instrument test split: the test pieces again, played on recordings of a real
    # piano, strings and reeds (mtlib.orchestra; the oboe, which has none, on unseen_soundfont)
    # recorded through the training chain's ranges.
    recorded_test: bool = True
    # Chance that each non-piano instrument of a training piece is played by a program drawn
    # from SWAP_PROGRAMS instead (labels name the program played); test pieces never change
    # (0 = off: then the training pieces are exactly as without this key)
    timbre_swap: float = 0.0
    # Train-only pools: {pool: pieces per cycle of POOL_PATTERN} ({} = the test split's pools
    # only, the default: at 45 training minutes they cost test note F1, BENCHMARKS.md)
    extra_pools: dict = field(default_factory=dict)
    workers: int = 2  # processes parsing and rendering pieces

    def __post_init__(self):
        for name in ("piano_sources", "other_sources"):
            weights = getattr(self, name)
            if (
                not weights
                or any(float(w) < 0 for w in weights.values())
                or sum(map(float, weights.values())) <= 0
            ):
                raise ValueError(
                    f"params.yaml: demo.{name} needs source: weight pairs with a positive sum, got {weights}"
                )
            if (
                self.unseen_soundfont
                and self.unseen_soundfont in weights
                and float(weights[self.unseen_soundfont]) > 0
            ):
                raise ValueError(
                    f"params.yaml: demo.{name} uses {self.unseen_soundfont}, the unseen-timbre test "
                    "SoundFont (demo.unseen_soundfont): it must never be heard in training"
                )
        soundfonts = [k for k, v in self.other_sources.items() if k != ORCHESTRA and float(v) > 0]
        if float(self.other_sources.get(ORCHESTRA, 0)) > 0 and not soundfonts:
            raise ValueError(
                f"params.yaml: demo.other_sources: {ORCHESTRA} plays only some programs (violin, viola, "
                "cello, double bass, clarinet, bassoon); give a SoundFont a positive weight too, for the oboe"
            )
        if self.recorded_test and any(
            float(w.get(ORCHESTRA, 0)) > 0 for w in (self.piano_sources, self.other_sources)
        ):
            raise ValueError(
                f"params.yaml: demo.*_sources use {ORCHESTRA}, the recorded instruments of the "
                "test_recorded split (demo.recorded_test): they must never be heard in training; "
                "set demo.recorded_test: false to train on them"
            )
        for pool, count in self.extra_pools.items():
            if pool not in EXTRA_POOLS or int(count) < 0:
                raise ValueError(
                    f"params.yaml: demo.extra_pools: {pool}: {count} is not a pool and a count >= 0 "
                    f"(pools: {', '.join(EXTRA_POOLS)})"
                )
        if self.transpose < 0:
            raise ValueError(f"params.yaml: demo.transpose must be >= 0, got {self.transpose}")
        if not 0.0 <= float(self.timbre_swap) <= 1.0:
            raise ValueError(
                f"params.yaml: demo.timbre_swap is a probability in [0, 1], got {self.timbre_swap}"
            )
        self.pedal_config()  # validate the nested sections now, naming their keys
        self.recording_config()
        self.recording_config(unseen=True)

    def pedal_config(self):
        from mtlib.sampler import PedalConfig

        return _nested(PedalConfig, self.pedal, "demo.pedal")

    def recording_config(self, unseen: bool = False):
        from mtlib.recording import RecordingConfig

        return _nested(
            RecordingConfig,
            self.unseen_recording if unseen else self.recording,
            "demo.unseen_recording" if unseen else "demo.recording",
        )

    @property
    def recorded_fallback(self) -> str:
        """Who plays test_recorded's parts that have no recording (the oboe): the unseen SoundFont,
        never a training source, or TimGM6mb when there is none."""
        return self.unseen_soundfont or "TimGM6mb"

    def sources(self) -> list[str]:
        """Every source a training piece may use (those with a positive weight)."""
        return sorted(
            {
                k
                for w in (self.piano_sources, self.other_sources)
                for k, v in w.items()
                if float(v) > 0
            }
        )


# A room larger than any training room, at the training levels: mtlib.recording.UNSEEN_ROOM's ranges.
UNSEEN_RECORDING = {"room_size": list(UNSEEN_ROOM.room_size), "wet": list(UNSEEN_ROOM.wet)}


def _nested(cls, values: dict, where: str):
    from mtlib.params import config_from

    return config_from(cls, dict(values or {}), where)


@dataclass(frozen=True)
class Piece:
    """One corpus piece as the demo plays it: notes (seconds, GM program, velocity) and score beats."""

    path: str  # music21 corpus path, e.g. "bach/bwv66.6.mxl"
    pool: str  # "chorale" | "quartet" | "piano", or a train-only pool (EXTRA_POOLS)
    ensemble: str  # a key of ENSEMBLES, or "named" when the part names chose the programs
    notes: tuple[Note, ...]
    beats: tuple[Beat, ...]  # one per note, same order


@dataclass(frozen=True)
class DemoTrack:
    """One written track, as listed in musicnet_metadata.csv."""

    id: str
    split: str
    path: str
    pool: str
    ensemble: str
    seconds: float
    n_notes: int
    programs: tuple[int, ...]
    source: str = ""  # what played it and through which chain, for musicnet_metadata.csv


# ---------------------------------------------------------------- scores → one note list


def corpus_pools() -> dict[str, list[str]]:
    """Corpus paths per pool, sorted: chorales are the Bach .mxl files; the others are listed above."""
    from music21 import corpus
    from music21.common.pathTools import getCorpusFilePath

    root = Path(getCorpusFilePath())
    chorales = sorted(
        str(Path(p).relative_to(root))
        for p in corpus.getComposer("bach")
        if str(p).endswith(".mxl")
    )
    return {"chorale": chorales, "quartet": list(QUARTET_PIECES), "piano": list(PIANO_PIECES)}


def extra_pool_paths() -> dict[str, list[str]]:
    """Corpus paths of the train-only pools, sorted."""
    from music21 import corpus
    from music21.common.pathTools import getCorpusFilePath

    root = Path(getCorpusFilePath())
    vocal = sorted(
        str(Path(p).relative_to(root))
        for folder, suffix in VOCAL_FOLDERS.items()
        for p in corpus.getComposer(folder)
        if str(p).endswith(suffix)
    )
    return {
        "vocal": vocal,
        "accompanied": list(ACCOMPANIED_PIECES),
        "keyboard": list(KEYBOARD_PIECES),
    }


def train_order(
    seed: int, classic: Sequence[tuple[str, str]], extra_pools: dict
) -> list[tuple[str, str]]:
    """The train split's candidates: `classic` (what the test split left of candidate_order) with
    `extra_pools[pool]` pieces of each train-only pool before every POOL_PATTERN-long run of
    it, while they last. With no extra pools this is `classic` unchanged."""
    counts = {pool: int(n) for pool, n in sorted(extra_pools.items()) if int(n) > 0}
    if not counts:
        return list(classic)
    rng = np.random.default_rng([seed, 11])  # its own stream: the classic order stays as it was
    paths = extra_pool_paths()
    pools = {pool: list(rng.permutation(paths[pool])) for pool in counts}
    order: list[tuple[str, str]] = []
    for i, item in enumerate(classic):
        if i % len(POOL_PATTERN) == 0:
            for pool, n in counts.items():
                order += [(pool, str(pools[pool].pop(0))) for _ in range(min(n, len(pools[pool])))]
        order.append(item)
    return order


def candidate_order(seed: int) -> list[tuple[str, str]]:
    """(pool, path) in the order pieces are tried: each pool shuffled by `seed`, then interleaved
    by POOL_PATTERN until every pool is used up. The test split takes the first pieces; the train
    split the rest, with the train-only pools mixed in (train_order)."""
    rng = np.random.default_rng(seed)
    pools = {name: list(rng.permutation(paths)) for name, paths in sorted(corpus_pools().items())}
    order: list[tuple[str, str]] = []
    while any(pools.values()):
        for pool in POOL_PATTERN:
            if pools[pool]:
                order.append((pool, str(pools[pool].pop(0))))
    return order


def piece_rng(seed: int, path: str) -> np.random.Generator:
    """The piece's own random stream: independent of which worker renders it or of the split."""
    return np.random.default_rng([seed, zlib.crc32(path.encode())])


def part_programs(
    part_names: Sequence[str | None], pool: str, rng: np.random.Generator
) -> tuple[str, tuple[int, ...]]:
    """(ensemble name, one GM program per part). Piano pieces are piano; parts whose names all
    name an instrument keep it ("named"); in an accompanied piece the parts no name places
    (voices) all take one solo instrument drawn from SOLO_PROGRAMS; otherwise (chorale voices) an
    ensemble is drawn by CHORALE_ENSEMBLE_ODDS and its voices spread over the parts top to bottom."""
    if pool in ("piano", "keyboard"):
        return "piano", tuple(1 for _ in part_names)
    named = [_program_from_name(n) for n in part_names]
    if pool == "accompanied":
        solo = SOLO_PROGRAMS[int(rng.integers(len(SOLO_PROGRAMS)))]
        return "accompanied", tuple(solo if p is None else int(p) for p in named)
    if all(p is not None for p in named):
        return "named", tuple(int(p) for p in named)  # type: ignore[arg-type]
    names = sorted(CHORALE_ENSEMBLE_ODDS)
    ensemble = names[int(rng.choice(len(names), p=[CHORALE_ENSEMBLE_ODDS[n] for n in names]))]
    roles = ENSEMBLES[ensemble]
    n = len(part_names)
    return ensemble, tuple(roles[round(i * (len(roles) - 1) / max(n - 1, 1))] for i in range(n))


def _program_from_name(name: str | None) -> int | None:
    low = (name or "").lower()
    for pattern, program in PART_NAME_PROGRAMS:
        if re.search(pattern, low):
            return program
    return None


def ensemble_of(programs: Sequence[int]) -> str:
    """The ensemble a set of programs makes, in MusicNet's words (for the composition report)."""
    kinds = set(programs)
    if kinds == {1}:
        return "piano"
    if kinds <= {41, 42, 43, 44}:
        return "string_quartet"
    if kinds <= {69, 71, 72}:
        return "wind_quartet"
    if 1 in kinds and kinds <= {1, 41, 42, 43, 44}:
        return "piano_strings"
    return "mixed"


@dataclass(frozen=True)
class TempoMap:
    """Score position in quarter notes ↔ seconds, from every metronome mark (quartets change
    tempo): piecewise linear, the last tempo continuing past the last mark."""

    starts: tuple[float, ...]  # quarter-note position where each tempo begins, increasing
    seconds: tuple[float, ...]  # the time at each start
    sec_per_quarter: tuple[float, ...]

    @classmethod
    def from_score(cls, score) -> TempoMap:
        starts, seconds, rates = [], [], []
        elapsed = 0.0
        for start, end, mark in score.metronomeMarkBoundaries():
            if end <= start:
                continue  # music21 reports zero-length boundaries for marks at the same offset
            rate = 60.0 / float(mark.getQuarterBPM() or 120.0)
            starts.append(float(start))
            seconds.append(elapsed)
            rates.append(rate)
            elapsed += (float(end) - float(start)) * rate
        if not starts:
            return cls((0.0,), (0.0,), (0.5,))
        return cls(tuple(starts), tuple(seconds), tuple(rates))

    def to_seconds(self, quarters: float) -> float:
        k = max(int(np.searchsorted(self.starts, quarters, side="right")) - 1, 0)
        return self.seconds[k] + (quarters - self.starts[k]) * self.sec_per_quarter[k]

    def to_quarters(self, seconds: float) -> float:
        k = max(int(np.searchsorted(self.seconds, seconds, side="right")) - 1, 0)
        return self.starts[k] + (seconds - self.seconds[k]) / self.sec_per_quarter[k]


def note_value_words(quarter_length: float) -> str:
    """A duration in MusicNet's words ("Quarter", "Dotted Eighth", "Sixteenth", "Triplet Eighth")."""
    from music21 import duration

    name = duration.Duration(quarter_length).fullName
    name = re.sub(
        r"\b16th\b",
        "Sixteenth",
        re.sub(r"\b32nd\b", "Thirty Second", re.sub(r"\b64th\b", "Sixty Fourth", name)),
    )
    triplet = re.match(r"^(.*) Triplet \(.*\)$", name)
    return f"Triplet {triplet.group(1)}" if triplet else name


def score_to_piece(score, path: str, pool: str, cfg: DemoConfig) -> Piece:
    """One note list from a parsed score, varied by the piece's RNG and cut to cfg.max_seconds.

    Ties are stripped (a tied note is one note); repeats are not expanded (the audio plays what
    the labels list); grace notes and chord symbols are skipped; times snap to the sample grid;
    notes starting in the last MIN_CUT_NOTE seconds before the cut are dropped."""
    rng = piece_rng(cfg.seed, path)
    parts = list(score.parts)
    ensemble, programs = part_programs([p.partName for p in parts], pool, rng)
    tempo_scale = 1.0 / (
        1.0 + rng.uniform(-cfg.tempo_jitter, cfg.tempo_jitter)
    )  # seconds per score second
    balance = rng.integers(-cfg.part_balance, cfg.part_balance + 1, size=len(parts))
    tempo = TempoMap.from_score(score)
    last_onset = cfg.max_seconds - MIN_CUT_NOTE
    quarters_needed = tempo.to_quarters(cfg.max_seconds / tempo_scale + 1.0) + 1.0
    rows: list[tuple[Note, Beat]] = []
    for part, program, part_gain in zip(parts, programs, balance):
        for el in _tied_notes(part, quarters_needed):
            start, ql = float(el.offset), float(el.duration.quarterLength)
            onset = (
                tempo.to_seconds(start) * tempo_scale
                + rng.uniform(-1, 1) * cfg.timing_jitter_ms / 1000.0
            )
            onset, offset = (
                max(onset, 0.0),
                min(tempo.to_seconds(start + ql) * tempo_scale, cfg.max_seconds),
            )
            if onset > last_onset:
                continue
            beat = Beat(start, ql, note_value_words(ql))
            for pitch in sorted({p.midi for p in el.pitches}):
                velocity = (
                    BASE_VELOCITY
                    + part_gain
                    + rng.integers(-cfg.velocity_jitter, cfg.velocity_jitter + 1)
                )
                on, off = _snap(onset, cfg.sample_rate), _snap(offset, cfg.sample_rate)
                if off > on:
                    rows.append(
                        (
                            Note(on, off, int(pitch), int(program), int(np.clip(velocity, 1, 127))),
                            beat,
                        )
                    )
    rows = _trim_same_key_overlaps(rows)
    return Piece(path, pool, ensemble, tuple(n for n, _ in rows), tuple(b for _, b in rows))


def _tied_notes(part, quarters_needed: float) -> list:
    """The part's sounding notes and chords up to `quarters_needed`, ties merged into one note.

    stripTies runs on the flattened, truncated part: on a whole part with measures it is ~10x
    slower and (music21 10.5) can emit a tie chain's middle note twice."""
    from music21 import harmony

    flat = part.flatten().getElementsByOffset(0.0, quarters_needed).stream()
    flat.stripTies(inPlace=True)
    return [
        el
        for el in flat.notes
        if float(el.duration.quarterLength) > 0  # grace notes take no time
        and not isinstance(el, harmony.Harmony)
        and hasattr(el, "pitches")  # chord symbols, unpitched
    ]


def _snap(seconds: float, rate: int) -> float:
    # Labels are written as sample indices; snapping here makes the note list and the CSV identical.
    return seconds_to_samples(seconds, rate) / rate


def _trim_same_key_overlaps(rows: list[tuple[Note, Beat]]) -> list[tuple[Note, Beat]]:
    """Sort by onset, pitch; where one instrument strikes a key that is still sounding, end the
    earlier note there (one instrument cannot hold the same key twice, and the synth's note-off
    would release the wrong voice). Two strikes closer than MIN_NOTE (a unison between two voices
    whose onsets jitter apart) become one note spanning both."""
    rows = sorted(
        rows, key=lambda r: (r[0].onset, r[0].pitch, r[0].program, r[0].offset, r[1].start_beat)
    )
    last: dict[tuple[int, int], int] = {}  # (program, pitch) -> index in `out` of its latest note
    out: list[tuple[Note, Beat] | None] = []
    for note, beat in rows:
        key = (note.program, note.pitch)
        i = last.get(key)
        prev, prev_beat = out[i] if i is not None else (None, None)  # type: ignore[misc]
        if prev is not None and prev.offset > note.onset:
            if note.onset - prev.onset < MIN_NOTE:
                out[i] = (replace(prev, offset=max(prev.offset, note.offset)), prev_beat)  # type: ignore[index]
                continue
            out[i] = (replace(prev, offset=note.onset), prev_beat)  # type: ignore[index]
        last[key] = len(out)
        out.append((note, beat))
    return [r for r in out if r is not None]


# ---------------------------------------------------------------- one note list → audio


def render_notes(
    notes: Sequence[Note],
    soundfont: str | Path,
    sample_rate: int = 44100,
    tail_seconds: float = TAIL_SECONDS,
    pedal: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """Play notes through a GM SoundFont, sample-accurately: mono float32, not normalised.

    One MIDI channel per program (channel 9, drums, is skipped); each note-on/off happens at
    round(time * sample_rate), the same sample index the label CSV stores; `pedal` (down, up)
    intervals in seconds hold piano notes released under them (`sounding_until`). The synth is run
    in chunks between events (tinysoundfont's sequencer would quantise events to its buffer)."""
    programs = sorted({n.program for n in notes})
    channels = [c for c in range(16) if c != 9]
    if len(programs) > len(channels):
        raise ValueError(
            f"{len(programs)} programs; at most {len(channels)} fit on the MIDI channels"
        )
    channel_of = {p: channels[i] for i, p in enumerate(programs)}
    synth, sfid = _synth(str(soundfont), sample_rate)
    for program, chan in channel_of.items():
        synth.program_select(chan, sfid, 0, max(program - 1, 0))  # GM programs are 1-based here
    releases = sounding_until(notes, pedal)
    events = sorted(
        [
            (seconds_to_samples(t, sample_rate), 0, channel_of[n.program], n.pitch, 0)
            for n, t in zip(notes, releases)
        ]
        + [
            (
                seconds_to_samples(n.onset, sample_rate),
                1,
                channel_of[n.program],
                n.pitch,
                n.velocity,
            )
            for n in notes
        ]
    )  # at one sample, note-offs (0) come before note-ons (1)
    end = (max(e[0] for e in events) if events else 0) + int(round(tail_seconds * sample_rate))
    audio = np.zeros(end, dtype=np.float32)
    pos = 0
    try:
        for sample, is_on, chan, pitch, velocity in events:
            if sample > pos:
                audio[pos:sample] = _generate(synth, sample - pos)
                pos = sample
            if is_on:
                synth.noteon(chan, pitch, velocity)
            else:
                synth.noteoff(chan, pitch)
        if end > pos:
            audio[pos:end] = _generate(synth, end - pos)
    finally:
        _silence(synth)
    return audio


def sounding_until(notes: Sequence[Note], pedal: Sequence[tuple[float, float]]) -> list[float]:
    """When each note's sound is released: its key release (the label's offset), or for a piano
    note released under the sustain pedal, the pedal's lift, but never after the same key is
    struck again. tinysoundfont ignores MIDI CC 64, so the pedal is played by moving note-offs,
    which is what a sustain pedal does to the dampers."""
    passages = sorted(pedal)
    next_strike: dict[tuple[int, int], float] = {}
    out = [0.0] * len(notes)
    for i in sorted(range(len(notes)), key=lambda i: -notes[i].onset):  # latest first
        n = notes[i]
        release = n.offset
        if n.program == 1:
            release = next((up for down, up in passages if down <= n.offset < up), n.offset)
        out[i] = min(release, next_strike.get((n.program, n.pitch), release))
        next_strike[(n.program, n.pitch)] = n.onset
    return out


@functools.lru_cache(maxsize=4)
def _synth(soundfont: str, sample_rate: int):
    """One loaded synth per (SoundFont, rate) and process: an SF3 takes seconds to load, so a
    worker loads each once and `_silence` returns it to a clean state after every piece."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    return synth, synth.sfload(soundfont)


def _silence(synth) -> None:
    """End every voice, then render until the quick release has died out, so the next piece
    starts from silence whatever this one left sounding."""
    synth.sounds_off()
    synth.generate(4096)


def _generate(synth, n_samples: int) -> np.ndarray:
    stereo = np.frombuffer(synth.generate(n_samples), dtype=np.float32).reshape(-1, 2)  # (n, 2)
    return stereo.mean(axis=1)


def swap_timbres(notes: Sequence[Note], rng: np.random.Generator, probability: float) -> list[Note]:
    """The notes with each non-piano program, with `probability`, replaced by one drawn from
    SWAP_PROGRAMS (the same for all of that program's notes). Two draws per program whatever the
    outcome, so each program's fate does not depend on the others'."""
    programs = sorted({n.program for n in notes if n.program != 1})
    swap = {}
    for program in programs:
        hit, pick = rng.random() < probability, int(rng.integers(len(SWAP_PROGRAMS)))
        if hit:
            swap[program] = SWAP_PROGRAMS[pick]
    return [replace(n, program=swap.get(n.program, n.program)) for n in notes]


def draw_sources(
    programs: Sequence[int], rng: np.random.Generator, cfg: DemoConfig
) -> dict[int, str]:
    """{program: source} for one piece: the piano (program 1) from cfg.piano_sources, every other
    program from cfg.other_sources (those of them that can play it), each drawn by weight. One
    draw per program whatever the weights, so the random stream after it (the pedal) stays put."""
    from mtlib.orchestra import PROGRAMS

    def draw(weights: dict) -> str:
        names = sorted(weights)
        p = np.array([float(weights[n]) for n in names])
        return names[int(rng.choice(len(names), p=p / p.sum()))]

    def playable(prog: int) -> dict:
        if prog == 1:
            return cfg.piano_sources
        return {k: v for k, v in cfg.other_sources.items() if k != ORCHESTRA or prog in PROGRAMS}

    return {prog: draw(playable(prog)) for prog in sorted(set(programs))}


def render_piece(
    notes: Sequence[Note],
    sources: dict[int, str],
    sample_rate: int,
    pedal: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """A piece's notes played by their sources (program → source), the sources mixed at equal
    loudness per note played (each source's audio at TARGET_RMS * sqrt(its share of the notes))."""
    from mtlib.orchestra import render_orchestra
    from mtlib.sampler import render_piano
    from mtlib.soundfont import soundfont_path

    groups: dict[str, list[Note]] = {}
    for n in notes:
        groups.setdefault(sources[n.program], []).append(n)
    parts = []
    for source, group in sorted(groups.items()):
        if source == SAMPLER:
            audio = render_piano(group, sample_rate, pedal=pedal, tail_seconds=TAIL_SECONDS)
        elif source == ORCHESTRA:
            # a piano note rings to the pedal lift; its label keeps the key release
            sounding = [replace(n, offset=t) for n, t in zip(group, sounding_until(group, pedal))]
            audio = render_orchestra(sounding, sample_rate, tail_seconds=TAIL_SECONDS)
        else:
            audio = render_notes(
                group, soundfont_path(source, verify=False), sample_rate, pedal=pedal
            )
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if audio.size else 0.0
        parts.append(
            audio * np.float32(TARGET_RMS * np.sqrt(len(group) / len(notes)) / rms)
            if rms > 0
            else audio
        )
    out = np.zeros(max((a.size for a in parts), default=0), dtype=np.float32)
    for a in parts:
        out[: a.size] += a
    return out


def transpose_notes(
    notes: Sequence[Note],
    beats: Sequence[Beat],
    semitones: int,
    lowest: int = 21,
    highest: int = 108,
) -> tuple[tuple[Note, ...], tuple[Beat, ...]]:
    """Every note moved by `semitones`; notes that leave the piano's range are dropped."""
    kept = [
        (replace(n, pitch=n.pitch + semitones), b)
        for n, b in zip(notes, beats)
        if lowest <= n.pitch + semitones <= highest
    ]
    return tuple(n for n, _ in kept), tuple(b for _, b in kept)


# ---------------------------------------------------------------- pieces → the MusicNet folder


@dataclass(frozen=True)
class _Job:
    pool: str
    path: str
    cfg: DemoConfig
    train: bool = False  # a training piece: demo.timbre_swap applies


@dataclass(frozen=True)
class _Rendered:
    """A worker's result: the piece as played, its recorded audio, and what played it."""

    piece: Piece
    audio: np.ndarray
    source: str
    pedal: tuple[tuple[float, float], ...]


def _render_job(job: _Job) -> _Rendered | str:
    """Parse, vary, transpose and render one piece through its drawn sources and recording chain
    (runs in a worker). A failure comes back as its message."""
    from music21 import corpus

    cfg = job.cfg
    try:
        score = corpus.parse(job.path)
        if not 1 <= len(score.parts) <= 15:
            return f"{len(score.parts)} parts (1-15 fit the MIDI channels)"
        piece = score_to_piece(score, job.path, job.pool, cfg)
    except Exception as exc:  # music21 raises many types on the odd corpus file; skip the piece
        return f"{type(exc).__name__}: {exc}"
    played = perform(piece, cfg, train=job.train)
    if played is None:
        return "no notes"
    audio, source = _play_and_record(played.piece, played.sources, played.pedal, cfg, unseen=False)
    if played.shift:
        source = f"transposed {played.shift:+d}; {source}"
    return _Rendered(played.piece, audio, source, played.pedal)


@dataclass(frozen=True)
class Performance:
    """A piece as the demo performs it, before any audio: the notes as played (transposed, and
    for a training piece with demo.timbre_swap, re-orchestrated), the source drawn for each GM
    program, and the generated sustain pedal ((down, up) seconds; the piano rings under it while
    its labels keep the key release)."""

    piece: Piece
    sources: dict[int, str]
    pedal: tuple[tuple[float, float], ...]
    shift: int  # semitones the piece was transposed by


def perform(piece: Piece, cfg: DemoConfig, train: bool = False) -> Performance | None:
    """Draw the performance of a parsed corpus piece from its own seeded streams (the same on
    every run and in every worker); None when transposition leaves no notes. The renderer plays
    exactly this, so an analysis can replay a track's pedal without its audio
    (benchmarks/offset_errors.py)."""
    from mtlib.sampler import pedal_passages

    shift = (
        int(piece_rng(cfg.seed + 3, piece.path).integers(-cfg.transpose, cfg.transpose + 1))
        if cfg.transpose
        else 0
    )
    notes, beats = transpose_notes(piece.notes, piece.beats, shift)
    if not notes:
        return None
    if train and cfg.timbre_swap > 0:  # its own stream: off, nothing else moves
        notes = tuple(swap_timbres(notes, piece_rng(cfg.seed + 6, piece.path), cfg.timbre_swap))
    rng = piece_rng(cfg.seed + 4, piece.path)
    sources = draw_sources([n.program for n in notes], rng, cfg)
    piano = [n for n in notes if n.program == 1]
    pedal = tuple(pedal_passages(piano, rng, cfg.pedal_config())) if piano else ()
    return Performance(replace(piece, notes=notes, beats=beats), sources, pedal, shift)


def _render_unseen(args: tuple[_Rendered, DemoConfig]) -> tuple[np.ndarray, str]:
    """The same performance (notes, pedal) through the unseen SoundFont and room (in a worker)."""
    rendered, cfg = args
    sources = {p: cfg.unseen_soundfont for p in {n.program for n in rendered.piece.notes}}
    return _play_and_record(rendered.piece, sources, rendered.pedal, cfg, unseen=True)


def _render_recorded(args: tuple[_Rendered, DemoConfig]) -> tuple[np.ndarray, str]:
    """The same performance on the recorded instruments, in a training-range room (in a worker)."""
    from mtlib.orchestra import PROGRAMS

    rendered, cfg = args
    sources = {
        p: ORCHESTRA if p in PROGRAMS else cfg.recorded_fallback
        for p in {n.program for n in rendered.piece.notes}
    }
    return _play_and_record(rendered.piece, sources, rendered.pedal, cfg, unseen=False, stream=5)


def _play_and_record(
    piece: Piece,
    sources: dict[int, str],
    pedal,
    cfg: DemoConfig,
    unseen: bool,
    stream: int | None = None,
) -> tuple[np.ndarray, str]:
    """Render and record a piece; the chain is drawn from its own stream of the seed (1: training
    and test, 2: test_unseen, 5: test_recorded)."""
    from mtlib.recording import draw_chain, record

    dry = render_piece(piece.notes, sources, cfg.sample_rate, pedal)
    rng = piece_rng(cfg.seed + (stream or (2 if unseen else 1)), piece.path)
    chain = draw_chain(rng, cfg.recording_config(unseen))
    audio, chain = record(dry, cfg.sample_rate, chain, rng)
    played = ", ".join(f"{'piano' if p == 1 else p}: {src}" for p, src in sorted(sources.items()))
    pedal_text = f"; pedal {len(pedal)}x" if pedal and 1 in sources else ""
    return audio, f"{played}{pedal_text}; {describe_chain(chain)}"


def describe_chain(chain) -> str:
    """One line for the metadata: the room, EQ, compression, noise and level a piece got."""
    noise = (
        f"{chain.noise_color} noise {chain.noise_snr_db:.0f} dB SNR"
        if chain.noise_color
        else "no noise"
    )
    comp = f"compressor {chain.compress_ratio:.1f}:1" if chain.compress else "no compressor"
    level = chain.actual_level_db if chain.actual_level_db is not None else chain.level_db
    return (
        f"room {chain.room_size:.2f} wet {chain.wet:.2f}, tilt {chain.tilt_db:+.1f} dB, {comp}, {noise}, "
        f"level {level:.1f} dBFS"
    )


def _rendered_in_order(
    fn: Callable, jobs: Sequence, workers: int
) -> Iterator[tuple[object, object]]:
    """(job, fn(job)) in job order, computed `workers` at a time with a small look-ahead window;
    the consumer stops early without waiting for the rest."""
    if workers <= 1:
        for job in jobs:
            yield job, fn(job)
        return
    window = 2 * workers
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: list[tuple[object, Future]] = []
        queue = iter(jobs)
        try:
            while True:
                while len(pending) < window and (job := next(queue, None)) is not None:
                    pending.append((job, pool.submit(fn, job)))
                if not pending:
                    return
                job, fut = pending.pop(0)
                yield job, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def check_sources(cfg: DemoConfig) -> None:
    """Fail before any work if a source's files are missing (SoundFontError / AssetError name the fix)."""
    from mtlib.assets import ORCHESTRA as ORCHESTRA_ASSETS
    from mtlib.assets import PIANO_LAYERS, PIANO_RELEASE, asset_dir
    from mtlib.soundfont import soundfont_path

    extra = [cfg.unseen_soundfont] if cfg.unseen_soundfont else []
    extra += [ORCHESTRA, cfg.recorded_fallback] if cfg.recorded_test else []
    for source in dict.fromkeys(cfg.sources() + extra):  # each checked once
        if source == SAMPLER:
            for asset in (*PIANO_LAYERS, PIANO_RELEASE):
                asset_dir(asset)
        elif source == ORCHESTRA:
            for asset in ORCHESTRA_ASSETS.values():
                asset_dir(asset)
        else:
            soundfont_path(source)


def build_demo(
    out: str | Path, cfg: DemoConfig, progress: Callable[[DemoTrack], None] | None = None
) -> list[DemoTrack]:
    """Write the demo dataset into folder `out` (which should be empty) in the MusicNet layout.

    Pieces are tried in `candidate_order(cfg.seed)`: the test split takes whole pieces until it
    holds cfg.test_minutes, then the train split takes the following pieces, with
    cfg.extra_pools mixed in (train_order), until cfg.train_minutes, so no piece is in both.
    Track ids count up from 1 in that order. Pieces that fail to parse are skipped with a
    DemoWarning. With cfg.unseen_soundfont, the test pieces are played again through it and an
    unseen room into `test_unseen_{data,labels}/`, as track `u<id>` with the same labels.
    Returns the tracks written."""
    out = Path(out)
    check_sources(cfg)
    splits = ("train", "test")
    splits += ("test_unseen",) if cfg.unseen_soundfont else ()
    splits += ("test_recorded",) if cfg.recorded_test else ()
    for split in splits:
        (out / f"{split}_data").mkdir(parents=True, exist_ok=True)
        (out / f"{split}_labels").mkdir(parents=True, exist_ok=True)
    writer = _DemoWriter(out, cfg, progress)
    classic = candidate_order(cfg.seed)
    used = writer.fill("test", classic, cfg.test_minutes * 60.0)
    train = train_order(cfg.seed, classic[used:], cfg.extra_pools)
    writer.fill("train", train, cfg.train_minutes * 60.0)
    if cfg.unseen_soundfont:
        unseen_jobs = [(rendered, cfg) for _, rendered in writer.test_pieces]
        for (tid, rendered), (_, (audio, source)) in zip(
            writer.test_pieces, _rendered_in_order(_render_unseen, unseen_jobs, cfg.workers)
        ):
            writer.write("test_unseen", f"u{tid}", rendered.piece, audio, source)
    if cfg.recorded_test:
        jobs = [(rendered, cfg) for _, rendered in writer.test_pieces]
        for (tid, rendered), (_, (audio, source)) in zip(
            writer.test_pieces, _rendered_in_order(_render_recorded, jobs, cfg.workers)
        ):
            writer.write("test_recorded", f"r{tid}", rendered.piece, audio, source)
    write_metadata(out / "musicnet_metadata.csv", writer.tracks, cfg)
    return writer.tracks


@dataclass
class _DemoWriter:
    """build_demo's output: the tracks written so far, and the test pieces as rendered."""

    out: Path
    cfg: DemoConfig
    progress: Callable[[DemoTrack], None] | None = None
    tracks: list[DemoTrack] = field(default_factory=list)
    test_pieces: list[tuple[str, _Rendered]] = field(default_factory=list)

    def write(self, split: str, tid: str, piece: Piece, audio: np.ndarray, source: str) -> None:
        from mtlib.audio import write_wav
        from mtlib.musicnet import write_labels

        rate = self.cfg.sample_rate
        write_wav(self.out / f"{split}_data" / f"{tid}.wav", audio, rate)
        write_labels(
            self.out / f"{split}_labels" / f"{tid}.csv", piece.notes, rate, beats=piece.beats
        )
        programs = tuple(sorted({n.program for n in piece.notes}))
        self.tracks.append(
            DemoTrack(
                tid,
                split,
                piece.path,
                piece.pool,
                ensemble_of(programs),
                audio.size / rate,
                len(piece.notes),
                programs,
                source,
            )
        )
        if self.progress is not None:
            self.progress(self.tracks[-1])

    def fill(self, split: str, order: Sequence[tuple[str, str]], seconds: float) -> int:
        """Render `order` into `split` until it holds `seconds`; returns how many were tried."""
        tried, filled = 0, 0.0
        jobs = [_Job(pool, path, self.cfg, train=split == "train") for pool, path in order]
        for job, result in _rendered_in_order(_render_job, jobs, self.cfg.workers):
            if filled >= seconds:
                break
            tried += 1
            if isinstance(result, str):
                warnings.warn(
                    DemoWarning(f"music21 corpus {job.path}: skipped ({result})"), stacklevel=3
                )
                continue
            tid = str(len(self.tracks) + 1)
            self.write(split, tid, result.piece, result.audio, result.source)
            filled += self.tracks[-1].seconds
            if split == "test":
                self.test_pieces.append((tid, result))
        return tried


METADATA_COLUMNS = (
    "id",
    "composer",
    "composition",
    "movement",
    "ensemble",
    "source",
    "transcriber",
    "catalog_name",
    "seconds",
)


def write_metadata(path: Path, tracks: Sequence[DemoTrack], cfg: DemoConfig) -> None:
    """musicnet_metadata.csv with MusicNet's columns, filled from the corpus path."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(METADATA_COLUMNS)
        for t in tracks:
            parts = Path(t.path).with_suffix("").parts
            w.writerow(
                [
                    t.id,
                    parts[0].split("_")[0].capitalize(),
                    "/".join(parts[1:-1]) or parts[-1],
                    parts[-1] if len(parts) > 2 else "",
                    t.ensemble,
                    f"music21 corpus (seed {cfg.seed}); {t.source}",
                    "music21",
                    t.path,
                    math.floor(t.seconds),
                ]
            )


def composition(tracks: Sequence[DemoTrack]) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {ensemble: {"pieces": n, "minutes": m}}}: what the demo is made of."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for t in tracks:
        row = table.setdefault(t.split, {}).setdefault(t.ensemble, {"pieces": 0, "minutes": 0.0})
        row["pieces"] += 1
        row["minutes"] = round(row["minutes"] + t.seconds / 60.0, 2)
    return table
