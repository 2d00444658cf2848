"""Simplex sweeps: the grid of `sweep=simplex_grid` through Hydra's own sweeper machinery, and the
uniform map from free coordinates that the Optuna sweeper samples the ratio with."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.run.sweep.simplex import GridStepError, point_from_unit, simplex_grid

REPO = Path(__file__).resolve().parents[1]


def _compose(overrides: list[str], hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra_cfg)


def _grid_jobs(step: float) -> list[list[str]]:
    """The per-job overrides Hydra's basic sweeper launches for `-m sweep=simplex_grid sweep.step=<step>`."""
    cfg = _compose(["sweep=simplex_grid", f"sweep.step={step}"], hydra_cfg=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    arguments = ["sweep=simplex_grid", f"sweep.step={step}"]
    overrides = OverridesParser.create().parse_overrides(params + arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, max_batch_size=None) for job in batch]


@pytest.mark.parametrize("step, n_points", [(0.25, 15), (0.5, 6), (1.0, 3), (0.1, 66)])
def test_grid_has_every_simplex_point_once(step, n_points):
    points = simplex_grid(step)
    assert len(points) == len(set(points)) == n_points
    n = round(1 / step)
    for p in points:
        assert math.isclose(sum(p), 1.0, abs_tol=1e-9) and min(p) >= 0
        assert all(abs(x * n - round(x * n)) < 1e-9 for x in p)  # on the grid


@pytest.mark.parametrize("step", [0.3, 0.0, -0.5, 1.5, "x", True])
def test_grid_step_must_divide_one(step):
    with pytest.raises(GridStepError, match="sweep.step"):
        simplex_grid(step)
    assert issubclass(GridStepError, BatchmixError)


@pytest.mark.slow
@pytest.mark.parametrize("step, n_points", [(0.25, 15), (0.5, 6)])
def test_simplex_grid_sweep_launches_exactly_the_grid(step, n_points):
    jobs = _grid_jobs(step)
    assert len(jobs) == n_points
    ratios = []
    for job in jobs:
        assert sum(o.startswith("sweep.point=") for o in job) == 1
        cfg = _compose(job)  # what the launcher composes for that job
        r = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
        assert list(cfg.sweep.point) == [r.mono, r.cross, r.multi]
        ratios.append((r.mono, r.cross, r.multi))
    assert sorted(ratios) == sorted(simplex_grid(step))
    assert len(set(ratios)) == n_points and all(math.isclose(sum(r), 1.0) for r in ratios)


def test_plain_ratio_sweeps_are_untouched():
    cfg = _compose(["ratio.mono=0.2"], hydra_cfg=True)
    assert "sweep" not in cfg and not cfg.hydra.sweeper.params
    assert OmegaConf.to_container(cfg.ratio, resolve=True) == {"mono": 0.2, "multi": 0.0, "cross": 0.8}


def test_triangle_map_matches_osada_formula():
    for u, v in [(0.0, 0.3), (1.0, 0.0), (1.0, 1.0), (0.25, 0.5), (0.64, 0.1)]:
        expected = (1 - math.sqrt(u), math.sqrt(u) * (1 - v), math.sqrt(u) * v)
        assert point_from_unit([u, v]) == pytest.approx(expected, abs=2e-6)


def test_unit_square_lands_on_the_simplex_uniformly():
    """Dirichlet(1,1,1): every share has mean 1/3 and P(share > t) = (1 - t)^2; a naive
    (u, (1-u) v) map would give P(mono > 0.5) = 0.5 instead of 0.25."""
    rng = np.random.default_rng(0)
    points = np.array([point_from_unit(uv) for uv in rng.random((20000, 2))])
    assert (points >= 0).all() and np.allclose(points.sum(axis=1), 1.0, atol=1e-12)
    assert np.allclose(points.mean(axis=0), 1 / 3, atol=0.01)
    for t in (0.25, 0.5, 0.75):
        assert np.allclose((points > t).mean(axis=0), (1 - t) ** 2, atol=0.015)


def test_four_way_simplex_is_uniform_too():
    rng = np.random.default_rng(1)
    points = np.array([point_from_unit(c) for c in rng.random((20000, 3))])
    assert np.allclose(points.sum(axis=1), 1.0) and (points >= 0).all()
    assert np.allclose(points.mean(axis=0), 0.25, atol=0.01)
    assert np.allclose((points > 0.5).mean(axis=0), 0.5**3, atol=0.01)  # Beta(1, 3) tail


def test_rounded_shares_always_validate():
    rng = np.random.default_rng(2)
    for uv in np.vstack([rng.random((2000, 2)), [[0, 0], [1, 1], [0, 1], [1, 0], [1e-13, 1 - 1e-13]]]):
        Ratio.from_mapping(dict(zip(("mono", "cross", "multi"), point_from_unit(uv))))


@pytest.mark.slow
def test_simplex_grid_multirun_trains_every_point(tmp_path, xquad_root):
    tiny = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=6",
            "save_model=false", "eval.before=false", "logger=csv"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(REPO / "train.py"), "-m", "sweep=simplex_grid", "sweep.step=0.5", *tiny,
                          f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(runs) == 6
    trained = set()
    for run in runs:
        cfg = OmegaConf.load(run / "config.yaml")
        r = Ratio.from_mapping(cfg.ratio)
        trained.add((r.mono, r.cross, r.multi))
        assert "map/multi" in json.loads((run / "metrics.json").read_text())
    assert trained == set(simplex_grid(0.5))
