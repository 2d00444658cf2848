"""The paper's claims (arXiv 2408.10536, Elmahdy, Lin & Ahmad 2024, Table 1) checked on a ratio study.

Claims are checked with an explicit noise rule: with n seeds per ratio, two means are "tied" when
their difference is within two standard errors of the difference, sqrt(s1^2/n1 + s2^2/n2). The
paper column applies the same comparison to the paper's own numbers (no seeds there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from batchmix.eval.settings import EVAL_SETTINGS as SETTINGS, SETTING_WORDS

# arXiv 2408.10536, Table 1 (mAP) and the XQuAD-R rank distance of XLM-R, quoted for comparison.
PAPER_MAP = {
    ("XLM-R", "mono only"): {"xquad-r": (0.792, 0.674, 0.547), "mlqa-r": (0.648, 0.584, 0.473)},
    ("XLM-R", "cross only"): {"xquad-r": (0.755, 0.700, 0.593), "mlqa-r": (0.626, 0.620, 0.508)},
    ("XLM-R", "hybrid"): {"xquad-r": (0.798, 0.705, 0.593), "mlqa-r": (0.648, 0.623, 0.512)},
    ("LaBSE", "mono only"): {"xquad-r": (0.808, 0.752, 0.652), "mlqa-r": (0.681, 0.656, 0.550)},
    ("LaBSE", "cross only"): {"xquad-r": (0.801, 0.762, 0.679), "mlqa-r": (0.671, 0.677, 0.576)},
    ("LaBSE", "hybrid"): {"xquad-r": (0.817, 0.767, 0.682), "mlqa-r": (0.686, 0.681, 0.579)},
}
PAPER_RANK_DISTANCE = {("XLM-R", "mono only"): 410.2, ("XLM-R", "cross only"): 295.4, ("XLM-R", "hybrid"): 286.6}
# The paper's schedules, as shares of the first three batch types (mono, cross, multi).
SCHEDULES = {(1.0, 0.0, 0.0): "mono only", (0.0, 1.0, 0.0): "cross only", (0.5, 0.5, 0.0): "hybrid",
             (0.0, 0.0, 1.0): "multi only", (0.333333, 0.333333, 0.333333): "thirds"}


def schedule_name(*shares: float) -> str:
    """The paper's name for a ratio (shares in registry order; `hybrid` = mono with probability 0.5, else
    cross), else the ratio. A ratio giving a share to a fourth type has no paper name."""
    key = tuple(round(float(v), 6) for v in shares)
    name = SCHEDULES.get(key[:3]) if not any(key[3:]) else None
    return name or " / ".join(f"{v:.2g}" for v in shares)


@dataclass(frozen=True)
class EvalSetInfo:
    prefix: str   # "" for the run's own held-out split, else "<key>/"
    label: str    # column group header
    paper_key: str | None  # "xquad-r" / "mlqa-r": where the paper's numbers apply


def _stats(table: pd.DataFrame, schedule: str, column: str) -> tuple[float, float, int]:
    row = table[table["schedule"] == schedule]
    if row.empty or column not in table.columns:
        return math.nan, math.nan, 0
    r = row.iloc[0]
    return float(r[column]), float(r.get(f"{column}/std", math.nan)), int(r["n"])


def _verdict(a, b, higher_is_better: bool = True, strict: bool = False) -> tuple[str, str]:
    """(difference text, verdict) of "a is at least as good as b, or tied within 2 SE" (`strict`: "a is
    better than b beyond noise"); a and b are `_stats` (mean, std, n)."""
    diff = (a[0] - b[0]) if higher_is_better else (b[0] - a[0])
    tie = 2 * math.sqrt(sum((s if not math.isnan(s) else 0.0) ** 2 / max(n, 1) for _, s, n in (a, b)))
    text = f"{a[0] - b[0]:+.3f} (2 SE {tie:.3f})" if abs(a[0]) < 10 else f"{a[0] - b[0]:+.1f} (2 SE {tie:.1f})"
    if math.isnan(diff):
        return "–", "not measured"
    if (diff > tie) if strict else (diff >= 0):
        return text, "**matches**"
    if strict:
        return text, "same direction, within noise" if diff > 0 else "**does not match**"
    return text, "matches (tied within 2 SE)" if -diff <= tie else "**does not match**"


def _paper_says(claim, paper_key: str | None) -> str:
    """Evaluate a claim on the paper's own Table 1 numbers (no seeds there: plain comparisons)."""
    if paper_key is None:
        return "–"
    out = []
    for model in ("XLM-R", "LaBSE"):
        vals = {s: PAPER_MAP[(model, s)][paper_key] for s in ("mono only", "cross only", "hybrid")}
        out.append(f"{model} {'yes' if claim(vals) else 'no'}")
    return ", ".join(out)


def direction_checks(table: pd.DataFrame, sets: list[EvalSetInfo]) -> list[list[str]]:
    """The paper's directional findings, checked per evaluation set on these runs."""
    rows = []
    idx = {s: i for i, s in enumerate(SETTINGS)}
    for es in sets:
        col = lambda setting: f"{es.prefix}map/{setting}"  # noqa: E731
        st = lambda sched, setting: _stats(table, sched, col(setting))  # noqa: E731
        mono_best = max(("cross only", "hybrid"), key=lambda s: st(s, "mono")[0] if not math.isnan(st(s, "mono")[0]) else -1)
        d, v = _verdict(st("mono only", "mono"), st(mono_best, "mono"))
        rows.append([f"mono only is best or tied on monolingual mAP (vs {mono_best})", es.label,
                     _paper_says(lambda p: p["mono only"][0] >= max(p["cross only"][0], p["hybrid"][0]) - 0.01, es.paper_key), d, v])
        for setting in ("cross", "multi"):
            d, v = _verdict(st("cross only", setting), st("mono only", setting), strict=True)
            rows.append([f"cross only beats mono only on {SETTING_WORDS[setting]} mAP", es.label,
                         _paper_says(lambda p, i=idx[setting]: p["cross only"][i] > p["mono only"][i], es.paper_key), d, v])
        for setting in SETTINGS:
            best = max(("mono only", "cross only"), key=lambda s: st(s, setting)[0] if not math.isnan(st(s, setting)[0]) else -1)
            d, v = _verdict(st("hybrid", setting), st(best, setting))
            rows.append([f"hybrid is best or tied on {SETTING_WORDS[setting]} mAP (vs {best})", es.label,
                         _paper_says(lambda p, i=idx[setting]: p["hybrid"][i] >= max(p["mono only"][i], p["cross only"][i]), es.paper_key), d, v])
        rd = f"{es.prefix}bias/rank_distance"
        if rd in table.columns:
            least = min(("mono only", "cross only"), key=lambda s: _stats(table, s, rd)[0] if not math.isnan(_stats(table, s, rd)[0]) else math.inf)
            d, v = _verdict(_stats(table, "hybrid", rd), _stats(table, least, rd), higher_is_better=False)
            paper = "XLM-R yes (286.6 vs 295.4 / 410.2)" if es.paper_key == "xquad-r" else "–"
            rows.append([f"hybrid is least language-biased, lower rank distance (vs {least})", es.label, paper, d, v])
            d, v = _verdict(_stats(table, "mono only", rd), _stats(table, "cross only", rd), strict=True)
            paper = "XLM-R yes (410.2 vs 295.4)" if es.paper_key == "xquad-r" else "–"
            rows.append(["mono only is more biased than cross only", es.label, paper, d, v])
    return rows
