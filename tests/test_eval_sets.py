"""`eval.sets`: more corpora scored per run (MLQA-R zero-shot, held-out languages), checked before
anything loads, metrics prefixed `<set>/`, and never a set that re-scores training articles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.run.preflight import validate
from batchmix.core.errors import BatchmixError
from batchmix.eval.sets import eval_sets, load_eval_set

TINY = ["model=tiny", "data.languages=[en,de]", "data.batch_size=4", "data.batches_per_epoch=2",
        "save_model=false", "logger=none", "eval.before=false"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _sets_and_data(cfg):
    return cfg.eval.sets, cfg.data


@pytest.mark.parametrize("overrides, fragment", [
    (["+eval.sets.x.splt=test"], "eval.sets.x has unknown keys ['splt']"),
    (["+eval.sets.x.split=dev"], "eval.sets.x.split='dev' is not one of"),
    (["+eval.sets.x.dataset=xquad-r"], "eval.sets.x scores xquad-r split=all, which holds the articles this run trains on"),
    (["+eval.sets.x.dataset=xquad-r", "+eval.sets.x.split=train"], "use eval.sets.x.split=test"),
    (["+eval.sets.mlqa-r.split=all", "+eval.sets.mlqa-r.root=/nonexistent/mlqa-r"], "eval.sets.mlqa-r: eval.sets.mlqa-r.root='/nonexistent/mlqa-r' is not a directory"),
    (["+eval.sets.mlqa-r.required=maybe"], "eval.sets.mlqa-r.required='maybe'"),
])
def test_bad_sets_fail_in_validation(overrides, fragment, xquad_root):
    with pytest.raises(BatchmixError) as err:
        validate(compose_cfg([*TINY, *overrides]))
    assert fragment in str(err.value)


def test_optional_missing_set_is_skipped_with_a_warning(caplog, monkeypatch, tmp_path, xquad_root):
    monkeypatch.setenv("BATCHMIX_DATA", str(tmp_path))  # no mlqa-r/ there
    (tmp_path / "xquad-r").symlink_to(xquad_root)
    cfg = compose_cfg([*TINY, "+eval.sets.mlqa-r.split=test", "+eval.sets.mlqa-r.required=false"])
    validate(cfg)  # no error
    with caplog.at_level("WARNING", logger="batchmix"):
        assert eval_sets(cfg.eval.sets, cfg.data) == []
    assert "eval.sets.mlqa-r skipped" in caplog.text and "eval.sets.mlqa-r.root=/path/to/mlqa-r" in caplog.text
    with pytest.raises(BatchmixError, match="required=false to skip it while missing"):
        eval_sets(*_sets_and_data(compose_cfg([*TINY, "+eval.sets.mlqa-r.split=test"])))


def _mlqa_like(tmp_path: Path, xquad_root: Path, langs=("en", "de", "es")) -> Path:
    """A stand-in for MLQA-R: a LAReQA folder under another dataset name."""
    root = tmp_path / "mlqa-r"
    root.mkdir()
    for lang in langs:
        shutil.copy(xquad_root / f"{lang}.json", root / f"{lang}.json")
    return root


def test_held_out_split_of_a_set_is_the_training_split_s_test_articles(tmp_path, xquad_root):
    cfg = compose_cfg([*TINY, "+eval.sets.xq.dataset=xquad-r", "+eval.sets.xq.split=test", "+eval.sets.xq.languages=[es,zh]"])
    (spec,) = eval_sets(cfg.eval.sets, cfg.data)
    corpus = load_eval_set(spec)
    from batchmix.data.load import load_splits

    _, splits = load_splits(OmegaConf.to_container(cfg.data, resolve=True))
    assert corpus.langs == ["es", "zh"]
    assert set(corpus.languages["es"].question_ids) == set(splits["test"].languages["en"].question_ids)


@pytest.mark.slow
def test_train_scores_every_set_with_prefixed_metrics(tmp_path, xquad_root):
    from batchmix.run.train import train

    root = _mlqa_like(tmp_path, xquad_root)
    cfg = compose_cfg([*TINY, f"+eval.sets.mlqa-r.root={root}", "+eval.sets.mlqa-r.split=test",
                       "+eval.sets.xq.dataset=xquad-r", "+eval.sets.xq.split=test", "+eval.sets.xq.languages=[zh]"])
    out = train(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert out["objective"] == metrics["val/map/multi"]
    own = json.loads((tmp_path / "run" / "eval" / "final" / "metrics.json").read_text())
    for key in ("mlqa-r", "xq"):
        per_set = json.loads((tmp_path / "run" / "eval" / "final" / key / "metrics.json").read_text())
        assert {f"{key}/{k}": v for k, v in per_set.items()} == {k: v for k, v in metrics.items() if k.startswith(f"{key}/")}
    assert {k: metrics[k] for k in own} == own
    # the stand-in is XQuAD-R's files under another name: its test split scores exactly like the run's own
    # held-out articles restricted to the same languages (two independent code paths, one number)
    assert metrics["mlqa-r/map/mono/en"] == pytest.approx(metrics["map/mono/en"], abs=1e-6)
    assert "xq/map/mono/zh" in metrics and "xq/map/cross/zh-en" not in metrics


@pytest.mark.slow
def test_eval_py_scores_sets_zero_shot(tmp_path, xquad_root):
    import subprocess
    import sys

    root = _mlqa_like(tmp_path, xquad_root, langs=("en", "de"))
    out = tmp_path / "zs"
    res = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "eval.py"), "model=tiny", "data.languages=[en,de]",
                          "split=test", "eval.trec=false", f"hydra.run.dir={out}", f"+eval.sets.mlqa-r.root={root}",
                          "+eval.sets.mlqa-r.split=test", "+eval.sets.xq.dataset=xquad-r", "+eval.sets.xq.languages=[en]"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mlqa-r/map/mono/en"] == pytest.approx(metrics["map/mono/en"], abs=1e-6)
    assert "xq/map/multi" in metrics  # an untrained model may score all of the training dataset
    assert "mlqa-r/map/multi" in res.stdout
