"""A killed Optuna study resumes to exactly `hydra.sweeper.n_trials` complete trials: real (tiny)
training per trial, the sweeper stopped by SIGTERM, then killed by SIGKILL, then rerun with the same
command. No trial is lost (the interrupted trials' parameters run again), none is duplicated, none
stays RUNNING."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A checkpoint after every step: the kill below waits for the first one, so it lands mid-training
# however fast the machine (12 steps plus the evaluation are still ahead of it).
TINY = ["model=tiny", "data.languages=[en,de]", "data.batch_size=8", "data.batches_per_epoch=12", "save_model=false",
        "eval.before=false", "logger=csv", "checkpoint.every_n_steps=1"]
N_TRIALS = 4


def start_sweep(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`train.py -m hparams_search=ratio_optuna` on a SQLite study in tmp_path; output in <name>.log."""
    args = [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=ratio_optuna", f"hydra.sweeper.n_trials={N_TRIALS}",
            *TINY, f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db", f"hydra.sweep.dir={tmp_path}/sweep",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path / f"{name}.log"
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT), log


def trials(tmp_path: Path) -> list:
    import optuna

    try:
        return optuna.load_study(study_name="ratio_optuna", storage=f"sqlite:///{tmp_path}/study.db").trials
    except KeyError:  # the sweeper has not created the study yet
        return []


def kill_while_training(proc: subprocess.Popen, tmp_path: Path, number: int, sig: signal.Signals) -> int:
    """Send `sig` once trial `number`'s job has trained a step (its first checkpoint); its exit status."""
    deadline = time.monotonic() + 120
    ckpt = tmp_path / "sweep" / str(number) / "checkpoints" / "last.ckpt"
    while not ckpt.exists():  # trial `number` has trained its first step
        assert proc.poll() is None, f"the sweep ended before trial {number} trained"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc.wait(timeout=60)


@pytest.mark.slow
def test_killed_study_resumes_to_exactly_n_trials(tmp_path, xquad_root):
    from optuna.trial import TrialState

    # 1. SIGTERM while trial 1 trains: the sweeper fails it at once and queues its parameters.
    proc, log = start_sweep(tmp_path, "sigterm")
    assert kill_while_training(proc, tmp_path, 1, signal.SIGTERM) == 128 + signal.SIGTERM
    out = log.read_text()
    assert "batchmix: sweep stopped by SIGTERM" in out and "Traceback" not in out, out[-3000:]
    by_number = {t.number: t for t in trials(tmp_path)}
    assert [by_number[n].state for n in sorted(by_number)] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert by_number[2].params == by_number[1].params and by_number[2].system_attrs["failed_trial"] == 1

    # 2. SIGKILL while trial 3 trains (trial 2, the queued point, ran first): nothing can clean up.
    proc, log = start_sweep(tmp_path, "sigkill")
    assert kill_while_training(proc, tmp_path, 3, signal.SIGKILL) == -signal.SIGKILL
    by_number = {t.number: t for t in trials(tmp_path)}
    assert by_number[2].state == TrialState.COMPLETE and by_number[3].state == TrialState.RUNNING

    # 3. The same command again: trial 3's heartbeat is gone, so it is failed and its point re-run.
    proc, log = start_sweep(tmp_path, "resume")
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    out = log.read_text()
    assert out.count("was left RUNNING by a sweeper that stopped") == 1 and "trial 3 (" in out
    final = trials(tmp_path)
    complete = [t for t in final if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert [t.number for t in final if t.state == TrialState.FAIL] == [1, 3]  # the two interrupted ones
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in final)  # none RUNNING or WAITING
    retries = {t.system_attrs["failed_trial"]: t for t in complete if "failed_trial" in t.system_attrs}
    assert sorted(retries) == [1, 3]
    for failed, retry in retries.items():
        assert retry.params == next(t for t in final if t.number == failed).params
    for t in complete:  # each complete trial is one trained run with its own metrics
        run = Path(t.user_attrs["output_dir"])
        assert run == tmp_path / "sweep" / str(t.number)
        assert t.value == pytest.approx(json.loads((run / "metrics.json").read_text())["val/map/multi"])
    assert len({t.user_attrs["output_dir"] for t in complete}) == N_TRIALS
