#!/usr/bin/env bash
# Hard negatives vs none, on the XQuAD-R training articles (CPU scale): mines 3 negatives per training
# pair with the embedded multilingual-e5-small (per-language pools, conf/mine.yaml), trains the
# default recipe (`python train.py`, 1 epoch, batch 16) once on the mined file without negatives and
# once with data.hard_negatives=3, and writes the table of held-out metrics into README.md here
# (between the markers). From the repo root:
#   bash experiments/hard_negatives/run.sh [extra train.py overrides, e.g. model=tiny for a smoke test]
# OUT=<dir> puts the runs there (default multirun/hard_negatives/<date_time>).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
HERE=experiments/hard_negatives
OUT=${OUT:-multirun/hard_negatives/$(date +%Y-%m-%d_%H-%M-%S)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$SECONDS

[ -f "$OUT/mine/train_negatives.jsonl" ] || "$PY" -m batchmix.run.mine hydra.run.dir="$OUT/mine" ${MINE_ARGS:-}
for n in 0 3; do
  t0=$SECONDS
  "$PY" train.py data.train_file="$OUT/mine/train_negatives.jsonl" data.hard_negatives=$n logger=csv \
    hydra.run.dir="$OUT/negatives_$n" "$@"
  echo $((SECONDS - t0)) > "$OUT/negatives_$n/wall_seconds.txt"  # the whole run: evaluations included
done
"$PY" $HERE/table.py "$OUT" --readme $HERE/README.md
echo "hard negatives study: $((SECONDS - start)) s in all; runs in $OUT"
