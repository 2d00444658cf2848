"""A fourth batch type is one registry entry: this file registers `pivot` (the query in any language of
its id, the positive always in English) and, without touching any batchmix source file, samples it
through the real sampler at a ratio over four types, trains with it through the real recipe (its loss
and MSE logged, its history rows and convergence figures written), and builds a report from a sweep
that includes it. The type is unregistered afterwards, so other tests see the built-in three."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.mixing.batch_types import BatchType, DrawContext, batch_type_names, registered
from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.mixing.sampler import HybridBatchSampler

PIVOT = "en"


def draw_pivot(ctx: DrawContext) -> list[tuple[int, str, str]]:
    """Ids that have the pivot language; query in any of the id's languages, positive in the pivot."""
    langs = ctx.group_langs
    return [(i, langs[i][ctx.rng.integers(len(langs[i]))], PIVOT) for i in ctx.take(lambda i: PIVOT in langs[i])]


def check_pivot(ctx: DrawContext, share: float) -> None:
    have = len(ctx.ids_with_lang.get(PIVOT, []))
    if have < ctx.batch_size:
        raise BatchmixError(f"ratio pivot={share:g} is impossible: {have} ids have {PIVOT}, a batch needs {ctx.batch_size}")


@pytest.fixture(autouse=True)
def pivot():
    with registered(BatchType("pivot", draw_pivot, "pivot-language", "#9467bd", check_pivot, "purple")) as batch_type:
        yield batch_type
    assert batch_type_names() == ("mono", "cross", "multi")


def _groups(n: int = 120, seed: int = 0) -> list[tuple[str, ...]]:
    """Ids in 1-4 of ar/de/en/es; about a third lack English, so the pivot's eligibility matters."""
    rng = np.random.default_rng(seed)
    langs = ["ar", "de", "en", "es"]
    return [tuple(rng.choice(langs, size=rng.integers(1, 5), replace=False)) for _ in range(n)]


# ------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("shares, n_batches, expected", [
    # quotas 0.7 / 1.4 / 2.1 / 2.8 -> floors 0 / 1 / 2 / 2, the 2 left over go to the largest remainders (pivot .8, mono .7)
    ({"mono": 0.1, "cross": 0.2, "multi": 0.3, "pivot": 0.4}, 7, {"mono": 1, "cross": 1, "multi": 2, "pivot": 3}),
    # quotas 2.5 each -> 2 each, the 2 left over go to the tied remainders in registry order
    ({"mono": 0.25, "cross": 0.25, "multi": 0.25, "pivot": 0.25}, 10, {"mono": 3, "cross": 3, "multi": 2, "pivot": 2}),
    ({"pivot": 1.0}, 5, {"mono": 0, "cross": 0, "multi": 0, "pivot": 5}),
])
def test_sampler_mixes_the_fourth_type_at_its_ratio(shares, n_batches, expected):
    groups = _groups()
    ratio = Ratio.from_mapping(shares)
    assert ratio.as_dict() == {"mono": 0.0, "cross": 0.0, "multi": 0.0, "pivot": 0.0} | shares
    sampler = HybridBatchSampler(groups, 8, ratio, batches_per_epoch=n_batches, mono_mode="pair", seed=4)
    for epoch in range(3):
        plan = sampler.plan_epoch(epoch)
        assert dict(Counter(batch[0].batch_type for batch in plan)) == {k: v for k, v in expected.items() if v}
        for batch in plan:
            assert len({ref.batch_type for ref in batch}) == 1 and len(batch) == 8
            assert len({ref.group for ref in batch}) == 8  # no id twice in a batch
            for ref in batch:
                assert ref.query_lang in groups[ref.group] and ref.positive_lang in groups[ref.group]
                if ref.batch_type == "pivot":
                    assert ref.positive_lang == PIVOT
    pivot_queries = {ref.query_lang for batch in sampler.plan_epoch(0) for ref in batch if ref.batch_type == "pivot"}
    assert len(pivot_queries) > 1 or expected["pivot"] == 0  # queries in several languages, not only the pivot


def test_pivot_feasibility_is_checked_before_training():
    no_english = [("de", "es")] * 40 + [("en", "de")] * 3
    with pytest.raises(BatchmixError, match="ratio pivot=0.5 is impossible: 3 ids have en"):
        HybridBatchSampler(no_english, 8, Ratio(mono=0.5, pivot=0.5), mono_mode="pair")
    HybridBatchSampler(no_english, 8, Ratio(mono=1.0), mono_mode="pair")  # a zero share is not checked


