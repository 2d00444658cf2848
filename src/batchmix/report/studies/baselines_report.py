"""The ratio study's sections on the declared contrasts (R1-R4) and the training-free baselines (B1-B3).

Both read only a study's committed files: `results.csv` (grid rows, the zero-shot row) and, for the
before/after table, `contrasts_id_mask.csv` (the first study's R1-R3, committed before the rerun).

The baselines' keys are `<method>/<metric>` (XQuAD-R test), `mlqa-r/<method>/<metric>`,
`val/<method>/<metric>` (batchmix.eval.baselines). The zero-shot row is one deterministic
evaluation (one model, one fixed fit sample), so B1 is an exact difference, with no interval; B2 and
B3 take their spread from the trained runs' seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from batchmix.core.errors import BatchmixError
from batchmix.eval.baselines import BASELINES
from batchmix.report.markdown import md_table
from batchmix.report.model import ci, value
from batchmix.report.studies.contrasts import ALPHA, SHARES, before_after, ratio_contrasts

ID_MASK_CONTRASTS = "contrasts_id_mask.csv"
CHOOSE_ON = "map/multi"  # under the val/ prefix: what chooses a mix and a baseline
SETS = (("", "XQuAD-R test"), ("mlqa-r/", "MLQA-R"))
B_METRICS = (("map/multi", 3), ("map/mono", 3), ("bias/rank_distance", 1))


def contrast_section(runs: pd.DataFrame, results_dir: Path) -> list[str]:
    """R1-R3 on these runs, and R4 against the id-mask table when `contrasts_id_mask.csv` is there."""
    try:
        after = ratio_contrasts(runs)
    except BatchmixError as err:  # e.g. one seed per ratio (a smoke run): say so, never a half table
        return ["### The declared contrasts (R1–R3)", "", f"Not computed: {err}.", ""]
    digits = {m: 1 if "rank_distance" in m else 4 for m in after["metric"]}
    out = ["### The declared contrasts (R1–R3; 95 % intervals, Holm-adjusted p over the table)", "",
           "Declared before the runs (section \"Declared contrasts of the second study\" above): R1 pure cross minus "
           "α = 0.5, R2 the slope on the mono share (from 0 to 1), R3 pure cross minus pure multi.", "",
           md_table(["contrast", "metric", "estimate [95 % CI]", "p (Holm)", "runs"],
                    [[r.contrast, r.metric, ci(r.estimate, r.ci_low, r.ci_high, digits[r.metric]), f"{r.p_holm:.3g}", int(r.n)]
                     for r in after.itertuples()]), ""]
    id_file = results_dir / ID_MASK_CONTRASTS
    if id_file.is_file():
        table = before_after(pd.read_csv(id_file), after)
        out += [f"### R4: the answer-aware mask against the id-only mask (`{ID_MASK_CONTRASTS}`, the first study's runs)", "",
                "The change's interval combines both standard errors (t on the smaller degrees of freedom).", "",
                md_table(["contrast", "metric", "id mask", "answer-aware mask", "change"],
                         [[r.contrast, r.metric, ci(r.before, r.before_low, r.before_high, digits[r.metric]),
                           ci(r.after, r.after_low, r.after_high, digits[r.metric]),
                           ci(r.change, r.change_low, r.change_high, digits[r.metric])] for r in table.itertuples()]), ""]
    return out


def methods_in(runs: pd.DataFrame) -> list[str]:
    """The baselines whose XQuAD-R test map/multi the runs hold, in registry order."""
    return [m for m in BASELINES if f"{m}/map/multi" in runs]


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t interval over seeds (NaN interval with one value)."""
    values = values[~np.isnan(values)]
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _ci_text(values: np.ndarray, digits: int) -> str:
    mean, low, high = _t_interval(values)
    return value(mean, digits) if math.isnan(low) else ci(mean, low, high, digits)


