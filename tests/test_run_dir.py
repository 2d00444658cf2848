"""The run folder (`batchmix.core.run_dir`): file names, round trips through its readers and writers, the
one-line error for a torn metrics.json, and resume, the report and the sweeper reading a run alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from batchmix.eval.convergence import convergence_summary, mean_of_last, write_convergence
from batchmix.core.errors import BatchmixError
from batchmix.report.aggregate import load_runs
from batchmix.run.resume import config_differences, plan_resume
from batchmix.core.run_dir import RunDir, find_run_dirs, flatten, read_json
from batchmix.run.train import _training_summary
from hydra_plugins.batchmix_optuna_sweeper._saved_result import result_from_run_dir

CFG = {"seed": 1, "objective": "map/multi", "resume": True, "save_model": False,
       "ratio": {"mono": 0.2, "cross": 0.5, "multi": 0.3}, "optim": {"lr": 3e-5}, "data": {"languages": ["de", "en"]}}


def finished_run(path, metrics=None):
    run = RunDir(path)
    run.write_config(OmegaConf.create(CFG))
    run.write_metrics(metrics if metrics is not None else {"map/multi": 0.25, "map/mono": 0.5})
    run.write_metrics_before({"map/multi": 0.125})
    run.write_history(pd.DataFrame({"step": [0, 1, 2], "batch_type": ["mono", "cross", "mono"],
                                    "loss": [2.0, 1.5, 1.0], "mse": [0.5, 0.25, 0.125]}))
    return run


def test_layout_is_the_documented_one(tmp_path):
    run = RunDir(tmp_path)
    rel = lambda p: p.relative_to(tmp_path).as_posix()  # noqa: E731
    assert [rel(p) for p in (run.config_file, run.metrics_file, run.metrics_before_file, run.history_file,
                             run.convergence_file, run.failed_file, run.last_checkpoint, run.model_info_file)] == [
        "config.yaml", "metrics.json", "metrics_before.json", "history.csv", "convergence.json", "failed.json",
        "checkpoints/last.ckpt", "model/batchmix.json"]
    assert rel(run.eval_dir("final")) == "eval/final"
    assert rel(run.eval_dir("before", "mlqa-r")) == "eval/before/mlqa-r"


def test_round_trips(tmp_path):
    run = finished_run(tmp_path)
    assert run.read_metrics() == {"map/multi": 0.25, "map/mono": 0.5}
    assert run.read_metrics_before() == {"map/multi": 0.125}
    assert run.read_config() == CFG  # plain data, as yaml.safe_load gives it
    assert OmegaConf.to_container(run.load_config()) == CFG
    history = run.read_history()
    assert history["loss"].tolist() == [2.0, 1.5, 1.0] and history["batch_type"].tolist() == ["mono", "cross", "mono"]
    run.write_convergence({"conv/mono/loss/final": 1.25, "conv/multi/loss/final": math.nan})
    assert json.loads(run.convergence_file.read_text()) == {"conv/mono/loss/final": 1.25, "conv/multi/loss/final": None}
    back = run.read_convergence()
    assert back["conv/mono/loss/final"] == 1.25 and math.isnan(back["conv/multi/loss/final"])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writers leave no temp file behind


def test_missing_files_read_as_empty(tmp_path):
    run = RunDir(tmp_path / "nothing")
    assert run.read_metrics() == {} and run.read_config() == {} and run.read_history() is None
    run.path.mkdir()
    run.history_file.write_text("")
    assert run.read_history() is None  # a run killed before its first row
    run.metrics_file.write_text("[1, 2]")
    assert run.read_metrics() == {}  # not an object: no metrics


def test_invalid_json_is_one_error_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"map/multi": 0.2')
    with pytest.raises(BatchmixError) as err:
        read_json(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is not valid JSON (") and message.endswith("; rerun that job or delete the file")


def test_invalid_config_yaml_is_one_error_line(tmp_path):
    RunDir(tmp_path).config_file.write_text("seed: [1, 2\n")
    with pytest.raises(BatchmixError, match=r"config.yaml is not valid YAML \(.*\); is it a batchmix run dir\?$"):
        RunDir(tmp_path).read_config()


def test_flatten_keeps_every_key_and_leaf():
    tree = {"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "eval": {"sets": {}}, "seed": 3}
    assert flatten(tree) == {"optim.lr": 0.001, "optim.betas": [0.9, 0.99], "eval.sets": {}, "seed": 3}
    assert flatten({}) == {"": {}}


def test_find_run_dirs_natural_order_and_skipped_folders(tmp_path):
    for name in ("10", "2", "1"):
        finished_run(tmp_path / name)
    (tmp_path / "2" / ".hydra").mkdir()
    (tmp_path / "2" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "2" / "model").mkdir()  # an export holds no run, nor does a logger folder
    (tmp_path / "2" / "model" / "config.yaml").write_text("{}\n")
    (tmp_path / "2" / "model" / "metrics.json").write_text("{}\n")
    assert [p.name for p in find_run_dirs(tmp_path)] == ["1", "2", "10"]
    with pytest.raises(BatchmixError, match="does not exist"):
        find_run_dirs(tmp_path / "missing")


def test_resume_the_report_and_the_sweeper_read_a_run_alike(tmp_path):
    run = finished_run(tmp_path / "0", {"map/multi": 0.375, "map/mono": 0.5, "bias/rank_distance": 0.25})
    cfg = OmegaConf.create(CFG)
    finished = plan_resume(cfg, run.path).finished
    row = load_runs(tmp_path).iloc[0]
    assert finished["metrics"] == run.read_metrics()
    assert finished["metrics_before"] == {"map/multi": 0.125} and row["before/map/multi"] == 0.125
    assert {k: row[k] for k in finished["metrics"]} == finished["metrics"]
    assert finished["objective"] == result_from_run_dir(run.path, "map/mono") == 0.375  # config.yaml's objective wins


def test_a_torn_metrics_json_is_an_unfinished_run_to_resume_but_an_error_in_the_report(tmp_path):
    run = finished_run(tmp_path / "0")
    run.metrics_file.write_text('{"map/multi": 0.')
    with pytest.raises(BatchmixError, match=r"0/metrics.json is not valid JSON"):
        load_runs(tmp_path)
    assert result_from_run_dir(run.path, "map/multi") is None  # the sweeper: no result, the trial fails
    assert plan_resume(OmegaConf.create(CFG), run.path).finished is None  # a rerun trains it again ...
    assert not run.metrics_file.exists()  # ... from scratch (no checkpoint), the torn file gone


def test_resume_and_the_report_agree_on_which_config_keys_differ(tmp_path):
    a, b = dict(CFG), {**CFG, "optim": {"lr": 1e-3}, "data": {"languages": ["de", "en", "es"]}}
    for name, cfg in (("0", a), ("1", b)):
        RunDir(tmp_path / name).config_file.parent.mkdir(parents=True)
        RunDir(tmp_path / name).config_file.write_text(yaml.safe_dump(cfg))
        RunDir(tmp_path / name).write_metrics({"map/multi": 0.5})
    differs = config_differences(OmegaConf.create(a), OmegaConf.create(b))
    assert differs == ["data.languages: ['de', 'en'] -> ['de', 'en', 'es']", "optim.lr: 3e-05 -> 0.001"]
    runs = load_runs(tmp_path)
    assert sorted(c for c in runs.columns if c.startswith("cfg/")) == ["cfg/data.languages", "cfg/optim.lr"]
    assert runs["cfg/data.languages"].tolist() == ['["de", "en"]', '["de", "en", "es"]']  # lists as JSON text


def test_masked_entries_are_summed_per_batch_type_into_metrics(tmp_path):
    history = pd.DataFrame({"step": range(6), "batch_type": ["mono", "cross", "mono", "multi", "mono", "cross"],
                            "loss": [1.0] * 6, "mse": [0.1] * 6, "masked": [2, 0, 4, 1, 0, 6]})
    summary = _training_summary(history, write_convergence(tmp_path, history))
    assert summary["train/masked"] == 13.0
    assert (summary["train/mono/masked"], summary["train/cross/masked"], summary["train/multi/masked"]) == (6.0, 6.0, 1.0)


def test_a_types_final_loss_is_the_last_smoothed_value(tmp_path):
    steps = np.arange(40)
    loss = 2.0 * np.exp(-steps / 10.0) + 0.5
    types = np.where(steps % 4 == 0, "cross", "mono")
    history = pd.DataFrame({"step": steps, "batch_type": types, "loss": loss, "mse": loss / 10})
    convergence = write_convergence(tmp_path, history)
    summary = _training_summary(history, convergence)
    # the debiased EMA (span 20, alpha = 2/21) of the mono loss, computed by hand
    mono = loss[types == "mono"]
    alpha = 2 / 21
    weights = (1 - alpha) ** np.arange(len(mono))[::-1]
    assert summary["train/mono/loss_final"] == pytest.approx(float((weights * mono).sum() / weights.sum()))
    assert summary["train/cross/steps"] == 10.0 and summary["train/steps"] == 40.0
    for btype in ("mono", "cross"):
        for curve in ("loss", "mse"):
            assert summary[f"train/{btype}/{curve}_final"] == convergence[f"conv/{btype}/{curve}/final"]
    assert RunDir(tmp_path).read_convergence() == pytest.approx(convergence_summary(history), nan_ok=True)
    # the study table's "last 10" stays the raw mean of the type's last 10 batches
    assert mean_of_last(history)["conv/mono/loss/last10"] == pytest.approx(float(mono[-10:].mean()))
    assert "conv/multi/loss/last10" not in mean_of_last(history)


def test_a_config_saved_before_a_key_existed_resumes_when_the_key_keeps_its_default():
    from batchmix.config.legacy import added_keys

    old = {**CFG, "model": {"name_or_path": "m"}}
    same = {**old, "model": {"name_or_path": "m", "train_top_layers": None, "trunk_cache": "disk"}, "export_full": False}
    assert {"model.train_top_layers", "model.trunk_cache", "export_full", "loss.mask"} <= set(added_keys())
    assert config_differences(OmegaConf.create(old), OmegaConf.create(same)) == []
    changed = {**same, "model": {**same["model"], "train_top_layers": 2}}
    assert config_differences(OmegaConf.create(old), OmegaConf.create(changed)) == ["model.train_top_layers: None -> 2"]


@pytest.mark.parametrize("saved_loss, legacy", [({"temperature": 0.05}, "ids"),  # before mask_translations, too
                                                ({"temperature": 0.05, "mask_translations": True}, "ids"),
                                                ({"temperature": 0.05, "mask_translations": False}, "none")])
def test_a_run_made_before_loss_mask_resumes_with_the_mask_it_had(tmp_path, saved_loss, legacy):
    """The new default (answers) differs from what the old run did: the run continues as it ran."""
    from batchmix.run.resume import adopt_legacy

    saved = OmegaConf.create({**CFG, "loss": saved_loss})
    now = OmegaConf.create({**CFG, "loss": {"temperature": 0.05, "mask": "answers"}})
    assert config_differences(saved, now) == [f"loss.mask: {legacy} -> answers"]
    assert adopt_legacy(saved, now, tmp_path) == [f"loss.mask={legacy}"]
    assert now.loss.mask == legacy and config_differences(saved, now) == []
    # A config that holds the key is read as it is: nothing adopted.
    current = OmegaConf.create({**CFG, "loss": {"temperature": 0.05, "mask": "answers"}})
    assert adopt_legacy(current, current.copy(), tmp_path) == []


def test_an_old_run_dir_resumes_through_plan_resume_with_its_mask(tmp_path):
    finished_run(tmp_path)  # CFG: written before loss.mask existed (no loss block at all)
    now = OmegaConf.create({**CFG, "loss": {"mask": "answers"}})
    assert plan_resume(now, tmp_path).finished is not None  # the finished run is recognised, not refused
    assert now.loss.mask == "ids"