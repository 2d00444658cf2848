#!/usr/bin/env bash
# The ratio study (issue #16), start to finish: `make study` (or: bash experiments/ratio_study/run.sh).
#   1. the trunk cache of every text the runs read, once, with both cores (batchmix warm);
#   2. the zero-shot row: the untrained model scored by the same pipeline (eval.before of a 1-step run);
#   3. the grid: 15 ratios (simplex step 0.25) x seeds 0,1,2 of conf/experiment/ratio_study.yaml, one
#      multirun per seed (grid/seed<S>/), so a session can run and commit one seed at a time;
#   4. an Optuna TPE search over the same simplex with the val objective, as many trials as grid ratios;
#   5. results.csv + curves.csv from the run folders, then the README tables, figures and fits from them.
# Resumable: run it again after a kill and finished runs are skipped, an interrupted one resumes, the
# Optuna study runs only its missing trials. Arguments go to warm and every train.py run (a smoke test:
# tests/test_ratio_study_run.py); SWEEP_DIR
# puts the runs elsewhere (default multirun/ratio_study; a study longer than a session: a folder outside
# the work tree), RESULTS_DIR the CSVs and README (default this folder), TRIALS the Optuna budget
# (default 15), SEEDS the grid seeds (default 0,1,2), STEP the grid's step (default 0.25: 15 ratios).
# STAGES (default "warm zero-shot grid optuna results") runs only the stages named, e.g. one seed of
# the grid: STAGES=grid SEEDS=1 bash experiments/ratio_study/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=${RESULTS_DIR:-experiments/ratio_study}
SWEEP=${SWEEP_DIR:-multirun/ratio_study}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$SWEEP"
start=$SECONDS
stamp() { echo "[$(date -u +%T)] study: $* ($((SECONDS - start)) s)" | tee -a "$SWEEP/timing.log"; }

STAGES=" ${STAGES:-warm zero-shot grid optuna results} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }

if stage warm; then
  stamp "warm"
  "$PY" -m batchmix.run.warm experiment=ratio_study hydra.run.dir="$SWEEP/warm" "$@"
fi
if stage zero-shot; then
  stamp "zero-shot"
  "$PY" train.py experiment=ratio_study eval.before=true data.batches_per_epoch=1 eval.val_every_n_steps=0 \
    eval.final_from=last checkpoint.best=false hydra.run.dir="$SWEEP/zero_shot" "$@"
fi
if stage grid; then
  IFS=, read -ra seeds <<< "${SEEDS:-0,1,2}"
  for seed in "${seeds[@]}"; do
    stamp "grid"
    "$PY" train.py -m experiment=ratio_study sweep=simplex_grid sweep.step="${STEP:-0.25}" seed="$seed" \
      hydra.sweep.dir="$SWEEP/grid/seed$seed" '~hydra.callbacks.report' "$@"
  done
fi
if stage optuna; then
  stamp "optuna"
  # TPE's first n_startup_trials are random (Optuna's default 10 would leave 5 of 15 guided): a third of the budget
  "$PY" train.py -m experiment=ratio_study hparams_search=ratio_optuna hydra.sweeper.n_trials="${TRIALS:-15}" \
    +hydra.sweeper.sampler.n_startup_trials=5 hydra.sweeper.n_jobs=2 hydra.sweep.dir="$SWEEP/optuna" '~hydra.callbacks.report' "$@"
fi
if stage results; then
  stamp "results"
  "$PY" -m batchmix.report.studies.ratio_study collect --grid "$SWEEP/grid" --optuna "$SWEEP/optuna" --zero-shot "$SWEEP/zero_shot" \
    --timing "$SWEEP/timing.log" --out "$HERE"
  "$PY" -m batchmix.report --from-results "$HERE" --markdown "$HERE/README.md"
fi
stamp "done"
