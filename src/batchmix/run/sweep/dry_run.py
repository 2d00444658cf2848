"""Try a sweep configuration in seconds: the real config tree, sweeper, storage and launcher,
with a synthetic objective in place of training.

    batchmix dry-run -m hparams_search=ratio_optuna hydra.sweeper.n_trials=50
    batchmix dry-run -m sweep=simplex_grid sweep.step=0.1

Each job validates its config exactly like `train.py`, writes `config.yaml` and a `metrics.json`
of made-up numbers (a smooth function of the ratio over every registered batch type, peaked at
mono/cross/multi = 0.2/0.5/0.3 and 0 for any other type, with a language bias that grows with the mono
share) as the val split's `val/...` keys, and the same function peaked elsewhere (`TEST_PEAK`) as the
test keys, so a sweep that chose on test would visibly choose another ratio; it returns `objective`
from them. With `pruning.enabled=true` inside an Optuna trial it reports a rising val curve every
`eval.val_every_n_steps` steps up to `trainer.max_steps` (default 3 points), so pruners can be tried too. `+dry_run.seconds=3` makes each job take that long (before it writes
`metrics.json`), to try heartbeats, parallel workers and killed sweeps. Used by the tests to check
sweeps, storages and parallel workers without a model; the numbers mean nothing about real training.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from batchmix.config.schema import pruning_of

from batchmix.mixing.batch_types import batch_type_names
from batchmix.config import CONF_DIR  # registers the resolvers the configs use
from batchmix.core.errors import exit_on_error
from batchmix.run.preflight import validate
from batchmix.mixing.ratio import Ratio
from batchmix.core.run_dir import RunDir
from batchmix.eval.objectives import select_objective
from batchmix.run.sweep.trial import current_trial, report

PEAK = {"mono": 0.2, "cross": 0.5, "multi": 0.3}  # a point of the simplex: other types peak at 0
TEST_PEAK = {"mono": 0.6, "cross": 0.2, "multi": 0.2}  # where the made-up test split peaks


def synthetic_metrics(ratio: Ratio) -> dict[str, float]:
    """Made-up but smooth metrics of a ratio (see the module docstring): `val/<key>` and test `<key>`."""
    shares = {name: ratio[name] for name in batch_type_names()}

    def split(peak: dict[str, float]) -> dict[str, float]:
        distance = sum((share - peak.get(name, 0.0)) ** 2 for name, share in shares.items())
        return {
            "map/multi": 0.5 - distance,
            "map/mono": 0.4 + 0.2 * shares["mono"],
            "map/cross": 0.3 + 0.2 * shares["cross"],
            "bias/rank_distance": 0.1 + 0.3 * shares["mono"] - 0.05 * shares["multi"],
        }

    return {**split(TEST_PEAK), **{f"val/{k}": v for k, v in split(PEAK).items()}}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | list[float]:
    with exit_on_error():
        ratio = validate(cfg).ratio
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        RunDir(run_dir).write_config(cfg)
        metrics = synthetic_metrics(ratio)
        every, pruning = cfg.eval.val_every_n_steps, pruning_of(cfg)
        trial = current_trial() if pruning.enabled else None
        if trial is not None and len(trial.study.directions) == 1:
            steps = int(cfg.trainer.max_steps) if int(cfg.trainer.max_steps) > 0 else 3 * every
            metric = pruning.metric or cfg.objective
            for step in range(every, steps + 1, every):
                report(trial, metrics[metric] * step / steps, step)
        time.sleep(float(cfg.dry_run.seconds) if "dry_run" in cfg else 0.0)
        RunDir(run_dir).write_metrics(metrics)
        return select_objective(cfg.objective, metrics)


if __name__ == "__main__":
    main()
