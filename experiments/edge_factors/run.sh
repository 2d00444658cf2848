#!/usr/bin/env bash
# Two factors on the paper's edge (issue #28), start to finish: `make edge-study` (or: bash experiments/edge_factors/run.sh).
#   1. warm: the trunk cache of the batch arm (top 2 layers), by the ratio study's own command
#      (`batchmix warm experiment=ratio_study`): the cache is keyed by text, not by batch size, so after the
#      ratio study this only checks it; the depth arm trains every layer and reads no cache;
#   2. train: for each arm of ARMS and each seed of SEEDS, one multirun of the 6 ratios of sweep=paper_edge
#      (alpha in {0,.25,.5,.75,1} on mono-cross, plus multi-only) into $SWEEP/<arm>/seed<S>/, two runs at a
#      time with one thread each (experiment=edge_<arm>: hydra/launcher=local_parallel, as the ratio study);
#   3. results: results.csv + curves.csv (+ timing.csv) from the run folders and the ratio study's grid rows
#      at the same 6 ratios (the reference level), then the README block from them alone.
# Resumable: run it again after a kill and finished runs are skipped, an interrupted one resumes. A study
# longer than a session runs in chunks, one (arm, seed) each, into a SWEEP_DIR outside the work tree:
#   SWEEP_DIR=/work/sweeps/edge_factors STAGES="warm train" ARMS=batch SEEDS=0 bash experiments/edge_factors/run.sh
# Arguments go to warm and every train.py run (a smoke test: tests/test_edge_factors_run.py). SWEEP_DIR puts
# the runs elsewhere (default multirun/edge_factors), RESULTS_DIR the CSVs and README (default this folder),
# REFERENCE the ratio study's results.csv (default experiments/ratio_study/results.csv; its curves.csv beside
# it), ARMS the arms (default "batch depth"), SEEDS the seeds (default 0,1,2), STAGES the stages (default
# "warm train results"). Cost, measured on 2 cores (the README block's wall-time table): ~9 min per batch
# chunk of 6 runs (~27 min for the arm), ~38 min per depth chunk (~2 h for the arm).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=${RESULTS_DIR:-experiments/edge_factors}
SWEEP=${SWEEP_DIR:-multirun/edge_factors}
REFERENCE=${REFERENCE:-experiments/ratio_study/results.csv}
read -ra arms <<< "${ARMS:-batch depth}"
IFS=, read -ra seeds <<< "${SEEDS:-0,1,2}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$SWEEP"
start=$SECONDS
stamp() { echo "[$(date -u +%T)] study: $* ($((SECONDS - start)) s)" | tee -a "$SWEEP/timing.log"; }

STAGES=" ${STAGES:-warm train results} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }

for arm in "${arms[@]}"; do
  [[ "$arm" == batch || "$arm" == depth ]] || { echo "ARMS=\"${arms[*]}\": unknown arm '$arm'; use batch and/or depth" >&2; exit 2; }
done

if stage warm && [[ " ${arms[*]} " == *" batch "* ]]; then
  stamp "warm"
  "$PY" -m batchmix.run.warm experiment=ratio_study hydra.run.dir="$SWEEP/warm" "$@"
fi
if stage train; then
  for arm in "${arms[@]}"; do
    for seed in "${seeds[@]}"; do
      stamp "$arm-seed$seed"
      "$PY" train.py -m experiment="edge_$arm" sweep=paper_edge seed="$seed" \
        hydra.sweep.dir="$SWEEP/$arm/seed$seed" '~hydra.callbacks.report' "$@"
    done
  done
fi
if stage results; then
  stamp "results"
  "$PY" -m batchmix.report.studies.edge_factors collect --runs "$SWEEP" --arms "${arms[@]}" --reference "$REFERENCE" \
    --timing "$SWEEP/timing.log" --out "$HERE"
  "$PY" -m batchmix.report.studies.edge_factors report --from-results "$HERE" --markdown "$HERE/README.md"
fi
stamp "done"
