"""A synthetic sweep on disk (the files `batchmix.run.train.train` writes per Hydra job), for the report and
notebook tests: no training needed. Curves and metrics are plausible functions of the ratio so the
plots have something to show; the tests below check the fake itself looks like a real run dir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from batchmix.mixing.ratio import Ratio

LANGS = ("de", "en", "es")


def simplex_grid(step: float = 0.25) -> list[tuple[float, float, float]]:
    n = round(1 / step)
    return [(round(i * step, 6), round((n - i - j) * step, 6), round(j * step, 6)) for i in range(n + 1) for j in range(n + 1 - i)]


def fake_metrics(mono: float, cross: float, multi: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(1000 + seed + int(100 * mono) + int(10 * multi))
    base = {
        "mono": 0.55 + 0.15 * mono + 0.05 * multi,
        "cross": 0.30 + 0.25 * cross + 0.15 * multi,
        "multi": 0.25 + 0.10 * cross + 0.25 * multi - 0.05 * mono,
    }
    out: dict[str, float] = {}
    for setting, value in base.items():
        out[f"map/{setting}"] = float(np.clip(value + rng.normal(0, 0.01), 0, 1))
        out[f"mrr/{setting}"] = float(np.clip(value + 0.05 + rng.normal(0, 0.01), 0, 1))
        out[f"recall@10/{setting}"] = float(np.clip(value + 0.2 + rng.normal(0, 0.01), 0, 1))
    for x in LANGS:
        out[f"map/mono/{x}"] = float(np.clip(out["map/mono"] + rng.normal(0, 0.03), 0, 1))
        for y in LANGS:
            if x != y:
                out[f"map/cross/{x}-{y}"] = float(np.clip(out["map/cross"] + rng.normal(0, 0.03), 0, 1))
    out["bias/rank_distance"] = float(max(0.0, 0.05 + 0.4 * mono - 0.1 * multi + rng.normal(0, 0.01)))
    out["bias/own_lang_first"] = float(np.clip(0.4 + 0.5 * mono - 0.2 * multi + rng.normal(0, 0.02), 0, 1))
    return out


def fake_history(mono: float, cross: float, multi: float, seed: int, steps: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed * 7919 + int(1000 * mono) + int(37 * multi))
    ratio = Ratio(mono, cross, multi)
    counts = ratio.counts(steps)
    order = np.array([t for t, c in counts.items() for _ in range(c)])
    rng.shuffle(order)
    seen = {t: 0 for t in counts}
    tau = {"mono": 15.0, "cross": 30.0, "multi": 45.0}
    floor = {"mono": 0.6, "cross": 0.9, "multi": 1.4}
    rows = []
    for step, btype in enumerate(order):
        # a type's loss falls with the number of its own batches seen, and a little with all others
        progress = seen[btype] + 0.3 * (step - seen[btype])
        seen[btype] += 1
        loss = floor[btype] + 2.0 * np.exp(-progress / tau[btype]) + rng.normal(0, 0.05)
        mse = 0.05 + 0.5 * np.exp(-progress / (1.5 * tau[btype])) + rng.normal(0, 0.01)
        rows.append({"step": step, "epoch": step // 100, "batch_type": btype, "loss": loss, "mse": max(mse, 0.0),
                     "lr": 3e-5 * (1 - step / steps), "temperature": 0.05})
    return pd.DataFrame(rows)


def fake_val_history(mono: float, cross: float, multi: float, seed: int, steps: int, every: int) -> pd.DataFrame:
    """One row per validation (steps 0, every, 2 every, ..., steps), as training writes val_history.csv:
    each val metric rises from the untrained model's value towards one that depends on the ratio."""
    rng = np.random.default_rng(seed * 31 + int(1000 * mono) + int(53 * multi))
    at = sorted({*range(0, steps, every), steps})
    end = fake_metrics(mono, cross, multi, seed + 100)
    tau = steps / (3 + 4 * multi)  # more multi batches: the multilingual pool is learnt sooner
    rows = []
    for step in at:
        rise = 1 - np.exp(-step / tau)
        row = {"step": step, "seconds": round(2.0 + rng.uniform(0, 0.5), 3), "n_queries": 120, "n_candidates": 600}
        for key in ("map/multi", "map/mono", "map/cross", "recall@10/multi", "mrr/multi"):
            row[f"val/{key}"] = float(0.1 + (end[key] - 0.1) * rise + rng.normal(0, 0.005))
        row["val/bias/rank_distance"] = float(0.6 - (0.6 - end["bias/rank_distance"]) * rise)
        rows.append(row)
    return pd.DataFrame(rows)


def make_fake_sweep(root: Path, ratios=None, seeds=(0, 1), steps: int = 200, incomplete: int = 0,
                    val_every: int | None = 10) -> Path:
    """Write `<root>/<job num>/{config.yaml, metrics.json, history.csv, val_history.csv, .hydra/config.yaml}`;
    the last `incomplete` jobs get no metrics.json (a run that died after training). `val_every=None`:
    runs as made before validation was logged (no val_history.csv, objective on the test split)."""
    ratios = ratios if ratios is not None else simplex_grid(0.25)
    jobs = [(r, s) for r in ratios for s in seeds]
    for num, ((mono, cross, multi), seed) in enumerate(jobs):
        run = root / str(num)
        (run / ".hydra").mkdir(parents=True, exist_ok=True)
        cfg = {"model": {"name_or_path": "embedded:xlmr-tokenizer"}, "data": {"languages": list(LANGS), "batch_size": 8},
               "loss": {"_target_": "batchmix.losses.InfoNCELoss", "temperature": 0.05}, "ratio": {"mono": mono, "multi": multi, "cross": cross},
               "seed": seed, "objective": "val/map/multi" if val_every else "map/multi", "optim": {"lr": 3e-5}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
        fake_history(mono, cross, multi, seed, steps).to_csv(run / "history.csv", index=False)
        if val_every:
            fake_val_history(mono, cross, multi, seed, steps, val_every).to_csv(run / "val_history.csv", index=False)
        if num < len(jobs) - incomplete:
            (run / "metrics.json").write_text(json.dumps(fake_metrics(mono, cross, multi, seed)))
    return root


def test_fake_sweep_is_shaped_like_real_runs(tmp_path):
    make_fake_sweep(tmp_path, ratios=[(0.5, 0.5, 0.0), (0.0, 0.0, 1.0)], seeds=(0,), steps=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1"]
    hist = pd.read_csv(tmp_path / "0" / "history.csv")
    assert list(hist.columns) == ["step", "epoch", "batch_type", "loss", "mse", "lr", "temperature"]
    assert hist["batch_type"].value_counts().to_dict() == {"mono": 25, "cross": 25}
    assert set(pd.read_csv(tmp_path / "1" / "history.csv")["batch_type"]) == {"multi"}
    val = pd.read_csv(tmp_path / "0" / "val_history.csv")
    assert val["step"].tolist() == [0, 10, 20, 30, 40, 50] and val["step"].is_unique
    assert {"seconds", "n_queries", "n_candidates", "val/map/multi", "val/map/mono", "val/map/cross",
            "val/recall@10/multi", "val/bias/rank_distance"} <= set(val.columns)
    assert len(simplex_grid(0.25)) == 15 and all(abs(sum(r) - 1) < 1e-9 for r in simplex_grid(0.25))
