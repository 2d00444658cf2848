# batchmix: `make demo` trains + evaluates on the embedded default; `make test` runs the test suite.
# Both install what they need first (a local .venv; torch==2.13.0 before anything that depends on it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# No hub here: never let an unreachable hub stall a run (each failed call costs ~48 s).
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-fast bench study study-report paper-study clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(OFFLINE) $(PY) train.py

test: install
	$(OFFLINE) $(PY) -m pytest

test-fast: install
	$(OFFLINE) $(PY) -m pytest -m "not slow"

# The benchmarks (the [bench] extra, installed on first use), each printing its ratio against a
# named peer measured side by side in one run: evaluation speed and training throughput vs
# sentence-transformers, sampler overhead, GradCache memory, hard-negative mining (texts/s vs ST's
# mine_hard_negatives), encoding all of XQuAD-R (texts/s vs ST's encode, fp32 and bf16; ~10 min), a 4-point ratio sweep (wall time vs 4 ST fits + IR evaluator;
# ~29 min with each switch turned off alone; takes no BENCH_ARGS). Options: BENCH_ARGS="--threads 1" (all).
# benchmarks/zero_shot_me5.py --corpus xquad-r|mlqa-r (the embedded model's fixed points) encodes ~25k texts -
# minutes on a CPU - so it is run by hand, not here.
bench: install
	$(PY) -c "import sentence_transformers, accelerate" 2>/dev/null || $(PY) -m pip install -q -e ".[dev,bench]"
	$(OFFLINE) $(PY) benchmarks/eval_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/train_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/gradcache_memory.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/mining_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/encode_speed.py $(BENCH_ARGS)
	$(OFFLINE) $(PY) benchmarks/sweep_speed.py

# The ratio study (experiments/ratio_study/): the trunk cache, the zero-shot row, 15 ratios of the simplex x 3
# seeds, an Optuna TPE search of 15 trials, then results.csv / curves.csv and the README's tables, figures and
# fits. Resumable: run it again after a kill. ~104 min on 2 cores (experiments/ratio_study/README.md). `make study-report` redoes only the README from
# the committed CSVs.
study: install
	bash experiments/ratio_study/run.sh

study-report: install
	$(PY) -m batchmix.report --from-results experiments/ratio_study --markdown experiments/ratio_study/README.md

# The paper ratio study at CPU scale (experiments/paper_ratio_sweep/): zero-shot baseline, 4 ratios x
# 3 seeds of experiment=paper_cpu, then the README tables and figures regenerated from the runs.
paper-study: install
	bash experiments/paper_ratio_sweep/run.sh

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
