"""The config schemas (batchmix/config/schema.py): a wrong type or an unknown key is refused while
Hydra composes, in batchmix's one line; the schemas change no composed value; docs/config.md is
what the schemas generate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.config.reference import reference

REPO = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_generated():
    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8") == reference(), \
        "regenerate it: python -m batchmix.config.reference > docs/config.md"


@pytest.mark.parametrize("override, named", [("data.batch_size=abc", "data.batch_size=abc"),
                                             ("model.pooling_typo=1", "model.pooling_typo")])
def test_wrong_type_or_unknown_key_is_one_line(override, named):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": ""}
    env.pop("HYDRA_FULL_ERROR")
    proc = subprocess.run([sys.executable, "train.py", override, "logger=none"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("batchmix: error:") and named in lines[0], proc.stderr


def test_open_nodes_stay_open():
    """ratio takes a new batch type, eval.sets a new corpus, the train root a sweep's own node."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["+ratio.pivot=0.2", "+eval.sets.x.split=all", "hparams_search=ratio_optuna"])
    assert cfg.ratio.pivot == 0.2 and cfg.eval.sets.x.split == "all" and cfg.pruning.enabled is False
