"""Results a person can see and hear with no network: the run's report page and DVC's plots.

Two pages use the vega plotting libraries (vega, vega-lite, vega-embed: npm packages that the
set-up fetches with pinned checksums, `mtlib.assets`), always inlined, never from a CDN:

- `write_plots_template`: the HTML template `dvc plots show` fills (`.dvc/plots_template.html`,
  named by `.dvc/config`'s `plots.html_template`, written by `scripts/setup`). DVC's own page
  loads the libraries from cdn.jsdelivr.net and draws nothing offline.
- `write_report`: the report stage's `plots/report/index.html`, one self-contained page per run:
  both models side by side (metrics for each test split, training curves, the decode sweep,
  per-track note F1, piano rolls) and A/B audio of the first test tracks (`report.ab_tracks`:
  recording left, transcription right, `mtlib.sonify`) in `plots/report/audio/`.

The page is written by hand (Python's string formatting and `html.escape`): DVC renders only its
own plots, and a template engine would be one more dependency for one page.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtlib.musicnet import split_file_suffix
from mtlib.pipeline import KINDS

LABELS = {"ctc": "CTC", "seq2seq": "Seq2Seq"}
VEGA_BUILDS = (  # (asset, file inside its npm package), in load order
    ("VEGA", "build/vega.min.js"),
    ("VEGA_LITE", "build/vega-lite.min.js"),
    ("VEGA_EMBED", "build/vega-embed.min.js"),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.chosen td { font-weight: bold; background: #eef6ee; }
.pair { display: flex; gap: 1em; flex-wrap: wrap; }
.pair figure { margin: 0; flex: 1 1 30em; }
.pair img { width: 100%; }
.chart { margin: 0.5em 0 1.5em; }
"""
METRIC_ROWS = (  # (metrics JSON key, label)
    ("note/f1", "note F1 (onset ±50 ms)"),
    ("note/precision", "note precision"),
    ("note/recall", "note recall"),
    ("note_offset/f1", "note-with-offset F1"),
    ("frame/f1", "frame F1"),
    ("raw/note/f1", "raw/ note F1 (tokens only, no head refinement)"),
    ("raw/note_offset/f1", "raw/ note-with-offset F1"),
    ("tracks", "tracks"),
    ("split", "split"),
)


def vega_scripts() -> str:
    """The three libraries as inline <script> elements (AssetError naming the set-up if missing)."""
    from mtlib import assets

    parts = []
    for name, rel in VEGA_BUILDS:
        asset = getattr(assets, name)
        code = (assets.asset_dir(asset) / rel).read_text(encoding="utf-8")
        # an inline script ends at the first "</script", whatever the JavaScript means by it
        code = code.replace("</script", "<\\/script")
        parts.append(f"<script>/* {asset.name}@{asset.version}, BSD-3-Clause */\n{code}\n</script>")
    return "\n".join(parts)


def plots_template() -> str:
    """dvc-render's page with the libraries inlined and no `{scripts}` placeholder (that is where
    DVC puts its CDN links); `{plot_divs}` and `{refresh_tag}` are DVC's to fill."""
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<meta charset='utf-8'>\n"
        "<title>DVC plots (offline)</title>\n" + vega_scripts() + "\n<style>table { border-spacing:"
        " 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n"
    )


def write_plots_template(path: str | Path) -> None:
    from mtlib.io import write_text

    write_text(path, plots_template())


@dataclass
class Page:
    """An HTML body under construction plus the vega-embed calls that draw its charts."""

    body: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> None:
        self.body.extend(parts)

    def chart(self, spec: dict) -> None:
        cid = f"chart{len(self.charts) + 1}"
        self.body.append(f'<div class="chart" id="{cid}"></div>')
        data = json.dumps(spec).replace("</", "<\\/")
        self.charts.append(f'vegaEmbed("#{cid}", {data}, {{"actions": false}});')

    def html(self, title: str) -> str:
        return (
            f"<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n<title>{html.escape(title)}"
            f"</title>\n<style>{STYLE}</style>\n{vega_scripts()}\n</head>\n<body>\n"
            + "\n".join(self.body)
            + "\n<script>\n"
            + "\n".join(self.charts)
            + "\n</script>\n</body>\n</html>\n"
        )


