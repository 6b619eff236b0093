"""One model's half of decode_sweep and evaluate for one ablation row (benchmarks/ablate.sh; CTC
unless `--kind seq2seq`): sweep the decoding on val by params.yaml's sweep.<kind> grid, then score
every eval.splits split with the chosen decoding through the same functions the stages call.
Prints and writes JSON, and writes the chosen decoding beside the checkpoint
(`data/models/<kind>.decode.json`), as decode_sweep does."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def main(
    out: Path = typer.Option(Path("ablation.json"), "--out", help="JSON file to write."),
    kind: str = typer.Option("ctc", "--kind", help="ctc | seq2seq: data/models/<kind>.pt."),
    changes: list[str] = typer.Argument(None, help="The params changes of this row, recorded."),
) -> None:
    from mtlib.evaluate import evaluate_model
    from mtlib.io import write_json
    from mtlib.params import load_params, section
    from mtlib.pipeline import decode_config, load_tracks
    from mtlib.sweep import sweep_model
    from mtlib.transcriber import Transcriber, write_decoding

    params = load_params(Path("params.yaml"))
    base = dict(section(params, "decode"))
    if kind not in ("ctc", "seq2seq"):
        raise typer.BadParameter(f"--kind is ctc or seq2seq, not {kind!r}")
    checkpoint = Path(f"data/models/{kind}.pt")
    transcriber = Transcriber.load(checkpoint, decoding=decode_config(base))
    val = load_tracks("data/manifest.parquet", "data/features", "val")
    _, chosen, val_scores = sweep_model(
        transcriber,
        val,
        base,
        dict(section(params, f"sweep.{kind}")),
        float(section(params, "sweep").get("frame_f1_weight", 0.0)),
    )
    # the bundle decode_sweep would write, so later probes (benchmarks/bench_tuning.py) decode
    # this model as the pipeline would
    write_decoding(checkpoint, decode_config(chosen), val_scores)
    transcriber = Transcriber.load(checkpoint)
    row = {"changes": changes or [], **val_scores}
    for split in section(params, "eval")["splits"]:
        tracks = load_tracks("data/manifest.parquet", "data/features", split)
        summary = evaluate_model(transcriber, tracks)[0]
        for key in ("note/f1", "note/precision", "note/recall", "note_offset/f1", "frame/f1"):
            row[f"{split}/{key}"] = round(float(summary[key]), 4)
    write_json(out, row)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    typer.run(main)
