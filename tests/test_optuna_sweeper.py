"""The batchmix Optuna sweeper (Hydra plugin) on the real configs, with the training-free dry run
(`python -m batchmix.run.sweep.dry_run`) as the task: search-space grammar, simplex sampling, SQLite
storage and study continuation (n_trials = the study's target), failed and pruned trials, results
read from a run dir, the Pareto front, parallel sweepers on one study, bad storage URLs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.run.sweep.dry_run import synthetic_metrics
from batchmix.eval.objectives import select_objective
from hydra_plugins.batchmix_optuna_sweeper._impl import JobExited, _ExitAsFailure, _quote
from hydra_plugins.batchmix_optuna_sweeper._loop import _consecutive_runs
from hydra_plugins.batchmix_optuna_sweeper._params import SearchSpace

REPO = Path(__file__).resolve().parents[1]


def dry_run(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "batchmix.run.sweep.dry_run", "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


# ---------------------------------------------------------------------------------- search space
def test_grammar_becomes_optuna_distributions():
    space = SearchSpace.parse([
        "optim.lr=tag(log, interval(1e-5, 1e-3))",
        "loss.temperature=interval(0.01, 0.1)",
        "data.batch_size=choice(8, 16, 32)",
        "trainer.max_epochs=range(1, 7, 2)",
        "optim.warmup_ratio=range(0.0, 0.3, 0.1)",
        "seed=int(interval(0, 5))",
        "data.batches_per_epoch=tag(log, int(interval(1, 100)))",
        "model=tiny",
    ])
    d = space.distributions
    assert d["optim.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert d["loss.temperature"] == FloatDistribution(0.01, 0.1)
    assert d["data.batch_size"] == CategoricalDistribution([8, 16, 32])
    assert d["trainer.max_epochs"] == IntDistribution(1, 5, step=2)  # range excludes stop, as in Hydra
    assert d["optim.warmup_ratio"].high == pytest.approx(0.2) and d["optim.warmup_ratio"].step == pytest.approx(0.1)
    assert d["seed"] == IntDistribution(0, 5)
    assert d["data.batches_per_epoch"] == IntDistribution(1, 100, log=True)
    assert space.fixed == {"model": "model=tiny"} and space.simplexes == []


def test_command_line_replaces_params_and_simplex_becomes_three_overrides():
    space = SearchSpace.parse(["ratio=simplex(mono, cross, multi)", "seed=choice(1,2)", "seed=3"])
    assert space.fixed == {"seed": "seed=3"} and "seed" not in space.distributions
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        overrides, derived = space.suggest(trial)
        assert set(trial.params) == {"ratio.u1", "ratio.u2"}
        assert sorted(derived) == ["ratio.cross", "ratio.mono", "ratio.multi"]
        assert [o for o in overrides if o.startswith("ratio.")] == [f"{k}={v!r}" for k, v in derived.items()]
        Ratio.from_mapping({k.split(".")[1]: v for k, v in derived.items()})
        study.tell(trial, 0.0)


def test_simplex_without_names_covers_every_registered_batch_type():
    """`ratio: simplex()` (the hparams_search configs) reads the registry when a trial is sampled: the
    three built-in types give two free coordinates; a type registered later adds a third."""
    from batchmix.mixing.batch_types import BatchType, registered

    space = SearchSpace.parse(["ratio=simplex()"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    _, derived = space.suggest(trial)
    assert set(trial.params) == {"ratio.u1", "ratio.u2"}
    assert list(derived) == ["ratio.mono", "ratio.cross", "ratio.multi"]
    study.tell(trial, 0.0)
    with registered(BatchType("extra", lambda ctx: [], "extra", "black")):
        trial = study.ask()
        _, derived = space.suggest(trial)
        assert set(trial.params) == {"ratio.u1", "ratio.u2", "ratio.u3"}
        assert list(derived) == ["ratio.mono", "ratio.cross", "ratio.multi", "ratio.extra"]
        assert sum(derived.values()) == pytest.approx(1.0) and min(derived.values()) >= 0
        Ratio.from_mapping({k.split(".")[1]: v for k, v in derived.items()})
        study.tell(trial, 0.0)


def test_bad_simplex_is_refused():
    with pytest.raises(Exception, match="two or more distinct"):
        SearchSpace.parse(["ratio=simplex(mono, mono)"])


def test_exit_becomes_a_failed_job_not_the_end_of_the_sweep():
    def task(cfg):
        sys.exit(cfg)

    with pytest.raises(JobExited, match="status 2"):
        _ExitAsFailure(task)(2)
    with pytest.raises(SystemExit):
        _ExitAsFailure(task)(0)


def test_quoting_survives_hydras_grammar():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for url in ("postgresql+psycopg://user:p'w\\d@127.0.0.1:5432/db?x=1&y=${z}\\", "sqlite:////tmp/a b/study.db"):
        parsed = OverridesParser.create().parse_override(f"++hydra.job.env_set.X={_quote(url)}")
        assert OmegaConf.create({"x": parsed.value()}).x == url  # as the job's resolved config sees it


def test_consecutive_trial_numbers_share_a_launch():
    class T:
        def __init__(self, n):
            self.number = n

    assert _consecutive_runs([T(4), T(5), T(7), T(8), T(9), T(11)]) == [[0, 1], [2, 3, 4], [5]]


def test_objective_may_be_one_metric_or_a_list():
    metrics = {"map/multi": 0.5, "bias/rank_distance": 0.1}
    assert select_objective("map/multi", metrics) == 0.5
    assert select_objective(OmegaConf.create(["map/multi", "bias/rank_distance"]), metrics) == [0.5, 0.1]
    with pytest.raises(BatchmixError, match="'map/xx' is not a metric"):
        select_objective(["map/multi", "map/xx"], metrics)
    with pytest.raises(BatchmixError, match="must be a metric name"):
        select_objective(3, metrics)


def test_plugin_is_discovered_by_hydra():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = {cls.__name__ for cls in Plugins.instance().discover(Sweeper)}
    assert "BatchmixOptunaSweeper" in names


# ------------------------------------------------------------------------ the sweeps under test
SCENARIOS = {
    # ratio_optuna to 4 trials, then rerun with the same storage and study name and a target of 8: 4
    # more; then the same command again: the study is finished, nothing runs.
    "continued": [["hparams_search=ratio_optuna", "hydra.sweeper.n_trials=4"],
                  ["hparams_search=ratio_optuna", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=3"],
                  ["hparams_search=ratio_optuna", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=3"]],
    # mono=0.9 with multi=0.2 is an impossible ratio: that job exits 2 as `train.py` does.
    "failing": [["hydra/sweeper=batchmix_optuna", "ratio.mono=choice(0.2, 0.9)", "ratio.multi=0.2", "hydra.sweeper.n_trials=6",
                 "hydra.sweeper.sampler.seed=0", "objective=val/map/multi", "hydra.sweeper.direction=maximize",
                 "hydra.sweeper.study_name=failing"]],
    "pruned": [["hparams_search=ratio_optuna", "hydra.sweeper.n_trials=6", "pruning.enabled=true", "eval.val_every_n_steps=1", "trainer.max_steps=3",
                "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=0"]],
    "pareto": [["hparams_search=ratio_optuna_pareto", "hydra.sweeper.n_trials=8", "hydra.sweeper.sampler.population_size=4"]],
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple[Path, str, list[subprocess.CompletedProcess]]]:
    """Each scenario in its own folder and SQLite file; scenarios run side by side (each one's runs in order)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(name: str):
        tmp = tmp_path_factory.mktemp(name)
        storage = f"sqlite:///{tmp}/study.db"
        common = [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp}/sweep"]
        return tmp, storage, [dry_run(args + common, tmp) for args in SCENARIOS[name]]

    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        results = dict(zip(SCENARIOS, pool.map(run, SCENARIOS)))
    for name, (_, _, runs) in results.items():
        for res in runs:
            assert res.returncode == 0, f"{name}: {res.stderr[-3000:]}"
    return results


@pytest.mark.slow
def test_rerun_continues_the_study_up_to_n_trials(sweeps):
    _, storage, (_, extended, finished) = sweeps["continued"]
    study = load(storage, "ratio_optuna")
    assert [t.number for t in study.trials] == list(range(8))  # 4, then 4 more to reach 8, then none
    assert "4 of hydra.sweeper.n_trials=8 trials finished" in extended.stderr + extended.stdout
    assert "already has 8 finished trials: nothing to run" in finished.stderr + finished.stdout
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert study.metric_names == ["val/map/multi"]
    # The second run was reseeded, so it did not replay the first run's points.
    first = {tuple(t.params.values()) for t in study.trials[:4]}
    assert not first & {tuple(t.params.values()) for t in study.trials[4:]}


@pytest.mark.slow
def test_every_trial_trained_the_ratio_it_records(sweeps):
    tmp, storage, _ = sweeps["continued"]
    for t in load(storage, "ratio_optuna").trials:
        run = tmp / "sweep" / str(t.number)  # job num == trial number, across reruns
        assert t.user_attrs["output_dir"] == str(run)
        cfg = OmegaConf.load(run / "config.yaml")
        recorded = {k: t.user_attrs[f"ratio.{k}"] for k in ("mono", "cross", "multi")}
        assert OmegaConf.to_container(cfg.ratio) == pytest.approx(recorded, abs=0)
        assert sum(recorded.values()) == pytest.approx(1.0, abs=1e-9) and min(recorded.values()) >= 0
        assert t.value == pytest.approx(synthetic_metrics(Ratio.from_mapping(cfg.ratio))["val/map/multi"])


@pytest.mark.slow
def test_study_tables_in_the_sweep_dir(sweeps):
    tmp, storage, _ = sweeps["continued"]
    table = pd.read_csv(tmp / "sweep" / "optuna_trials.csv")
    assert list(table["number"]) == list(range(8))
    for col in ("value_val/map/multi", "params_ratio.u1", "params_ratio.u2", "user_attrs_ratio.mono", "state"):
        assert col in table.columns
    best = OmegaConf.load(tmp / "sweep" / "optimization_results.yaml")
    assert best.best_value == pytest.approx(table["value_val/map/multi"].max())
    assert best.objective == "val/map/multi" and best.selection_split == "val"
    # Each trial's metrics.json holds val and (made-up, peaked elsewhere) test keys: the best trial is
    # the best on val, whatever test says.
    scores = {n: json.loads((tmp / "sweep" / str(n) / "metrics.json").read_text()) for n in table["number"]}
    assert best.best_trial == max(scores, key=lambda n: scores[n]["val/map/multi"])
    assert all(m["map/multi"] != pytest.approx(m["val/map/multi"]) for m in scores.values())


# ------------------------------------------------------------------ failures, pruning, Pareto
@pytest.mark.slow
def test_failed_trials_are_marked_and_the_sweep_goes_on(sweeps):
    _, storage, (res,) = sweeps["failing"]
    trials = load(storage, "failing").trials
    assert len(trials) == 6
    states = {t.params["ratio.mono"]: set() for t in trials}
    for t in trials:
        states[t.params["ratio.mono"]].add(t.state)
    assert states == {0.2: {TrialState.COMPLETE}, 0.9: {TrialState.FAIL}}
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert "status 2" in failed.user_attrs["error"]
    assert "negative share" in res.stderr


@pytest.mark.slow
def test_jobs_report_to_their_trial_and_get_pruned(sweeps):
    _, storage, _ = sweeps["pruned"]
    trials = load(storage, "ratio_optuna").trials
    assert len(trials) == 6 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:
        # Each job reported its own val curve (final value * step / 3 for its ratio) to its own trial.
        final = synthetic_metrics(Ratio.from_mapping({k: t.user_attrs[f"ratio.{k}"] for k in ("mono", "cross", "multi")}))["val/map/multi"]
        assert t.intermediate_values, t.number
        assert t.intermediate_values == pytest.approx({e: final * e / 3 for e in t.intermediate_values})
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2, 3] and t.value == pytest.approx(final)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.number >= 2 for t in pruned)  # not before n_startup_trials