def table(header: Sequence[str], rows: Sequence[Sequence], chosen: Sequence[bool] = ()) -> str:
    """An HTML table; floats to 3 decimals; rows flagged in `chosen` are highlighted."""

    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=chosen' if i < len(chosen) and chosen[i] else ''}>"
        + "".join(f"<td>{cell(v)}</td>" for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_section(page: Page, metrics_dir: Path, splits: Sequence[str]) -> None:
    """One table per split: the metrics JSON of each model, side by side."""
    page.add("<h2>Metrics</h2>")
    for split in splits:
        found = {}
        for kind in KINDS:
            path = metrics_dir / f"{kind}{split_file_suffix(split)}.json"
            if path.is_file():
                found[kind] = json.loads(path.read_text())
        if not found:
            page.add(f"<p>{html.escape(split)}: no metrics (no {split} tracks evaluated).</p>")
            continue
        rows = [
            [label] + [found.get(k, {}).get(key, "–") for k in KINDS] for key, label in METRIC_ROWS
        ]
        page.add(f"<h3>{html.escape(split)}</h3>", table(["metric", *LABELS.values()], rows))


def read_tsv(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep="\t")


def curves_section(page: Page, live_root: Path) -> None:
    """Training curves from dvclive: validation note F1 and train/val loss per epoch (dvclive
    logs once per epoch from step 0, so epoch = step + 1)."""
    page.add("<h2>Training</h2>")
    f1, loss = [], []
    for kind in KINDS:
        metrics = live_root / kind / "plots" / "metrics"
        f1_path = metrics / "val" / "note_f1.tsv"
        if f1_path.is_file():
            f1 += [
                {"epoch": int(r.step) + 1, "note F1": float(r.note_f1), "model": LABELS[kind]}
                for r in read_tsv(f1_path).itertuples()
            ]
        for part in ("train", "val"):
            path = metrics / part / "loss" / "total.tsv"
            if path.is_file():
                df = read_tsv(path)
                loss += [
                    {"epoch": int(s) + 1, "loss": float(v), "curve": f"{LABELS[kind]} {part}"}
                    for s, v in zip(df["step"], df["total"], strict=True)
                ]
    if not f1 and not loss:
        page.add(f"<p>No training curves under {html.escape(str(live_root))}.</p>")
    if f1:
        page.chart(line_spec(f1, "epoch", "note F1", "model", "Validation note F1 per epoch"))
    if loss:
        page.chart(line_spec(loss, "epoch", "loss", "curve", "Total loss per epoch"))


def line_spec(values: list[dict], x: str, y: str, colour: str, title: str) -> dict:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": 600,
        "height": 250,
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": x, "type": "quantitative"},
            "y": {"field": y, "type": "quantitative"},
            "color": {"field": colour, "type": "nominal"},
        },
    }


def bar_spec(values: list[dict], x: str, y: str, colour: str, title: str) -> dict:
    """Horizontal bars of `x` per `y` category, one bar per `colour` within each (grouped)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": 500,
        "data": {"values": values},
        "mark": "bar",
        "encoding": {
            "x": {"field": x, "type": "quantitative", "scale": {"domain": [0, 1]}},
            "y": {"field": y, "type": "nominal", "sort": None},
            "yOffset": {"field": colour},
            "color": {"field": colour, "type": "nominal"},
        },
    }


def sweep_section(page: Page, sweep_plots: Path, sweep_dir: Path) -> None:
    """Each model's decode sweep on val: every setting, the chosen one highlighted."""
    import pandas as pd

    page.add("<h2>Decode sweep (val)</h2>")
    for kind in KINDS:
        path = sweep_plots / f"sweep_{kind}.csv"
        if not path.is_file():
            page.add(f"<p>{LABELS[kind]}: no sweep ({html.escape(str(path))} missing).</p>")
            continue
        df = pd.read_csv(path)
        best_path = sweep_dir / f"best_{kind}.json"
        decode = json.loads(best_path.read_text())["decode"] if best_path.is_file() else {}
        keys = [c for c in df.columns if c in decode]
        chosen = [bool(keys) and all(row[k] == decode[k] for k in keys) for _, row in df.iterrows()]
        cols = ["config", "note/f1", "note_offset/f1"]
        page.add(
            f"<h3>{LABELS[kind]}</h3>",
            table(["setting", "val note F1", "val note-with-offset F1"], df[cols].values, chosen),
        )


def per_track_section(page: Page, metrics_dir: Path, splits: Sequence[str]) -> None:
    """Note F1 of every track, both models on one chart per split."""
    import pandas as pd

    page.add("<h2>Per track</h2>")
    for split in splits:
        values = []
        for kind in KINDS:
            path = metrics_dir / f"per_track_{kind}{split_file_suffix(split)}.csv"
            if path.is_file():
                df = pd.read_csv(path, dtype={"track": str})
                values += [
                    {"track": t, "note F1": float(f), "model": LABELS[kind]}
                    for t, f in zip(df["track"], df["note/f1"], strict=True)
                ]
        if values:
            page.chart(bar_spec(values, "note F1", "track", "model", f"{split}: note F1 per track"))


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def pianoroll_section(page: Page, pianorolls: Path) -> None:
    """The evaluate stage's piano rolls, CTC beside Seq2Seq for each drawn track (inlined)."""
    page.add("<h2>Piano rolls (reference against prediction)</h2>")
    names = sorted(p.name.removeprefix("ctc_") for p in pianorolls.glob("ctc_*.png"))
    if not names:
        page.add(f"<p>No piano rolls in {html.escape(str(pianorolls))}.</p>")
    for name in names:
        figures = []
        for kind in KINDS:
            png = pianorolls / f"{kind}_{name}"
            if png.is_file():
                alt = f"{LABELS[kind]} piano roll, track {name.removesuffix('.png')}"
                figures.append(
                    f'<figure><img src="{png_data_uri(png)}" alt="{html.escape(alt)}"></figure>'
                )
        page.add(f'<div class="pair">{"".join(figures)}</div>')


