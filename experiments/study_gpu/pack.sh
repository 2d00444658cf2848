#!/usr/bin/env bash
# Packs into .gpu/ (gitignored) what the GPU-scale study needs on a lent machine that has no hub, no
# package index and takes 64 MiB of files (experiments/study_gpu/README.md):
#   .gpu/e5-small-q4.bin.xz   the embedded multilingual-e5-small with every word-embedding row that no
#                             XQuAD-R or MLQA-R text uses set to zero (batchmix.models.embedded.vocab_subset),
#                             checked here: 300 of the study's texts encode bit-identically to the full model
#   .gpu/data.tar.xz          XQuAD-R and MLQA-R as they are under ../shared/data (never committed)
#   .gpu/whl/                 the pure-Python packages that machine lacks (Hydra, OmegaConf, Optuna, ...)
#                             and the transformers release CI tests, for Python 3.12
# From the repo root:  bash experiments/study_gpu/pack.sh ; then run experiments/study_gpu/device.sh there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${BATCHMIX_DATA:-../shared/data}
mkdir -p .gpu/whl
"$PY" -m batchmix.models.embedded.vocab_subset .gpu/e5-small-q4.bin.xz "$DATA/xquad-r" "$DATA/mlqa-r" --verify 300
tar -C "$DATA" -cJf .gpu/data.tar.xz xquad-r mlqa-r
LOCK=requirements/lock.txt   # the versions CI tests: none listed by hand here
pin() { PIN=$(grep -i -m1 -o "^$1==[^ ]*" "$LOCK") || { echo "pack.sh: $1 is not pinned in $LOCK" >&2; exit 2; }; }
WHEELS=()
for name in hydra-core omegaconf hydra-joblib-launcher optuna alembic sqlalchemy colorlog mako transformers regex; do
  pin "$name"
  WHEELS+=("$PIN")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl "${WHEELS[@]}"
pin antlr4-python3-runtime
"$PY" -m pip wheel -q --no-deps -w .gpu/whl "$PIN"   # published as a source archive only
du -sh .gpu .gpu/*
