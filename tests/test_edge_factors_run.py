"""The edge study's one command (experiments/edge_factors/run.sh) in chunks on a tiny model: the warm, the
batch arm (2 seeds) and the depth arm (1 seed) each into SWEEP_DIR/<arm>/seed<S>/, a rerun that trains
nothing, then the CSVs and the README block against a reference made from the batch runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from batchmix.report.markdown import BEGIN, END
from batchmix.report.studies.results_csv import sweep_tables

REPO = Path(__file__).resolve().parents[1]
# A 3-layer tiny model (the batch arm's top 2 layers over a cached trunk of 1), 5 steps of 4 pairs, 2 languages,
# MLQA-R's test articles only: every stage of the real study, in seconds per run.
ARGS = ["model=tiny", "model.architecture.num_hidden_layers=3", "trainer.precision=32-true", "data.languages=[en,de]",
        "+eval.sets.mlqa-r.languages=[en,de]", "eval.sets.mlqa-r.split=test", "data.batch_size=4", "data.batches_per_epoch=5",
        "eval.val_every_n_steps=1", "logger=none"]


@pytest.mark.slow
def test_run_sh_runs_in_chunks_resumes_and_reports_on_a_tiny_model(tmp_path, xquad_root):
    runs, out, ref = tmp_path / "runs", tmp_path / "edge", tmp_path / "ratio_study"
    out.mkdir()
    (out / "README.md").write_text(f"# prose\n\n{BEGIN}\n{END}\n")
    env = {**os.environ, "SWEEP_DIR": str(runs), "RESULTS_DIR": str(out), "PY": sys.executable,
           "BATCHMIX_CACHE": str(tmp_path / "cache"), "REFERENCE": str(ref / "results.csv")}

    def run(**chunk: str) -> subprocess.CompletedProcess:
        res = subprocess.run(["bash", str(REPO / "experiments" / "edge_factors" / "run.sh"), *ARGS], env={**env, **chunk},
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    run(STAGES="warm train", ARMS="batch", SEEDS="0,1")
    run(STAGES="train", ARMS="depth", SEEDS="0")
    for arm, seeds in (("batch", (0, 1)), ("depth", (0,))):
        for seed in seeds:
            folders = sorted(p for p in (runs / arm / f"seed{seed}").iterdir() if p.is_dir())
            assert len(folders) == 6 and all((p / "metrics.json").is_file() for p in folders)
    depth_run = runs / "depth" / "seed0" / "0"
    assert yaml.safe_load((depth_run / "config.yaml").read_text())["model"]["train_top_layers"] is None
    assert not (depth_run / "trunk_cache.json").exists() and (runs / "batch" / "seed0" / "0" / "trunk_cache.json").exists()
    metrics = json.loads((depth_run / "metrics.json").read_text())
    assert {"mlqa-r/map/multi", "lir/map/multi", "mlqa-r/shift/map/multi"} <= set(metrics)
    assert not list(runs.rglob("*.ckpt"))  # checkpoint.keep=none

    # the reference level: a ratio study's results.csv + curves.csv (here the batch runs, as its grid rows)
    table, curves = sweep_tables(runs / "batch")
    ref.mkdir()
    table.assign(run="grid/" + table["run"], source="grid").to_csv(ref / "results.csv", index=False)
    curves.assign(run="grid/" + curves["run"]).to_csv(ref / "curves.csv", index=False)

    again = run(STAGES="train results", ARMS="batch", SEEDS="0")  # a finished chunk rerun trains nothing
    assert again.stderr.count("already complete") + again.stdout.count("already complete") == 6
    results = pd.read_csv(out / "results.csv")
    assert results["arm"].value_counts().to_dict() == {"reference": 12, "batch": 12}
    assert results.loc[results["arm"] == "batch", "train/steps"].eq(5).all() and results["mlqa-r/map/multi"].notna().all()
    assert set(pd.read_csv(out / "curves.csv")["run"]) == set(results["run"])
    assert {"warm", "batch-seed0", "batch-seed1", "depth-seed0"} <= set(pd.read_csv(out / "timing.csv")["stage"])
    text = (out / "README.md").read_text()
    assert text.startswith("# prose") and "(24 runs: reference 12; batch 12)" in text
    assert "### F1: each factor's main effect" in text and "### F4: the best mix on the edge per level" in text
