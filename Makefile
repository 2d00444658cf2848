# batchmix: `make demo` trains + evaluates on the embedded default; `make test` runs the test suite.
# Both install what they need first: a local .venv with the versions the suite passed with
# (requirements/lock.txt: pip, then torch before anything that depends on it, then the rest).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
locked = $(shell sed -n 's/^$(1)==\([^ ]*\).*/\1/p' $(LOCK))
PIP_VERSION := $(call locked,pip)
TORCH_VERSION := $(call locked,torch)
PIP_TOOLS ?= pip-tools==7.7.0
LATEST_VENV ?= .venv-latest
# No hub here: never let an unreachable hub stall a run (each failed call costs ~48 s).
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install lock demo demo-precision test test-fast test-latest bench study study-report edge-study edge-report paper-study clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==$(PIP_VERSION)
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	touch $@

# Regenerate the lock: the newest versions pyproject.toml allows (pip-tools' pip-compile, every extra,
# torch and pip from requirements/pins.in), for this Python on a CPU. Then run `make test` on it
# before committing it. The torch pin drops its local label (+cpu), so a CUDA build of the same release
# satisfies it too.
lock: install
	$(PY) -m pip install -q $(PIP_TOOLS)
	$(VENV)/bin/pip-compile -q --upgrade --extra dev --extra bench --extra mine --extra export --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml requirements/pins.in
	sed -i -E 's/^torch==([^ +]+)\+[a-z0-9.]+/torch==\1/' $(LOCK)

# The demo trains and evaluates under bf16 autocast where the CPU has bf16 units (x86 AVX512-BF16 or AMX,
# ARM BF16): about twice as fast, its table within ~2e-3 of fp32's (README); fp32 elsewhere, where
# autocast would be slower. `make demo DEMO_PRECISION=32-true` runs the fp32 default of train.py.
DEMO_PRECISION ?= $(shell grep -qwE 'avx512_bf16|amx_bf16|bf16' /proc/cpuinfo 2>/dev/null && echo bf16-mixed || echo 32-true)

demo: install
	$(OFFLINE) $(PY) train.py trainer.precision=$(DEMO_PRECISION)

demo-precision:
	@echo $(DEMO_PRECISION)

test: install
	$(OFFLINE) $(PY) -m pytest

test-fast: install
	$(OFFLINE) $(PY) -m pytest -m "not slow"

# The fast tests on the newest releases pyproject.toml allows (torch stays at the lock's), in a venv of
# their own: a dependency's new release that breaks batchmix shows here the day it is out, before a
# user meets it. Not part of CI, which installs from the lock so that no release can block work.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION)
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip list --format=freeze > $(LATEST_VENV)/versions.txt
	$(OFFLINE) $(LATEST_VENV)/bin/python -m pytest -m "not slow"

# The benchmarks (the [bench] extra, installed on first use), each printing its ratio against a named peer
# measured side by side in one run. Like for like first (same precision, texts, lengths, batch, threads):
# encoding (texts/s vs ST's encode, fp32 vs fp32 and bf16 vs bf16, 2000 + 2000 texts of XQuAD-R, best of 3;
# ~8 min), training throughput (pairs/s vs ST's trainer with MNRL, in fp32 and in bf16; ~3.5 min each), the
# 4-point ratio sweep as a decomposition (fp32 vs fp32 and bf16 vs bf16, then the trunk cache and parallel
# points, which only batchmix has, each on its own line; ~23 min); then model.compile's end-to-end effect
# (~18 min), evaluation speed, GradCache memory and hard-negative mining. About an hour on 2 cores. Options: BENCH_ARGS="--threads 1"
# (the scripts that take it). benchmarks/zero_shot_me5.py --corpus xquad-r|mlqa-r (the embedded model's fixed
# points) encodes ~25k texts - minutes on a CPU - so it is run by hand, not here.
bench: install
	$(PY) -c "import sentence_transformers, accelerate" 2>/dev/null || $(PY) -m pip install -q -c $(LOCK) -e ".[dev,bench]"
	$(OFFLINE) $(PY) benchmarks/encode_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/train_speed.py --precision 32-true --rounds 3 $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/train_speed.py --precision bf16-mixed --rounds 3 $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/sweep_speed.py
	$(OFFLINE) $(PY) benchmarks/compile_effect.py
	$(OFFLINE) $(PY) benchmarks/eval_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/gradcache_memory.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/mining_speed.py $(BENCH_ARGS)

# The ratio study (experiments/ratio_study/): the trunk cache, the zero-shot row, 15 ratios of the simplex x 3
# seeds, an Optuna TPE search of 15 trials, then results.csv / curves.csv and the README's tables, figures and
# fits. Resumable: run it again after a kill (STAGES=grid SEEDS=1 runs one chunk). ~100-110 min on 2 cores (experiments/ratio_study/README.md). `make study-report` redoes only the README from
# the committed CSVs.
study: install
	bash experiments/ratio_study/run.sh

study-report: install
	$(VENV)/bin/batchmix report --from-results experiments/ratio_study --markdown experiments/ratio_study/README.md

# Two factors on the paper's edge (experiments/edge_factors/, issue #28): the 6 ratios of sweep=paper_edge x 3 seeds
# in two arms, all 12 layers trained (depth) and batch 64 x 40 steps (batch), against the ratio study's grid rows at
# the same ratios; then results.csv / curves.csv and the README block. Resumable; a session runs one chunk (an arm and
# a seed) at a time: see experiments/edge_factors/README.md. Measured on 2 cores (the README block's wall-time
# table): ~9 min per batch chunk (~27 min for the arm), ~38 min per depth chunk (~2 h). `make edge-report` redoes only the README block from the
# committed CSVs (seconds).
edge-study: install
	bash experiments/edge_factors/run.sh

edge-report: install
	$(VENV)/bin/python -m batchmix.report.studies.edge_factors report --from-results experiments/edge_factors --markdown experiments/edge_factors/README.md

# The paper ratio study at CPU scale (experiments/paper_ratio_sweep/): zero-shot baseline, 4 ratios x
# 3 seeds of experiment=paper_cpu, then the README tables and figures regenerated from the runs.
paper-study: install
	bash experiments/paper_ratio_sweep/run.sh

clean:
	rm -rf $(VENV) $(LATEST_VENV) outputs multirun .pytest_cache
