#!/usr/bin/env bash
# False negatives (issue #25): how often each batch type meets them, and whether to mask or avoid them.
#   1. rates.csv: masked (query, candidate) entries per batch type at batch 16 and 128, under loss.mask=ids and
#      answers, with and without data.sampler.avoid_shared_answers (no model; experiments/false_negatives/rates.py);
#   2. the demo recipe (`python train.py`: me5-small, batch 16, 1 epoch, default ratio) at seeds 0, 1, 2, masking
#      (loss.mask=answers) and avoiding (data.sampler.avoid_shared_answers=true); seed 0 masking is `make demo`;
#   3. the demo under loss.mask=ids, seed 0: what `make demo` was before;
#   4. the README block from rates.csv and the runs' metrics (table.py), and results.csv of the runs.
# Resumable: a finished run is skipped. From the repo root:  bash experiments/false_negatives/run.sh
# OUT=<dir> puts the runs there (default multirun/false_negatives; outside the repo is fine).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=experiments/false_negatives
OUT=${OUT:-multirun/false_negatives}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/timing.log"; }

[ -f "$HERE/rates.csv" ] || { log "rates"; "$PY" $HERE/rates.py "$HERE/rates.csv"; }
run() {  # name, overrides...
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.json" ]; then log "$name: done before"; return; fi
  log "$name: start"
  local t0=$SECONDS
  "$PY" train.py logger=csv hydra.run.dir="$OUT/$name" "$@"
  echo $((SECONDS - t0)) > "$OUT/$name/wall_seconds.txt"
  log "$name: $((SECONDS - t0)) s"
}
for seed in 0 1 2; do
  before=$([ "$seed" = 0 ] && echo true || echo false)  # the untrained model is the same for every run: scored once
  run "answers-$seed" seed=$seed eval.before=$before
  run "avoid-$seed" seed=$seed eval.before=$before data.sampler.avoid_shared_answers=true
done
run ids-0 seed=0 loss.mask=ids
"$PY" $HERE/table.py "$OUT" --readme $HERE/README.md
