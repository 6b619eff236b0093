#!/usr/bin/env bash
# The whole DVC pipeline at one commit on a small configuration (the test suite's, with 1 min of
# demo audio, CTC 4 epochs, Seq2Seq 2), in a fresh clone: run it at two commits and
# compare data/models/*.pt (state dicts) and metrics/*.json to show that a refactor changes no
# number. Usage: benchmarks/tiny_repro.sh REV DIR   (DIR is replaced; uses this repo's .venv)
set -euo pipefail
rev=$1
dir=$2
source "$(dirname "$0")/fresh_clone.sh"
fresh_clone "$rev" "$dir"
# the test suite's small configuration (tests/test_pipeline.py TINY, of this checkout's tests),
# with more audio and epochs so the models emit notes
REPO="$repo" .venv/bin/python - <<'PY'
import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
from test_pipeline import TINY, deep_update  # noqa: E402

MORE = {
    "demo": {"train_minutes": 1.0, "test_minutes": 0.3},
    "train": {"ctc": {"epochs": 4}, "seq2seq": {"epochs": 2}},
}
params = yaml.safe_load(open("params.yaml"))
params = deep_update(deep_update(params, TINY), MORE)
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
PY
DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH" dvc repro > repro.log 2>&1
echo "done: $rev in $dir (log: $dir/repro.log)"
