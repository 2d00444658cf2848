"""Structured config of the sweeper and the sampler / pruner presets, registered with Hydra.

`hydra/sweeper: batchmix_optuna` selects it; `hydra/sweeper/sampler: tpe|random|nsgaii|gp|qmc` and
`hydra/sweeper/pruner: median|hyperband|nop` pick presets. A preset is only `_target_` and `seed`
so any keyword of the Optuna class can be added (`+hydra.sweeper.sampler.multivariate=true`)
without this file tracking Optuna's signatures.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is in
# sys.modules, and dataclasses with string annotations look their module up there.
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class BatchmixOptunaSweeperConf:
    _target_: str = "hydra_plugins.batchmix_optuna_sweeper.batchmix_optuna_sweeper.BatchmixOptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    # The sweeper instantiates sampler and pruner itself (a continued study reseeds the sampler).
    _recursive_: bool = False

    # An Optuna sampler: {_target_: optuna.samplers.TPESampler, seed: 0, ...}. A rerun that continues
    # a study of n trials seeds it with seed + n, so it draws new points, still reproducibly.
    sampler: Any = MISSING
    # "maximize" / "minimize", or a list of them for a multi-objective study (in the order of the
    # values the task returns).
    direction: Any = "minimize"
    # Any SQLAlchemy URL (sqlite:///study.db, postgresql+psycopg://user@host/db); null: the SQLite
    # file <sweep dir>/optuna.db. Always a database, so jobs can report intermediate values.
    storage: Optional[str] = None
    # A rerun with the same storage and name resumes the study. null: the Hydra job name.
    study_name: Optional[str] = None
    # The study's target number of finished (COMPLETE or PRUNED) trials, as Optuna's MaxTrialsCallback:
    # a run adds only the missing ones, so a killed sweep rerun with the same command ends with exactly
    # n_trials; a finished study runs nothing (raise n_trials to extend it). Parallel sweepers on one
    # study share it. Each run tries a missing trial once; failed ones are retried by the next rerun.
    n_trials: int = 20
    # Trials asked at once and handed to the launcher as one batch (parallel with a parallel launcher).
    n_jobs: int = 1
    # Stop the run once more than this fraction of its finished trials failed (1.0: never stop;
    # failed trials are marked FAIL and the sweep goes on).
    max_failure_rate: float = 1.0
    # An Optuna pruner (preset group hydra/sweeper/pruner, default median), used by jobs that report
    # intermediate values (pruning.enabled=true: the val curve); null: Optuna's default (MedianPruner).
    pruner: Any = MISSING
    # Seconds between heartbeats of the trials this sweeper runs. A RUNNING trial without a heartbeat
    # for grace_period seconds (null: 2 x heartbeat_interval) belongs to a sweeper that died: the next
    # sweeper on the study marks it FAIL and runs its parameters again.
    heartbeat_interval: int = 10
    grace_period: Optional[int] = 60
    # Names of the objectives, shown in the study and the CSVs (e.g. ${objective}); optional.
    metric_names: Any = None
    # Search space in Hydra's override grammar: interval(a, b), tag(log, interval(a, b)),
    # choice(a, b, ...), range(start, stop, step), a plain value (fixed), and
    # simplex(a, b, c): a point of the simplex over those sub-keys, sampled uniformly.
    params: Optional[Dict[str, str]] = None


def _preset(target: str) -> Dict[str, Any]:
    return {"_target_": target, "seed": None}


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="batchmix_optuna", node=BatchmixOptunaSweeperConf, provider="batchmix")
for _name, _target in {
    "tpe": "optuna.samplers.TPESampler",
    "random": "optuna.samplers.RandomSampler",
    "nsgaii": "optuna.samplers.NSGAIISampler",
    "gp": "optuna.samplers.GPSampler",
    "qmc": "optuna.samplers.QMCSampler",
}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_preset(_target), provider="batchmix")
_STORE.store(group="hydra/sweeper/pruner", name="median", node={"_target_": "optuna.pruners.MedianPruner"}, provider="batchmix")
_STORE.store(group="hydra/sweeper/pruner", name="hyperband", node={"_target_": "optuna.pruners.HyperbandPruner"}, provider="batchmix")
_STORE.store(group="hydra/sweeper/pruner", name="nop", node={"_target_": "optuna.pruners.NopPruner"}, provider="batchmix")
