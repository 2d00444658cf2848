#!/usr/bin/env bash
# The paper_cpu grid (4 ratios x 3 seeds, conf/experiment/paper_cpu.yaml) with the sweep-speed
# switches of issue #15: the top 2 of 12 layers train over a cached frozen trunk
# (model.train_top_layers=2), bf16 autocast on the CPU (trainer.precision=bf16-mixed), two sweep
# points at a time (hydra/launcher=local_parallel, one torch thread each), the cache filled once
# beforehand with both cores (batchmix warm). Then the report, into this folder's README.
# From the repo root:  bash experiments/sweep_speed/run.sh   (arguments go to warm and every run)
# The time printed at the end is what experiments/sweep_speed/README.md quotes; measure it with an
# empty trunk cache (rm -rf "${BATCHMIX_CACHE:-$HOME/.cache/batchmix}/trunk") to include building it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=experiments/sweep_speed
SWEEP=${SWEEP_DIR:-multirun/sweep_speed/$(date +%Y-%m-%d_%H-%M-%S)}
README=${STUDY_README:-$HERE/README.md}
SWITCHES=(model.train_top_layers=2 trainer.precision=bf16-mixed)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS

"$PY" -m batchmix.run.warm experiment=paper_cpu "${SWITCHES[@]}" hydra.run.dir="$SWEEP/warm" "$@"
warmed=$SECONDS
"$PY" train.py -m experiment=paper_cpu "${SWITCHES[@]}" hydra/launcher=local_parallel hydra.sweep.dir="$SWEEP" "$@"
grid=$SECONDS

"$PY" -m batchmix.report "$SWEEP" --markdown "$README" --title "paper_cpu grid with the sweep-speed switches"
echo "sweep speed: warm $((warmed - start)) s, grid $((grid - warmed)) s, $((grid - start)) s for warm + grid; runs in $SWEEP"
