#!/usr/bin/env bash
# Regenerates experiments/paper_ratio_sweep/README.md (tables between the batchmix:report markers)
# and figures/ from scratch: the zero-shot baseline, the 12-run grid of conf/experiment/paper_cpu.yaml
# (4 ratios x 3 seeds), then the report. From the repo root: `make paper-study`
# (or `bash experiments/paper_ratio_sweep/run.sh` once `make install` has run).
# Extra arguments go to every train.py run, e.g. `... run.sh data.batches_per_epoch=4` for a smoke test;
# SWEEP_DIR=<dir> writes the runs there instead of multirun/paper_ratio_sweep/<date_time>.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=experiments/paper_ratio_sweep
SWEEP=${SWEEP_DIR:-multirun/paper_ratio_sweep/$(date +%Y-%m-%d_%H-%M-%S)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS

# The untrained model on the same held-out articles and eval sets: the table's zero-shot row.
"$PY" eval.py split=test eval.trec=false hydra.run.dir="$SWEEP/zero_shot" \
  +eval.sets.mlqa-r.split=test +eval.sets.mlqa-r.required=false

# The grid: every ratio x seed of conf/experiment/paper_cpu.yaml (hydra.sweeper.params).
"$PY" train.py -m experiment=paper_cpu hydra.sweep.dir="$SWEEP" "$@"

"$PY" -m batchmix.report "$SWEEP" --markdown "$HERE/README.md" --zero-shot "$SWEEP/zero_shot" \
  --title "Paper ratio sweep (CPU scale)"
echo "paper study: $((SECONDS - start)) s in all; runs in $SWEEP"
