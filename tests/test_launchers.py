"""Cluster and parallel launchers: `hydra/launcher=slurm_gpu|slurm_cpu` (submitit) and
`hydra/launcher=local_parallel` (joblib).

There is no SLURM here, so the SLURM configs are checked in three steps: they compose (the GPU
layout follows the trainer config), submitit turns them into the sbatch flags Lightning's DDP
expects, and a stand-in for sbatch / srun / sacct (`_write_fake_slurm`: runs each job of an
array on this machine, one process per task, with SLURM's environment variables) carries a real
Optuna sweep through submitit and back. The joblib launcher really runs here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from batchmix.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
OPTUNA_SWEEPER = "hydra_plugins.batchmix_optuna_sweeper.batchmix_optuna_sweeper.BatchmixOptunaSweeper"
TINY = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=6",
        "save_model=false", "logger=csv", "eval.before=false"]


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def launcher_params(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def class_path(obj: object) -> str:
    """Hydra's plugin scan imports hydra_plugins modules under its own module objects, so compare
    classes by dotted name rather than identity."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def offline_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", **extra}
    env.pop("OMP_NUM_THREADS", None)  # let the launcher decide, as on a fresh shell
    return env


# --- SLURM: composition --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trainer, gpus_per_node, nodes",
    [
        (["trainer=gpu"], 1, 1),
        (["trainer=ddp", "trainer.devices=4"], 4, 1),
        (["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"], 8, 2),
    ],
)
def test_slurm_gpu_reserves_one_task_per_trainer_device(trainer, gpus_per_node, nodes):
    """Lightning under SLURM checks --ntasks-per-node == devices and --nodes == num_nodes, so the
    launcher takes both from the trainer config instead of repeating them."""
    cfg = compose_with_hydra(["hydra/launcher=slurm_gpu", *trainer])
    params = launcher_params(cfg)
    assert params["_target_"] == SLURM_LAUNCHER
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (gpus_per_node, gpus_per_node, nodes)
    assert cfg.trainer.devices == gpus_per_node and cfg.trainer.accelerator == "gpu"
    assert OmegaConf.select(cfg, "trainer.num_nodes", default=1) == nodes
    assert params["partition"] is None and params["timeout_min"] > 0 and params["cpus_per_task"] >= 1
    assert class_path(instantiate(cfg.hydra.launcher)) == SLURM_LAUNCHER


def test_slurm_gpu_keys_can_be_overridden():
    cfg = compose_with_hydra(["hydra/launcher=slurm_gpu", "trainer=gpu", "hydra.launcher.partition=a100",
                              "hydra.launcher.timeout_min=30", "hydra.launcher.array_parallelism=4"])
    params = launcher_params(cfg)
    assert (params["partition"], params["timeout_min"], params["array_parallelism"]) == ("a100", 30, 4)


def test_slurm_cpu_asks_for_no_gpu():
    params = launcher_params(compose_with_hydra(["hydra/launcher=slurm_cpu"]))
    assert params["_target_"] == SLURM_LAUNCHER
    assert params["gpus_per_node"] is None and params["tasks_per_node"] == 1 and params["nodes"] == 1