def baseline_section(grid: pd.DataFrame, zero_shot: pd.Series | None) -> list[str]:
    """B1 (each fix on the zero-shot model), B2 (the val-chosen trained mix against the val-chosen fix on
    the zero-shot model), B3 (the val-chosen fix on top of that mix), and every ratio with each fix."""
    methods = methods_in(grid)
    if not methods:
        return []
    out = ["### Training-free fixes for language bias (Shift, LIR, per-language centring) against training", "",
           "Each fix is fitted on a fixed sample of training question ids (`eval.baselines.fit_ids`, drawn with seed 0: their questions and answer sentences in every language, "
           "encoded by the model scored) and applied to the scored embeddings (batchmix.eval.baselines): Shift subtracts "
           "a per-language offset from the candidates (Jang et al. 2026), LIR projects out each language's top singular "
           "direction (Yang et al. 2021), centring subtracts each language's mean query and candidate.", ""]
    columns = [(f"{prefix}{{}}{metric}", f"{label} {metric.removeprefix('bias/').replace('_', ' ')}", digits)
               for prefix, label in SETS for metric, digits in B_METRICS]
    if zero_shot is not None and all(f"{m}/map/multi" in zero_shot for m in methods):
        rows = [["zero-shot model", *(value(zero_shot.get(c.format("")), d) for c, _, d in columns)]]
        rows += [[f"+ {m}", *(_delta(zero_shot, c.format(f"{m}/"), c.format(""), d) for c, _, d in columns)] for m in methods]
        out += ["**B1: each fix on the zero-shot model** (one deterministic evaluation: exact values; the fix rows give the "
                "change from the model alone)", "", md_table(["", *(h for _, h, _ in columns)], rows), ""]
    by_ratio = grid.groupby(list(SHARES), sort=True)
    val_mean = by_ratio[f"val/{CHOOSE_ON}"].mean()
    chosen_mix = val_mean.idxmax()
    chosen = by_ratio.get_group(chosen_mix)
    label = " : ".join(f"{s:g}" for s in chosen_mix)
    if zero_shot is not None:
        fix = max(methods, key=lambda m: zero_shot.get(f"val/{m}/{CHOOSE_ON}", -math.inf))
        rows = []
        for c, h, d in columns:
            if c.format("") in chosen and c.format(f"{fix}/") in zero_shot:
                rows.append([h, _ci_text(chosen[c.format("")].to_numpy(float), d), value(zero_shot[c.format(f"{fix}/")], d),
                             _ci_text(chosen[c.format("")].to_numpy(float) - zero_shot[c.format(f"{fix}/")], d)])
        out += [f"**B2: training against a fix.** The mix chosen on val ({label}, best mean val map/multi of the grid) "
                f"against the fix chosen on val on the zero-shot model ({fix}, best val map/multi of the fixes). "
                "Mean over seeds [95 % t interval]; the fix is one deterministic number.", "",
                md_table(["metric", f"trained {label}", f"zero-shot + {fix}", "trained minus fix"], rows), ""]
    fix_on_trained = max(methods, key=lambda m: chosen[f"val/{m}/{CHOOSE_ON}"].mean()) if f"val/{methods[0]}/{CHOOSE_ON}" in chosen else methods[0]
    rows = [[h, _ci_text(chosen[c.format("")].to_numpy(float), d), _ci_text(chosen[c.format(f"{fix_on_trained}/")].to_numpy(float), d),
             _ci_text(chosen[c.format(f"{fix_on_trained}/")].to_numpy(float) - chosen[c.format("")].to_numpy(float), d)]
            for c, h, d in columns if c.format(f"{fix_on_trained}/") in chosen]
    out += [f"**B3: a fix on top of training.** {fix_on_trained} (the best fix on val for this mix) applied to the trained "
            f"{label} runs; the change is paired by seed (same run).", "",
            md_table(["metric", f"trained {label}", f"+ {fix_on_trained}", "change"], rows), ""]
    keys = [(f"{prefix}{{}}map/multi", f"{label_} map/multi") for prefix, label_ in SETS]
    header = ["ratio", *(f"{h}{'' if m == '' else ' + ' + m}" for _, h in keys for m in ["", *methods])]
    rows = []
    for mix, part in by_ratio:
        rows.append([" : ".join(f"{s:g}" for s in mix),
                     *(value(part[k.format(f'{m}/' if m else '')].mean(), 3) for k, _ in keys for m in ["", *methods])])
    if zero_shot is not None:
        rows.insert(0, ["zero-shot", *(value(zero_shot.get(k.format(f'{m}/' if m else '')), 3) for k, _ in keys for m in ["", *methods])])
    out += ["**Every ratio with each fix** (map/multi, mean over seeds):", "", md_table(header, rows), ""]
    return out


def _delta(row: pd.Series, key: str, base: str, digits: int) -> str:
    if key not in row or base not in row or pd.isna(row[key]):
        return "–"
    return f"{row[key]:.{digits}f} ({row[key] - row[base]:+.{digits}f})"
