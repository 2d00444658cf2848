#!/usr/bin/env bash
# Regenerates experiments/paper_ratio_sweep/README.md (the block between the batchmix:report
# markers) and figures/ from scratch: the zero-shot baseline, the 12-run grid of
# conf/experiment/paper_cpu.yaml (4 ratios x 3 seeds), then the report. From the repo root:
#   make paper-study            (installs first; or: bash experiments/paper_ratio_sweep/run.sh)
# Arguments go to every train.py run, e.g. `run.sh model=tiny data.batches_per_epoch=2` for a smoke
# test; EVAL_ARGS="model=tiny" goes to the zero-shot eval.py. SWEEP_DIR=<dir> puts the runs there
# (default multirun/paper_ratio_sweep/<date_time>); STUDY_README=<file> writes the tables elsewhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=experiments/paper_ratio_sweep
SWEEP=${SWEEP_DIR:-multirun/paper_ratio_sweep/$(date +%Y-%m-%d_%H-%M-%S)}
README=${STUDY_README:-$HERE/README.md}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS

# The untrained model on the same held-out articles and evaluation sets: the tables' zero-shot row.
# shellcheck disable=SC2086
"$PY" eval.py split=test eval.trec=false hydra.run.dir="$SWEEP/zero_shot" \
  +eval.sets.mlqa-r.split=test +eval.sets.mlqa-r.required=false ${EVAL_ARGS:-}

# The grid: every ratio x seed of conf/experiment/paper_cpu.yaml (its hydra.sweeper.params).
"$PY" train.py -m experiment=paper_cpu hydra.sweep.dir="$SWEEP" "$@"

"$PY" -m batchmix.report "$SWEEP" --markdown "$README" --zero-shot "$SWEEP/zero_shot" \
  --title "Paper ratio sweep (CPU scale)"
echo "paper study: $((SECONDS - start)) s in all; runs in $SWEEP"