def test_optuna_study_on_postgres_with_trials_on_slurm():
    """The 64-GPU recipe of the README: 16 trials at a time, 4 GPUs each, one shared study."""
    url = "postgresql+psycopg://batchmix@db.example.org:5432/studies"
    cfg = compose_with_hydra(["hparams_search=ratio_optuna", "hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4",
                              f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=ratio64",
                              "hydra.sweeper.n_jobs=16", "hydra.sweeper.n_trials=64"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == OPTUNA_SWEEPER
    assert (sweeper.storage, sweeper.study_name, sweeper.n_jobs, sweeper.n_trials) == (url, "ratio64", 16, 64)
    params = launcher_params(cfg)
    assert params["_target_"] == SLURM_LAUNCHER
    assert params["gpus_per_node"] * params["nodes"] * min(sweeper.n_jobs, params["array_parallelism"]) == 64
    assert cfg.trainer.strategy == "ddp"


# --- SLURM: what submitit sends to sbatch --------------------------------------------------------


def test_slurm_gpu_batch_script_has_the_layout_lightning_checks(tmp_path, monkeypatch):
    """Everything up to `sbatch`: the launcher built from our config makes one job array of two
    trials, each 2 nodes x 4 GPUs with one task per GPU."""
    import submitit.slurm.slurm as submitit_slurm

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    class Submitted(Exception):
        pass

    scripts: list[str] = []

    def capture(executor, command):
        scripts.append(executor._make_submission_file_text(command, "uid"))
        raise Submitted

    monkeypatch.setattr(submitit_slurm.SlurmExecutor, "_submit_command", capture)
    cfg = compose_with_hydra(["hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                              "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}/sweep"])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(Submitted):
        launcher.launch([["ratio.mono=0.0"], ["ratio.mono=1.0"]], initial_job_idx=0)
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", scripts[0], flags=re.M))
    assert flags["array"] == "0-1%2"  # one array element per trial
    assert (flags["nodes"], flags["ntasks-per-node"], flags["gpus-per-node"]) == ("2", "4", "4")
    assert (flags["partition"], flags["time"], flags["job-name"]) == ("gpu", "240", "train")
    assert flags["cpus-per-task"] == "8" and flags["mem-per-gpu"] == "32G"
    assert "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in scripts[0]
    assert re.search(r"^srun .* -m submitit\.core\._submit ", scripts[0], flags=re.M)
    assert len(list((tmp_path / "sweep" / ".submitit").rglob("*.pkl"))) == 2  # the pickled trials


# --- SLURM stand-in: the whole round trip --------------------------------------------------------

_FAKE_SBATCH = '''
"""sbatch stand-in: record the script, run each array element in the background, print the id."""
import os, re, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_STATE"])
script = Path(sys.argv[-1]).read_text()
flags = dict(re.findall(r"^#SBATCH --([\\w-]+)=(\\S+)$", script, flags=re.M))
counter = state / "next_job_id"
job_id = int(counter.read_text()) if counter.exists() else 4200
counter.write_text(str(job_id + 1))
(state / f"sbatch_{job_id}.sh").write_text(script)
per_node, nodes = int(flags.get("ntasks-per-node", 1)), int(flags.get("nodes", 1))
array = re.match(r"0-(\\d+)", flags.get("array", ""))
for element in range(int(array.group(1)) + 1) if array else [None]:
    env = {**os.environ, "SLURM_JOB_NAME": flags.get("job-name", "sbatch"), "SLURM_NNODES": str(nodes),
           "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_NTASKS_PER_NODE": str(per_node),
           "SLURM_NTASKS": str(per_node * nodes), "SLURM_CPUS_PER_TASK": flags.get("cpus-per-task", "1")}
    name = str(job_id)
    if element is None:
        env["SLURM_JOB_ID"] = name
    else:
        name = f"{job_id}_{element}"
        env.update(SLURM_JOB_ID=str(job_id * 100 + element), SLURM_ARRAY_JOB_ID=str(job_id),
                   SLURM_ARRAY_TASK_ID=str(element))
    rc = state / f"{name}.rc"
    subprocess.Popen(["bash", "-c", f'bash "$0"; echo $? > "{rc}"', sys.argv[-1]], env=env, start_new_session=True,
                     stdout=open(state / f"{name}.log", "w"), stderr=subprocess.STDOUT)
print(f"Submitted batch job {job_id}")
'''

_FAKE_SRUN = '''
"""srun stand-in: one process per task (SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID set), all on
this machine. It first waits for submitit's pickle, which submitit moves into place only after
sbatch has returned."""
import os, subprocess, sys, time
from pathlib import Path

args, out, err = sys.argv[1:], "%j_%t.out", "%j_%t.err"
while args and args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        value = args.pop(0)
        out, err = (value, err) if flag == "--output" else (out, value)
env = os.environ
array_job, element = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
job = f"{array_job}_{element}" if array_job else env["SLURM_JOB_ID"]
folder = Path(args[-1].replace("%j", job))
deadline = time.time() + 120
while not (folder / f"{job}_submitted.pkl").exists() and time.time() < deadline:
    time.sleep(0.1)

def path(pattern, rank):
    return (pattern.replace("%A", str(array_job)).replace("%a", str(element)).replace("%j", job)
            .replace("%t", str(rank)))

per_node, n = int(env.get("SLURM_NTASKS_PER_NODE", 1)), int(env.get("SLURM_NTASKS", 1))
procs = []
for rank in range(n):
    Path(path(out, rank)).parent.mkdir(parents=True, exist_ok=True)
    task_env = {**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per_node),
                "SLURM_NODEID": str(rank // per_node)}
    procs.append(subprocess.Popen(args, env=task_env, stdout=open(path(out, rank), "a"), stderr=open(path(err, rank), "a")))
sys.exit(max(p.wait() for p in procs))
'''

_FAKE_SACCT = '''
"""sacct stand-in: COMPLETED / FAILED from the exit codes the sbatch stand-in records, else RUNNING."""
import os, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_STATE"])
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for log in sorted(state.glob("*.log")):
    name = log.stem
    if name.split("_")[0] in ids:
        rc = state / f"{name}.rc"
        status = "RUNNING" if not rc.exists() else ("COMPLETED" if rc.read_text().strip() == "0" else "FAILED")
        print(f"{name}|{status}|localhost")
'''


def _write_fake_slurm(tmp_path: Path) -> dict[str, str]:
    """sbatch / srun / sacct stand-ins in <tmp>/bin; returns the environment that puts them first."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm_state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("sbatch", _FAKE_SBATCH), ("srun", _FAKE_SRUN), ("sacct", _FAKE_SACCT)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{textwrap.dedent(body)}")
        (bin_dir / name).chmod(0o755)
    return offline_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_STATE=str(state))


@pytest.mark.slow
def test_optuna_trials_go_through_submitit_and_come_back(tmp_path):
    """The batchmix Optuna sweeper hands each batch of n_jobs trials to the configured launcher:
    with hydra/launcher=slurm_cpu, 4 trials in batches of 2 become 2 job arrays of 2, and every
    trial is told the value its SLURM job returned (training-free dry run as task)."""
    import optuna

    from batchmix.mixing.ratio import Ratio
    from batchmix.run.sweep.dry_run import synthetic_metrics

    env = _write_fake_slurm(tmp_path)
    sweep = tmp_path / "sweep"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    res = subprocess.run(
        [sys.executable, "-m", "batchmix.run.sweep.dry_run", "-m", "hparams_search=ratio_optuna", "hydra/launcher=slurm_cpu",
         f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
         "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    scripts = sorted((tmp_path / "slurm_state").glob("sbatch_*.sh"))
    assert len(scripts) == 2
    for script in scripts:
        assert "#SBATCH --array=0-1%2" in script.read_text() and "--gpus-per-node" not in script.read_text()
    trials = optuna.load_study(study_name="ratio_optuna", storage=storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        run = Path(t.user_attrs["output_dir"])
        assert run.parent == sweep and run.name == str(t.number)
        ratio = Ratio.from_mapping(OmegaConf.load(run / "config.yaml").ratio)
        assert t.value == pytest.approx(synthetic_metrics(ratio)["val/map/multi"])
    # each trial ran as SLURM job <array>_<element>, and submitit kept its logs there
    job_dirs = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert job_dirs == ["4200_0", "4200_1", "4201_0", "4201_1"]


@pytest.mark.slow
def test_ddp_trial_as_slurm_tasks(tmp_path, xquad_root):
    """hydra/launcher=slurm_gpu + trainer=ddp with 2 devices (on CPU, gloo): each trial's SLURM
    job runs 2 tasks, and Lightning takes them as the 2 DDP ranks from SLURM's environment."""
    env = _write_fake_slurm(tmp_path)
    sweep = tmp_path / "sweep"
    res = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", "trainer.precision=32-true", "hydra.launcher.cpus_per_task=1", "ratio.mono=0.0,1.0", *TINY,
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (script,) = (tmp_path / "slurm_state").glob("sbatch_*.sh")
    assert "#SBATCH --ntasks-per-node=2" in script.read_text() and "#SBATCH --array=0-1%2" in script.read_text()
    for element, mono in ((0, 0.0), (1, 1.0)):
        # Lightning's lines go through Hydra's job logging (batchmix.core.console), to the task's stdout log
        logs = ["".join((sweep / ".submitit" / f"4200_{element}" / f"4200_{element}_{rank}_log.{kind}").read_text()
                        for kind in ("out", "err")) for rank in (0, 1)]
        for rank, log in enumerate(logs):
            assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log  # one DDP rank per SLURM task
        run = sweep / str(element)
        assert OmegaConf.load(run / "config.yaml").ratio.mono == mono
        assert 0.0 <= json.loads((run / "metrics.json").read_text())["map/multi"] <= 1.0


# --- joblib: local parallel points ---------------------------------------------------------------


def test_local_parallel_composes():
    params = launcher_params(compose_with_hydra(["hydra/launcher=local_parallel"]))
    assert params["_target_"] == JOBLIB_LAUNCHER and params["n_jobs"] == 2
    cfg = compose_with_hydra(["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=4"])
    assert launcher_params(cfg)["n_jobs"] == 4
    assert class_path(instantiate(cfg.hydra.launcher)) == JOBLIB_LAUNCHER


_THREADS_APP = '''
import json, os
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig

import batchmix.run  # noqa: F401  the schemas and resolvers conf/ composes with

@hydra.main(version_base="1.3", config_path={conf!r}, config_name="train")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "threads.json").write_text(json.dumps({{"pid": os.getpid(), "torch": torch.get_num_threads()}}))
    return 0.0

main()
'''


@pytest.mark.slow
def test_local_parallel_workers_split_the_cores(tmp_path):
    """Each joblib worker runs torch with cores // n_jobs threads (loky sets OMP_NUM_THREADS), so
    parallel points do not oversubscribe the CPU."""
    from joblib import cpu_count

    app = tmp_path / "threads_app.py"
    app.write_text(_THREADS_APP.format(conf=str(CONF_DIR)))
    res = subprocess.run(
        [sys.executable, str(app), "-m", "hydra/launcher=local_parallel", "seed=0,1", "~hydra.callbacks.report",
         f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [json.loads((tmp_path / "sweep" / str(i) / "threads.json").read_text()) for i in (0, 1)]
    assert runs[0]["pid"] != runs[1]["pid"] != os.getpid()
    assert [r["torch"] for r in runs] == [max(cpu_count() // 2, 1)] * 2


def _log_span(log: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", log.read_text(), flags=re.M)
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return first, last


@pytest.mark.slow
def test_joblib_parallel_sweep_through_the_cli(tmp_path, xquad_root):
    """`python train.py -m hydra/launcher=local_parallel ratio.mono=0.0,1.0`: two trainings at once,
    one run dir each, and the sweep report at the end."""
    sweep = tmp_path / "sweep"
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=local_parallel", "ratio.mono=0.0,1.0", *TINY,
         f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600,
    )
    wall = time.perf_counter() - start
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in res.stdout + res.stderr
    ratios = {}
    for run in (sweep / "0", sweep / "1"):
        ratio = OmegaConf.load(run / "config.yaml").ratio
        ratios[run.name] = (ratio.mono, ratio.cross)
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 <= metrics["map/multi"] <= 1.0
    assert ratios == {"0": (0.0, 1.0), "1": (1.0, 0.0)}
    # the two trainings overlapped in time: they ran side by side, not one after the other
    (start0, end0), (start1, end1) = _log_span(sweep / "0" / "train.log"), _log_span(sweep / "1" / "train.log")
    assert max(start0, start1) < min(end0, end1)
    assert (sweep / "report" / "report.html").exists()
    print(f"joblib 2-point sweep: {wall:.1f} s wall")
