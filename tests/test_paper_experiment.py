"""The paper ratio study (experiments/paper_ratio_sweep/): the paper's configs compose with its
hyperparameters. Its run.sh is no longer run end to end here: the study is folded into
experiments/ratio_study/, whose run.sh is (tests/test_ratio_study_run.py)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR


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
