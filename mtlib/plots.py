"""Piano-roll PNGs, reference against prediction, that a user opens directly or `dvc plots` shows.

Matplotlib is imported inside the function (Agg backend) so importing mtlib stays cheap and
works without a display."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtlib.notes import Note

COLOURS = {"matched": "#2b8a3e", "missed": "#f08c00", "false": "#e03131", "reference": "#868e96"}
LEGEND = {
    "reference": "reference, found",
    "missed": "reference, missed",
    "matched": "prediction, correct",
    "false": "prediction, false",
}


def note_outcomes(
    ref_notes: Sequence[Note], est_notes: Sequence[Note], onset_tolerance: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """(ref_matched (N_ref,) bool, est_matched (N_est,) bool) under mir_eval's onset-only matching."""
    from mtlib.metrics import match_notes

    ref_matched = np.zeros(len(ref_notes), dtype=bool)
    est_matched = np.zeros(len(est_notes), dtype=bool)
    for i, j in match_notes(ref_notes, est_notes, onset_tolerance):
        ref_matched[i], est_matched[j] = True, True
    return ref_matched, est_matched


def _draw_notes(ax, notes: Sequence[Note], colours: Sequence[str]) -> None:
    """One horizontal bar per note: x = onset..offset (s), y = MIDI pitch."""
    if not notes:
        return
    onsets = np.array([n.onset for n in notes])
    durations = np.array([max(n.offset - n.onset, 1e-3) for n in notes])
    pitches = np.array([n.pitch for n in notes])
    ax.barh(pitches, durations, left=onsets, height=0.8, color=list(colours), linewidth=0)


def piano_roll_png(
    path: str | Path,
    ref_notes: Sequence[Note],
    est_notes: Sequence[Note],
    title: str,
    seconds: float | None = None,
    onset_tolerance: float = 0.05,
) -> None:
    """Two stacked piano rolls, written atomically as PNG: the reference (matched notes grey,
    missed orange) above the prediction (matched green, false red), matched at `onset_tolerance`.

    `seconds` crops both to the first that many seconds; matching uses the whole track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mtlib.io import atomic_path

    ref_matched, est_matched = note_outcomes(ref_notes, est_notes, onset_tolerance)
    ref_colours = np.where(ref_matched, COLOURS["reference"], COLOURS["missed"])
    est_colours = np.where(est_matched, COLOURS["matched"], COLOURS["false"])
    if seconds is not None:
        ref_keep = np.array([n.onset < seconds for n in ref_notes], dtype=bool)
        est_keep = np.array([n.onset < seconds for n in est_notes], dtype=bool)
        ref_notes, ref_colours = (
            [n for n, k in zip(ref_notes, ref_keep) if k],
            ref_colours[ref_keep],
        )
        est_notes, est_colours = (
            [n for n, k in zip(est_notes, est_keep) if k],
            est_colours[est_keep],
        )

    fig, (ax_ref, ax_est) = plt.subplots(
        2, 1, sharex=True, sharey=True, figsize=(12, 6), constrained_layout=True
    )
    try:
        _draw_notes(ax_ref, ref_notes, ref_colours)
        _draw_notes(ax_est, est_notes, est_colours)
        pitches = [n.pitch for n in (*ref_notes, *est_notes)] or [60]
        end = (
            seconds
            if seconds is not None
            else max([n.offset for n in (*ref_notes, *est_notes)], default=1.0)
        )
        ax_ref.set_ylim(min(pitches) - 2, max(pitches) + 2)
        ax_ref.set_xlim(0, end)
        ax_ref.set_title(f"{title}: reference ({int(ref_matched.sum())}/{len(ref_matched)} found)")
        tolerance_ms = onset_tolerance * 1000
        ax_est.set_title(
            f"prediction ({int(est_matched.sum())}/{len(est_matched)} correct, onset ±{tolerance_ms:.0f} ms)"
        )
        for ax in (ax_ref, ax_est):
            ax.set_ylabel("MIDI pitch")
            ax.grid(axis="x", alpha=0.3)
        ax_est.set_xlabel("time (s)")
        legend = [Patch(color=COLOURS[k], label=label) for k, label in LEGEND.items()]
        fig.legend(handles=legend, loc="outside lower center", ncols=4, fontsize="small")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def transcription_png(
    path: str | Path, notes: Sequence[Note], title: str, seconds: float | None = None
) -> None:
    """One piano roll of a transcription with no reference (what `mt transcribe` writes), atomically.

    Wide enough for about 10 pixels per second of the shown span; `seconds` crops it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtlib.io import atomic_path

    if seconds is not None:
        notes = [n for n in notes if n.onset < seconds]
    end = seconds if seconds is not None else max([n.offset for n in notes], default=1.0)
    width = float(np.clip(end / 10.0, 8.0, 60.0))
    fig, ax = plt.subplots(figsize=(width, 4), constrained_layout=True)
    try:
        _draw_notes(ax, notes, [COLOURS["matched"]] * len(notes))
        pitches = [n.pitch for n in notes] or [60]
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
        ax.set_xlim(0, end)
        ax.set_title(f"{title}: {len(notes)} notes")
        ax.set_ylabel("MIDI pitch")
        ax.set_xlabel("time (s)")
        ax.grid(axis="x", alpha=0.3)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
