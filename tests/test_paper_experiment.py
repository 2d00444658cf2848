"""The paper ratio study (experiments/paper_ratio_sweep/): the paper's configs compose with its
hyperparameters, and the CPU-scale study runs end to end through run.sh on a tiny model, ending in
a README block with every ratio x seed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.report.study_markdown import BEGIN, END

REPO = Path(__file__).resolve().parents[1]


def compose_cfg(overrides: list[str], multirun: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=multirun)


@pytest.mark.parametrize("name, model, pooling", [("paper_xlmr", "xlm-roberta-base", "mean"),
                                                  ("paper_labse", "sentence-transformers/LaBSE", "cls")])
def test_paper_configs_carry_the_papers_setup(name, model, pooling):
    cfg = compose_cfg([f"experiment={name}"], multirun=True)
    assert cfg.model.name_or_path == model and cfg.model.pooling == pooling
    assert (cfg.model.query_prefix, cfg.model.passage_prefix) == ("Query: ", "Passage: ")
    assert cfg.data.batch_size == 100 and cfg.optim.lr == 3e-5 and cfg.optim.weight_decay == 0.01
    assert cfg.loss._target_ == "batchmix.losses.InfoNCELoss" and cfg.trainer.accelerator == "gpu"
    assert cfg.eval.sets["mlqa-r"].split == "all" and cfg.eval.sets["mlqa-r"].required is True
    params = cfg.hydra.sweeper.params
    assert params["ratio.mono"] == "0.0,0.25,0.5,0.75,1.0" and params["ratio.multi"] == "0.0" and params.seed == "0,1,2"


def test_cpu_study_config_overrides_the_defaults():
    cfg = compose_cfg(["experiment=paper_cpu"], multirun=True)
    assert cfg.model.name_or_path == "embedded:multilingual-e5-small"
    assert cfg.eval.before is False and cfg.save_model is False  # train.yaml says true: the experiment wins
    assert cfg.data.batch_size == 16 and cfg.optim.lr == 3e-5 and cfg.trainer.max_epochs == 1
    assert cfg.eval.sets["mlqa-r"].required is False
    params = cfg.hydra.sweeper.params
    assert params.ratio.split(",") == ["mono_only", "cross_only", "hybrid", "thirds"] and len(params.seed.split(",")) >= 3


@pytest.mark.slow
def test_run_sh_regenerates_the_study_block_on_a_tiny_model(tmp_path, xquad_root):
    readme = tmp_path / "README.md"
    readme.write_text(f"# study\n\nregenerate: make paper-study\n\n{BEGIN}\n{END}\n\nwhy it looks like this\n")
    env = {**os.environ, "SWEEP_DIR": str(tmp_path / "sweep"), "STUDY_README": str(readme),
           "EVAL_ARGS": "model=tiny data.languages=[en,de,es]", "PY": str(Path(os.sys.executable))}
    res = subprocess.run(["bash", str(REPO / "experiments" / "paper_ratio_sweep" / "run.sh"), "model=tiny",
                          "data.languages=[en,de,es]", "data.batch_size=4", "data.batches_per_epoch=3", "logger=none",
                          "seed=0,1"],  # 2 of the study's 3 seeds (a command-line sweep wins over the config's): CI time
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    text = readme.read_text()
    assert text.startswith("# study\n\nregenerate: make paper-study\n\n") and text.endswith("why it looks like this\n")
    assert "from 8 complete runs (4 ratios × seeds 0, 1)" in text
    for row in ("| none (zero-shot) |", "| mono only |", "| cross only |", "| hybrid |", "| thirds |"):
        assert row in text
    assert "`mlqa-r` (MLQA-R)" in text or "MLQA-R (test articles, zero-shot)" in text  # named either way
    assert all((tmp_path / "figures" / f"{n}.png").is_file() for n in ("curves_loss", "curves_mse", "map_by_ratio_heldout"))
    assert "paper study:" in res.stdout
