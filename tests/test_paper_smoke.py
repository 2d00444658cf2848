"""The paper's configs run, not only compose: `python train.py experiment=paper_xlmr` (and
paper_labse) end to end on a tiny local stand-in of the hub model (same architecture class, config,
weights and tokenizer files, hidden size 32), a JSONL training file with hard negatives, trainer=cpu
and MLQA-R scored as the paper's required eval set. Everything else is the experiment's own config
(prefixes, lr, weight decay, InfoNCE, ratio, model max lengths); only the scale is cut so one run
takes ~20 s on 2 cores, and the loss's temperature is raised so the loss counts the candidates."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from batchmix.core.errors import BatchmixError
from paper_standins import save_standin, write_negatives_jsonl

REPO = Path(__file__).resolve().parents[1]
BATCH, NEGATIVES, STEPS = 8, 2, 3
LANGS = ["en", "de", "es"]


@pytest.fixture(scope="module")
def mlqa_root() -> Path:
    from batchmix.data.root import resolve_data_root

    try:
        return resolve_data_root(None, "mlqa-r")
    except BatchmixError as err:
        pytest.skip(f"MLQA-R not available: {err}")


@pytest.fixture(scope="module")
def negatives_jsonl(tmp_path_factory, xquad_root) -> Path:
    """200 XQuAD-R training ids in en/de/es, 3 same-language hard negatives each (answers of other ids)."""
    return write_negatives_jsonl(xquad_root, tmp_path_factory.mktemp("data") / "pairs.jsonl", LANGS, max_ids=200, per_pair=3)


@pytest.mark.slow
@pytest.mark.parametrize("experiment, model_type, pooling", [("paper_xlmr", "xlm-roberta", "mean"), ("paper_labse", "bert", "cls")])
def test_paper_experiment_runs_with_hard_negatives(tmp_path, xquad_root, mlqa_root, negatives_jsonl, experiment, model_type, pooling):
    model_dir = save_standin(tmp_path / "standin", model_type)
    run_dir = tmp_path / "run"
    args = [
        f"experiment={experiment}", f"model.name_or_path={model_dir}", f"data.train_file={negatives_jsonl}",
        f"data.hard_negatives={NEGATIVES}", "trainer=cpu",
        # the scale: 3 steps of 8 queries, XQuAD-R eval in 3 languages, MLQA-R (split=all) in 2
        f"data.batch_size={BATCH}", f"trainer.max_steps={STEPS}", f"data.languages=[{','.join(LANGS)}]",
        f"data.root={xquad_root}", f"+eval.sets.mlqa-r.root={mlqa_root}", "+eval.sets.mlqa-r.languages=[de,es]",
        "eval.before=false", "logger=csv", f"hydra.run.dir={run_dir}",
        # a flat softmax (cosine / 1000): the loss is log(candidates) to 0.01, which shows how many were scored
        "loss.temperature=1000",
    ]
    # One torch thread: a tiny model gains nothing from more, and on a shared 2-core box it runs ~5x faster.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    # The experiment's own settings survived, with the local model and the hard negatives.
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.model.name_or_path == str(model_dir) and cfg.model.pooling == pooling
    assert (cfg.model.query_prefix, cfg.model.passage_prefix) == ("Query: ", "Passage: ")
    assert cfg.optim.lr == 3e-5 and cfg.optim.weight_decay == 0.01 and cfg.loss._target_ == "batchmix.losses.InfoNCELoss"
    assert cfg.data.train_file == str(negatives_jsonl) and cfg.data.hard_negatives == NEGATIVES
    assert cfg.eval.sets["mlqa-r"].split == "all" and cfg.eval.sets["mlqa-r"].required is True

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("map/multi", "map/mono", "map/cross", "val/map/multi", "mlqa-r/map/multi", "mlqa-r/map/mono", "mlqa-r/map/cross"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["train/steps"] == STEPS

    hist = pd.read_csv(run_dir / "history.csv")
    assert list(hist["step"]) == list(range(STEPS)) and hist["loss"].notna().all()
    # The hard negatives were scored: every query saw the 8 positives and the 8 x 2 hard negatives, less
    # the candidates that answer it (loss.mask=answers; a hard negative is another id's answer, and two
    # ids of a batch may share one): with a flat softmax a query's loss is log(its candidates), so a step
    # with m masked entries lies in [log(24 - m), log(24)], log(24) = 3.18 exactly when none is masked
    # (in-batch only it would be log(8) = 2.08).
    full = BATCH * (1 + NEGATIVES)
    for loss, masked in zip(hist["loss"], hist["masked"]):
        assert math.log(full - masked) - 0.01 <= loss <= math.log(full) + 0.01
        assert masked > 0 or loss == pytest.approx(math.log(full), abs=0.01)
    assert "train/loss" in pd.read_csv(run_dir / "csv" / "metrics.csv").columns

    # The export is a model of the same shape as the input, loadable like the hub one.
    exported = json.loads((run_dir / "model" / "config.json").read_text())
    assert exported["model_type"] == model_type and exported["hidden_size"] == 32
    assert (run_dir / "model" / "tokenizer.json").is_file()
    assert "mlqa-r/map/multi" in res.stdout
