#!/usr/bin/env bash
# The whole DVC pipeline at one commit on a small configuration (1 min of demo audio, CTC 4
# epochs, Seq2Seq 2, the test suite's small model), in a fresh clone: run it at two commits and
# compare data/models/*.pt (state dicts) and metrics/*.json to show that a refactor changes no
# number. Usage: benchmarks/tiny_repro.sh REV DIR   (DIR is replaced; uses this repo's .venv)
set -euo pipefail
rev=$1
dir=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir"
git clone -q "$repo" "$dir"
cd "$dir"
git checkout -q "$rev"
ln -s "$repo/.venv" .venv
.venv/bin/python - <<'PY'
import yaml

TINY = {
    "demo": {"train_minutes": 1.0, "test_minutes": 0.3, "max_seconds": 9.0},
    "segment": {"workers": 1},
    "train": {"common": {"batch_size": 4, "threads": 1},
              "ctc": {"epochs": 4, "max_minutes": 0.0}, "seq2seq": {"epochs": 2, "max_minutes": 0.0}},
    "model": {"encoder": {"lstm_hidden": 32, "cnn_channels": [4, 8]},
              "seq2seq": {"decoder_hidden": 32, "embed_dim": 16, "attention_dim": 16}},
    "decode": {"max_len": 64},
    "eval": {"pianorolls": 1},
}


def deep_update(d, u):
    for k, v in u.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            deep_update(d[k], v)
        else:
            d[k] = v
    return d


params = yaml.safe_load(open("params.yaml"))
open("params.yaml", "w").write(yaml.safe_dump(deep_update(params, TINY), sort_keys=False))
PY
DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH" dvc repro > repro.log 2>&1
echo "done: $rev in $dir (log: $dir/repro.log)"