@pytest.mark.slow
def test_pareto_study_writes_the_front(sweeps):
    tmp, storage, _ = sweeps["pareto"]
    study = load(storage, "ratio_optuna_pareto")
    assert len(study.trials) == 8 and study.metric_names == ["val/map/multi", "val/bias/rank_distance"]
    table = pd.read_csv(tmp / "sweep" / "optuna_trials.csv")
    front = pd.read_csv(tmp / "sweep" / "pareto_front.csv")
    assert set(front["number"]) == {t.number for t in study.best_trials}
    m, b = "values_val/map/multi", "values_val/bias/rank_distance"
    for _, row in table.iterrows():
        # A trial is on the front iff no trial has higher-or-equal mAP and lower-or-equal bias, one strictly.
        dominated = ((table[m] >= row[m]) & (table[b] <= row[b]) & ((table[m] > row[m]) | (table[b] < row[b]))).any()
        assert dominated == (row["number"] not in set(front["number"]))
    for t in study.trials:
        r = Ratio.from_mapping({k: t.user_attrs[f"ratio.{k}"] for k in ("mono", "cross", "multi")})
        expected = synthetic_metrics(r)
        assert t.values == pytest.approx([expected["val/map/multi"], expected["val/bias/rank_distance"]])
    assert json.loads((tmp / "sweep" / "0" / "metrics.json").read_text())["val/map/multi"] == pytest.approx(study.trials[0].values[0])
    assert not math.isnan(front[m].max())