@dataclass(frozen=True)
class ReportConfig:
    """`report.*` params."""

    ab_tracks: int = 2  # A/B audio for the first N tracks of each evaluated split (0 = none)
    ab_seconds: float = 30.0  # ... of their first N seconds (0 = whole tracks)


def ab_excerpt(track, csv: Path, seconds: float):
    """(stereo float32, rate): the first `seconds` of the track's recording left, the model's notes
    from its prediction CSV (MusicNet format, the audio file's rate) rendered right."""
    from mtlib.audio import load_audio
    from mtlib.musicnet import read_labels
    from mtlib.sonify import ab_pair, sonify

    frames = int(round(seconds * track.file_rate)) if seconds > 0 else -1
    original, rate = load_audio(track.audio, frames=frames)
    notes = read_labels(csv, track.file_rate)
    return ab_pair(original, sonify(notes, rate, original.size)), rate


def audio_section(page: Page, out_dir: Path, tracks: dict, predictions: Path, cfg) -> None:
    """A/B files of the first `cfg.ab_tracks` tracks of each split, one player per model."""
    from mtlib.audio import write_flac

    page.add("<h2>Listen: the recording left, the transcription right</h2>")
    if cfg.ab_tracks <= 0:
        page.add("<p>No A/B audio (report.ab_tracks is 0).</p>")
    span = f"first {cfg.ab_seconds:g} s" if cfg.ab_seconds > 0 else "whole track"
    for split, refs in tracks.items():
        for track in refs[: cfg.ab_tracks]:
            cells = []
            for kind in KINDS:
                csv = predictions / kind / f"{track.id}.csv"
                if not csv.is_file():
                    raise FileNotFoundError(f"{csv}: no prediction for track {track.id}")
                name = f"audio/{kind}_{track.id}.ab.flac"
                print(f"[report] {name}: {split} track {track.id}, {span}")
                write_flac(out_dir / name, *ab_excerpt(track, csv, cfg.ab_seconds))
                cells.append(
                    f"<figure><figcaption>{LABELS[kind]}</figcaption>"
                    f'<audio controls preload="none" src="{name}"></audio>'
                    f' <a href="{name}">{name}</a></figure>'
                )
            page.add(f"<h3>{html.escape(split)}, track {html.escape(track.id)} ({span})</h3>")
            page.add(f'<div class="pair">{"".join(cells)}</div>')


@dataclass(frozen=True)
class RunFiles:
    """Where the report stage reads a run's results (the stages' default paths)."""

    metrics: Path = Path("metrics")
    sweep_plots: Path = Path("plots")
    sweep: Path = Path("data/sweep")
    live: Path = Path("dvclive")
    pianorolls: Path = Path("plots/pianorolls")
    predictions: Path = Path("data/predictions")
    manifest: Path = Path("data/manifest.parquet")
    features: Path = Path("data/features")


def write_report(params_path: str | Path, files: RunFiles, out_dir: str | Path) -> Path:
    """The report page of a run, `out_dir/index.html`, and its A/B audio in `out_dir/audio/`,
    all replaced together (`atomic_dir`). Returns the page's path."""
    import pandas as pd

    from mtlib.io import atomic_dir, write_text
    from mtlib.params import config_from, load_params, section
    from mtlib.pipeline import load_tracks

    params = load_params(params_path)
    cfg = config_from(ReportConfig, params.get("report", {}), "report")
    splits = list(section(params, "eval")["splits"])
    present = set(pd.read_parquet(files.manifest, columns=["split"]).split)
    tracks = {s: load_tracks(files.manifest, files.features, s) for s in splits if s in present}
    page = Page()
    page.add(
        "<h1>mtlib: CTC and Seq2Seq on this run</h1>",
        "<p>mir_eval note metrics (onset ±50 ms), mean over tracks; <code>raw/</code>: the "
        "model's own tokens without the onset and frame heads. Everything on this page, scripts "
        "included, is in this folder: it needs no network.</p>",
    )
    metrics_section(page, files.metrics, splits)
    curves_section(page, files.live)
    sweep_section(page, files.sweep_plots, files.sweep)
    per_track_section(page, files.metrics, splits)
    pianoroll_section(page, files.pianorolls)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        audio_section(page, tmp, tracks, files.predictions, cfg)
        write_text(tmp / "index.html", page.html("mtlib report"))
    print(f"[report] {out_dir / 'index.html'}: open it in a browser (works offline)")
    return out_dir / "index.html"


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "template":
        write_plots_template(sys.argv[2])
        print(
            f"{sys.argv[2]}: dvc plots show draws offline with it (.dvc/config plots.html_template)"
        )
    else:
        print("usage: python -m mtlib.report template PATH", file=sys.stderr)
        sys.exit(2)
