#!/usr/bin/env bash
# One ablation row (issue 11, point 9): the CTC model trained by the real DVC stages with some
# params changed, swept on val and scored on test and test_unseen exactly as the evaluate stage
# scores it (benchmarks/ablate_ctc.py). CTC only: at full size it takes ~20 minutes on 2 cores
# where the whole pipeline takes ~30; the Seq2Seq model starts from the CTC encoder, so a change
# that moves CTC moves it the same way (BENCHMARKS.md shows both for the default runs).
# Usage: benchmarks/ablate.sh REV DIR [key.path=yaml_value ...]   (DIR is replaced; uses this
# repo's .venv). Writes DIR/ablation.json.
set -euo pipefail
rev=$1
dir=$2
shift 2
source "$(dirname "$0")/fresh_clone.sh"
fresh_clone "$rev" "$dir"
.venv/bin/python - "$@" <<'PY'
import sys

import yaml

params = yaml.safe_load(open("params.yaml"))
for arg in sys.argv[1:]:
    key, value = arg.split("=", 1)
    *path, last = key.split(".")
    node = params
    for k in path:
        node = node[k]
    if last not in node:
        sys.exit(f"params.yaml has no {key}")
    node[last] = yaml.safe_load(value)
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
PY
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
dvc repro train_ctc > repro.log 2>&1
python -m benchmarks.ablate_ctc --out ablation.json "$@" >> repro.log 2>&1
echo "done: $rev $* in $dir"
cat ablation.json