# ------------------------------------------------------------- results without a job, workers
def test_a_launch_without_results_does_not_stop_the_sweep(tmp_path):
    """A SLURM job that ends without giving its result back (submitit raises for the whole array):
    each trial of that launch takes its objective from its run dir's metrics.json, or FAILs without
    one; the sweep goes on, and a run tries each missing trial once (here: 2 of 4 short)."""
    from hydra_plugins.batchmix_optuna_sweeper._impl import OptunaSweeperImpl

    sweep_dir = tmp_path / "sweep"

    class FirstJobWritesSecondDies:
        def launch(self, job_overrides, initial_job_idx):
            (sweep_dir / str(initial_job_idx)).mkdir(parents=True)
            (sweep_dir / str(initial_job_idx) / "metrics.json").write_text(json.dumps({"map/multi": 0.1 * initial_job_idx}))
            raise RuntimeError(f"job 42_{initial_job_idx + 1} has not produced any output (state: TIMEOUT)")

    storage = f"sqlite:///{tmp_path}/study.db"
    sweeper = OptunaSweeperImpl(sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0}, direction="maximize",
                                storage=storage, study_name="s", n_trials=4, n_jobs=2, max_failure_rate=1.0, pruner=None,
                                metric_names=None, params=OmegaConf.create({"ratio": "simplex(mono, cross, multi)"}))
    sweeper.config = OmegaConf.create({"objective": "map/multi", "hydra": {"job": {"name": "s"},
                                       "sweep": {"dir": str(sweep_dir), "subdir": "${hydra.job.num}"}}})
    sweeper.launcher = FirstJobWritesSecondDies()
    sweeper.sweep([])
    trials = load(storage, "s").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL] * 2
    assert [t.value for t in trials[::2]] == [0.0, pytest.approx(0.2)]
    assert trials[0].user_attrs["output_dir"] == str(sweep_dir / "0")
    assert "TIMEOUT" in trials[1].user_attrs["error"] and "TIMEOUT" in trials[3].user_attrs["error"]


