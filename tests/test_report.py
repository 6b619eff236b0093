"""The report page's pieces on data built in the test (the whole page: tests/test_pipeline.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mtlib import report


def test_plots_template_inlines_vega_and_leaves_dvc_its_placeholders():
    page = report.plots_template()
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page, "DVC would put its CDN <script src> links there"
    assert "<script src" not in page and "cdn." not in page
    for name in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert f"/* {name}, BSD-3-Clause */" in page
    assert page.count("</script>") == 3, "no script ends early"


def test_a_chart_spec_cannot_end_the_script_that_draws_it():
    page = report.Page()
    page.chart({"title": "</script><script>alert(1)</script>", "data": {"values": []}})
    assert "</script>" not in page.charts[0] and page.body == [
        '<div class="chart" id="chart1"></div>'
    ]


def test_metrics_tables_put_the_models_side_by_side_and_say_what_is_missing(tmp_path):
    (tmp_path / "ctc.json").write_text(json.dumps({"note/f1": 0.61234, "tracks": 3}))
    (tmp_path / "seq2seq.json").write_text(json.dumps({"note/f1": 0.5, "split": "a<b"}))
    page = report.Page()
    report.metrics_section(page, tmp_path, ["test", "test_unseen"])
    html = "\n".join(page.body)
    assert "<tr><td>note F1 (onset ±50 ms)</td><td>0.612</td><td>0.500</td></tr>" in html
    assert "<td>3</td><td>–</td>" in html and "a&lt;b" in html
    assert "test_unseen: no metrics" in html


def test_the_sweep_table_highlights_the_setting_decode_sweep_chose(tmp_path):
    pd.DataFrame(
        {
            "config": ["w=0", "w=2", "w=4"],
            "ctc_onset_window": [0, 2, 4],
            "note/f1": [0.5, 0.7, 0.6],
            "note_offset/f1": [0.2, 0.3, 0.25],
        }
    ).to_csv(tmp_path / "sweep_ctc.csv", index=False)
    (tmp_path / "best_ctc.json").write_text(json.dumps({"decode": {"ctc_onset_window": 2}}))
    page = report.Page()
    report.sweep_section(page, tmp_path, tmp_path)
    html = "\n".join(page.body)
    assert "<tr class=chosen><td>w=2</td><td>0.700</td><td>0.300</td></tr>" in html
    assert html.count("class=chosen") == 1
    assert "Seq2Seq: no sweep" in html


@pytest.mark.parametrize("ab_tracks", [0, 1])
def test_audio_section_writes_one_ab_file_per_model_and_track(tmp_path, ab_tracks):
    import numpy as np
    import soundfile as sf

    from mtlib.musicnet import write_labels
    from mtlib.notes import Note
    from mtlib.pipeline import TrackRef

    rate = 8000
    sf.write(tmp_path / "1.wav", 0.1 * np.sin(np.arange(3 * rate) * 0.3), rate)
    track = TrackRef("1", "test", str(tmp_path / "1.wav"), "", rate, "", 0, 3.0)
    for kind in report.KINDS:
        write_labels(tmp_path / kind / "1.csv", [Note(0.5, 1.0, 60, 80)], rate)
    page = report.Page()
    cfg = report.ReportConfig(ab_tracks=ab_tracks, ab_seconds=2.0)
    report.audio_section(page, tmp_path / "out", {"test": [track]}, tmp_path, cfg)
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.flac"))
    assert written == ([] if ab_tracks == 0 else ["ctc_1.ab.flac", "seq2seq_1.ab.flac"])
    for name in written:
        ab, ab_rate = sf.read(tmp_path / "out" / "audio" / name)
        assert ab_rate == rate and ab.shape == (2 * rate, 2)
        assert np.abs(ab[: rate // 2 - 80, 1]).max() < 1e-3 < np.abs(ab[rate // 2 :, 1]).max()