def test_config_complement_counts_the_fourth_share():
    from batchmix.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["+ratio.pivot=0.4", "ratio.mono=0.1", "ratio.multi=0.3"])
    ratio = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
    assert ratio.as_dict() == pytest.approx({"mono": 0.1, "cross": 0.2, "multi": 0.3, "pivot": 0.4})
    with pytest.raises(BatchmixError, match=r"cross is 1 - mono - multi - pivot unless set"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            bad = compose("train", overrides=["+ratio.pivot=0.8", "ratio.mono=0.3"])
        Ratio.from_mapping(OmegaConf.to_container(bad.ratio, resolve=True))


# -------------------------------------------------------------------------------------- logging
@pytest.mark.slow
def test_training_logs_the_fourth_type(tmp_path, xquad_root):
    from batchmix.config import CONF_DIR
    from batchmix.run.train import train

    overrides = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=8",
                 "save_model=false", "logger=csv", "eval.before=false", "seed=5",
                 "ratio.mono=0.25", "ratio.multi=0.25", "+ratio.pivot=0.25"]  # cross: the complement, 0.25
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    train(cfg, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert Counter(hist["batch_type"]) == {"mono": 2, "cross": 2, "multi": 2, "pivot": 2}  # 8 batches x 0.25
    assert hist.loc[hist["batch_type"] == "pivot", ["loss", "mse"]].notna().all().all()
    lightning = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert {"train/pivot/loss", "train/pivot/mse"} <= set(lightning.columns)
    # Lightning's csv logs every few steps and repeats a key's last value: the pivot values are the pivot losses
    logged = lightning["train/pivot/loss"].dropna().round(4)
    assert len(logged) and set(logged) == set(hist.loc[hist["batch_type"] == "pivot", "loss"].round(4))
    convergence = json.loads((tmp_path / "convergence.json").read_text())
    for curve in ("loss", "mse"):
        assert convergence[f"conv/pivot/{curve}/final"] is not None and convergence[f"conv/pivot/{curve}/auc"] is not None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train/pivot/steps"] == 2
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["ratio"]["pivot"] == 0.25


# --------------------------------------------------------------------------------------- report
RATIOS = [  # mono, cross, multi, pivot: five points spread over the 4-type simplex
    (1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), (0.25, 0.25, 0.25, 0.25), (0.5, 0.0, 0.0, 0.5)]


def _fake_run(run, shares: dict[str, float], seed: int, steps: int = 40) -> None:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"ratio": shares, "seed": seed, "model": {"name_or_path": "tiny"}}))
    counts = Ratio.from_mapping(shares).counts(steps)
    types = [t for t, c in counts.items() for _ in range(c)]
    rows = [{"step": s, "epoch": 0, "batch_type": t, "loss": 2.0 * np.exp(-s / 15) + 0.5, "mse": 0.3 * np.exp(-s / 20) + 0.05}
            for s, t in enumerate(types)]
    pd.DataFrame(rows).to_csv(run / "history.csv", index=False)
    metrics = {"map/mono": 0.5 + 0.1 * shares["mono"], "map/cross": 0.4 + 0.1 * shares["cross"],
               "map/multi": 0.3 + 0.2 * shares["pivot"] + 0.01 * seed, "bias/rank_distance": 0.2 - 0.1 * shares["pivot"]}
    (run / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.slow
def test_report_of_a_sweep_with_the_fourth_type(tmp_path):
    from batchmix.report import plots
    from batchmix.report.aggregate import load_histories
    from batchmix.report.sweep_report import build_report

    sweep = tmp_path / "sweep"
    for num, shares in enumerate(RATIOS):
        for seed in (0, 1):
            _fake_run(sweep / f"{num}_{seed}", dict(zip(("mono", "cross", "multi", "pivot"), shares)), seed)
    page = build_report(sweep).read_text()
    out = sweep / "report"
    assert (out / "final_vs_ratio.png").is_file()  # the per-ratio chart works for any number of types
    assert not (out / "ternary.png").exists()  # a triangle needs exactly three types
    assert "no triangle map" in page
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 10 and runs["ratio_pivot"].tolist() == [s[3] for s in RATIOS for _ in (0, 1)]
    assert set(runs["ratio"]) == {"1/0/0/0", "0/1/0/0", "0/0/0/1", "0.25/0.25/0.25/0.25", "0.5/0/0/0.5"}
    # pivot in the tables: the ratio header, and its convergence columns (steps of the pivot-only runs)
    assert "ratio mono/cross/multi/pivot" in page and "loss · pivot" in page
    assert runs.loc[runs["ratio"] == "0/0/0/1", "conv/pivot/loss/final"].notna().all()
    assert runs.loc[runs["ratio"] == "1/0/0/0", "conv/pivot/loss/final"].isna().all()
    # the curves figure has a panel of its own for pivot batches
    fig = plots.plot_curves(load_histories(sweep), "loss")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["mono batches (monolingual)", "cross batches (cross-lingual)", "multi batches (multilingual)",
                      "pivot batches (pivot-language)", "all batches"]  # each type's panel, titled with its label
    with pytest.raises(BatchmixError, match="exactly three batch types"):
        plots.plot_ternary(runs)