@pytest.mark.slow
def test_a_trial_left_running_without_heartbeat_is_failed_and_run_again(tmp_path):
    """A study left by a sweeper that never beat (a batchmix before heartbeats, Ctrl-Z'd, another
    tool): its RUNNING trial is failed once older than the grace period and its point re-run."""
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="ratio_optuna", storage=storage, direction="maximize")
    orphan = study.ask({"ratio.u1": FloatDistribution(0.0, 1.0), "ratio.u2": FloatDistribution(0.0, 1.0)})
    res = dry_run(["hparams_search=ratio_optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2",
                   "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = load(storage, "ratio_optuna").trials
    assert trials[orphan.number].state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and len(trials) == 3
    (rerun,) = [t for t in complete if t.system_attrs.get("failed_trial") == orphan.number]
    assert rerun.params == trials[orphan.number].params
    assert f"trial {orphan.number} (" in res.stdout + res.stderr and "by a sweeper without heartbeat" in res.stdout + res.stderr


@pytest.mark.slow
def test_parallel_sweepers_share_the_target_and_keep_each_others_trials_alive(tmp_path):
    """Two sweepers on one SQLite study with n_trials=3: exactly 3 trials finish between them. Each
    job takes 6 s, longer than the 4 s grace period, so the sweeper that waits for the other's last
    trial would fail it as stale if the other's heartbeat did not keep it alive."""
    from concurrent.futures import ThreadPoolExecutor

    storage = f"sqlite:///{tmp_path}/study.db"
    common = ["hparams_search=ratio_optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=3", "+dry_run.seconds=6",
              "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4"]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda w: dry_run(common + [f"hydra.sweeper.sampler.seed={w}", f"hydra.sweep.dir={tmp_path}/worker{w}"],
                                               tmp_path), range(2)))
    for res in runs:
        assert res.returncode == 0, res.stderr[-3000:]
    logs = "".join(r.stdout + r.stderr for r in runs)
    trials = load(storage, "ratio_optuna").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for t in trials:  # only a trial asked in the same instant as the other sweeper's last one may be left out
        assert t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "surplus" in t.user_attrs and not t.params)
    assert {Path(t.user_attrs["output_dir"]).parent.name for t in complete} == {"worker0", "worker1"}
    assert "waiting for trial(s)" in logs and "left RUNNING" not in logs


BAD_STORAGES = {
    "unknown scheme": ("notadb://x", "does not know ('notadb')"),
    "server down": ("postgresql+psycopg://nobody:s3cret@127.0.0.1:1/db", "cannot connect"),
    "missing folder": ("sqlite:///{tmp}/no/such/dir/study.db", "cannot open the SQLite file"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_STORAGES)
def test_bad_storage_url_is_one_line_before_any_trial(case, tmp_path):
    import time

    url, why = BAD_STORAGES[case]
    url = url.format(tmp=tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "-m", "hparams_search=ratio_optuna", "model=tiny",
                          f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={tmp_path}/sweep"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and time.monotonic() - start < 30
    errors = [line for line in res.stderr.splitlines() if line.startswith("batchmix: error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr + res.stdout, res.stderr
    assert errors[0].startswith("batchmix: error: hydra.sweeper.storage=") and why in errors[0]
    assert "sqlite:///" in errors[0] or "writable" in errors[0]  # names the fix
    assert "s3cret" not in res.stderr + res.stdout
    assert not (tmp_path / "sweep" / "0").exists()  # no trial ran
