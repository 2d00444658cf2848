"""A ratio study in the layout of arXiv 2408.10536 (Table 1), written into a README.

`write_study_markdown(sweep, readme)` reads every run of a sweep (`aggregate.load_runs`) and
replaces the block between `<!-- batchmix:report:begin -->` and `<!-- batchmix:report:end -->` of
`readme` with: mAP in the paper's layout (mean ± std over seeds, one column group per evaluation
set), the language-bias table, the paper's directional claims checked on these runs, convergence
figures per batch type, and the plots (PNGs next to the README). Everything in the block comes from
the run files, so rerunning the study and this function regenerates it; prose outside the markers
is left alone.

Claims are checked with an explicit noise rule: with n seeds per ratio, two means are "tied" when
their difference is within two standard errors of the difference, sqrt(s1^2/n1 + s2^2/n2).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from batchmix.batch_types import batch_type_names
from batchmix.convergence import DEFAULT_TOLERANCE, DEFAULT_WINDOW, LAST_N, mean_of_last
from batchmix.errors import BatchmixError
from batchmix.eval.settings import EVAL_SETTINGS as SETTINGS, SETTING_WORDS
from batchmix.io import atomic_write_text
from batchmix.report import plots
from batchmix.report.aggregate import by_ratio, load_histories, load_runs, ratio_columns
from batchmix.run_dir import RunDir, find_run_dirs

BEGIN = "<!-- batchmix:report:begin -->"
END = "<!-- batchmix:report:end -->"

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


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (pandas' to_markdown needs the optional `tabulate`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pm(mean: float, std: float, n: int, digits: int = 3) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if n > 1 and std == 0 and digits == 0:
        return f"{mean:.0f}"  # a count every seed shares (steps)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 and not math.isnan(std) else f"{mean:.{digits}f}"


def _cell(row: pd.Series, column: str, digits: int = 3) -> str:
    """`mean ± std` of one by_ratio row; '–' where the runs lack the column."""
    return _pm(float(row.get(column, math.nan)), float(row.get(f"{column}/std", math.nan)), int(row["n"]), digits)


@dataclass(frozen=True)
class EvalSetInfo:
    prefix: str   # "" for the run's own held-out split, else "<key>/"
    label: str    # column group header
    paper_key: str | None  # "xquad-r" / "mlqa-r": where the paper's numbers apply


def _dataset_label(name: str) -> str:
    return {"xquad-r": "XQuAD-R", "mlqa-r": "MLQA-R"}.get(name, name)


def eval_sets_of(runs: pd.DataFrame, cfg: dict) -> tuple[list[EvalSetInfo], list[str]]:
    """(sets with numbers, configured sets without any: not found on this machine)."""
    data = cfg.get("data") or {}
    name = str(data.get("name", "held-out"))
    split = (cfg.get("eval") or {}).get("split", "test")
    sets = [EvalSetInfo("", f"{_dataset_label(name)} ({split} articles)", name if name in ("xquad-r", "mlqa-r") else None)]
    missing = []
    for key, spec in ((cfg.get("eval") or {}).get("sets") or {}).items():
        dataset = str((spec or {}).get("dataset") or key)
        if f"{key}/map/multi" in runs.columns and runs[f"{key}/map/multi"].notna().any():
            sub = (spec or {}).get("split", "all")
            label = f"{_dataset_label(dataset)} ({'all' if sub == 'all' else sub + ' articles'}, zero-shot)"
            sets.append(EvalSetInfo(f"{key}/", label, dataset if dataset in ("xquad-r", "mlqa-r") else None))
        else:
            missing.append(f"`{key}` ({_dataset_label(dataset)})")
    return sets, missing


def _stats(table: pd.DataFrame, schedule: str, column: str) -> tuple[float, float, int]:
    row = table[table["schedule"] == schedule]
    if row.empty or column not in table.columns:
        return math.nan, math.nan, 0
    r = row.iloc[0]
    return float(r[column]), float(r.get(f"{column}/std", math.nan)), int(r["n"])


def _se(a: tuple[float, float, int], b: tuple[float, float, int]) -> float:
    var = sum((s if not math.isnan(s) else 0.0) ** 2 / max(n, 1) for _, s, n in (a, b))
    return math.sqrt(var)


def _difference(a, b, higher_is_better: bool) -> tuple[float, float, str]:
    """(a's advantage over b, two standard errors of the difference, the difference as printed)."""
    diff = (a[0] - b[0]) if higher_is_better else (b[0] - a[0])
    tie = 2 * _se(a, b)
    text = f"{a[0] - b[0]:+.3f} (2 SE {tie:.3f})" if abs(a[0]) < 10 else f"{a[0] - b[0]:+.1f} (2 SE {tie:.1f})"
    return diff, tie, text


def _verdict_geq(a, b, higher_is_better: bool = True) -> tuple[str, str]:
    """Is a at least as good as b, or tied (within 2 SE)? Returns (difference text, verdict)."""
    diff, tie, text = _difference(a, b, higher_is_better)
    if math.isnan(diff):
        return "–", "not measured"
    if diff >= 0:
        return text, "**matches**"
    return text, "matches (tied within 2 SE)" if -diff <= tie else "**does not match**"


def _verdict_gt(a, b, higher_is_better: bool = True) -> tuple[str, str]:
    """Is a better than b beyond noise?"""
    diff, tie, text = _difference(a, b, higher_is_better)
    if math.isnan(diff):
        return "–", "not measured"
    if diff > tie:
        return text, "**matches**"
    return text, "same direction, within noise" if diff > 0 else "**does not match**"


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
        others = ("cross only", "hybrid")
        mono_best = max(others, key=lambda s: st(s, "mono")[0] if not math.isnan(st(s, "mono")[0]) else -1)
        d, v = _verdict_geq(st("mono only", "mono"), st(mono_best, "mono"))
        rows.append([f"mono only is best or tied on monolingual mAP (vs {mono_best})", es.label,
                     _paper_says(lambda p: p["mono only"][0] >= max(p["cross only"][0], p["hybrid"][0]) - 0.01, es.paper_key), d, v])
        for setting in ("cross", "multi"):
            d, v = _verdict_gt(st("cross only", setting), st("mono only", setting))
            rows.append([f"cross only beats mono only on {SETTING_WORDS[setting]} mAP", es.label,
                         _paper_says(lambda p, i=idx[setting]: p["cross only"][i] > p["mono only"][i], es.paper_key), d, v])
        for setting in SETTINGS:
            best = max(("mono only", "cross only"), key=lambda s: st(s, setting)[0] if not math.isnan(st(s, setting)[0]) else -1)
            d, v = _verdict_geq(st("hybrid", setting), st(best, setting))
            rows.append([f"hybrid is best or tied on {SETTING_WORDS[setting]} mAP (vs {best})", es.label,
                         _paper_says(lambda p, i=idx[setting]: p["hybrid"][i] >= max(p["mono only"][i], p["cross only"][i]), es.paper_key), d, v])
        rd = f"{es.prefix}bias/rank_distance"
        if rd in table.columns:
            least = min(("mono only", "cross only"), key=lambda s: _stats(table, s, rd)[0] if not math.isnan(_stats(table, s, rd)[0]) else math.inf)
            d, v = _verdict_geq(_stats(table, "hybrid", rd), _stats(table, least, rd), higher_is_better=False)
            paper = "XLM-R yes (286.6 vs 295.4 / 410.2)" if es.paper_key == "xquad-r" else "–"
            rows.append([f"hybrid is least language-biased, lower rank distance (vs {least})", es.label, paper, d, v])
            d, v = _verdict_gt(_stats(table, "mono only", rd), _stats(table, "cross only", rd), higher_is_better=True)
            paper = "XLM-R yes (410.2 vs 295.4)" if es.paper_key == "xquad-r" else "–"
            rows.append(["mono only is more biased than cross only", es.label, paper, d, v])
    return rows


def _timing(sweep: Path) -> str:
    """Wall time from the files the runs wrote: first config.yaml to last metrics.json."""
    starts, ends, per_run = [], [], []
    for run in map(RunDir, find_run_dirs(sweep)):
        if run.metrics_file.is_file():
            s, e = run.config_file.stat().st_mtime, run.metrics_file.stat().st_mtime
            starts.append(s)
            ends.append(e)
            per_run.append(e - s)
    if not per_run:
        return ""
    span = max(ends) - min(starts)
    return (f"Grid wall time {span / 60:.1f} min for {len(per_run)} runs (first run's config.yaml to last run's "
            f"metrics.json; per run {min(per_run) / 60:.1f}–{max(per_run) / 60:.1f} min, training plus final evaluation).")


def study_markdown(sweep: str | os.PathLike, figures_dir: Path, figures_link: str, zero_shot: str | os.PathLike | None = None,
                   command: str | None = None, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The generated block (without markers); writes the figures into `figures_dir`."""
    sweep = Path(sweep)
    runs = load_runs(sweep, window, tolerance)
    complete = runs[runs["status"] == "complete"] if not runs.empty else runs
    if complete.empty:
        raise BatchmixError(f"no complete run (config.yaml + metrics.json) under {sweep}; run the study first")
    first_cfg = RunDir(complete["run_dir"].iloc[0]).read_config()
    sets, missing = eval_sets_of(complete, first_cfg)
    metric_cols = [f"{es.prefix}{m}" for es in sets for m in
                   (*(f"map/{s}" for s in SETTINGS), "bias/rank_distance", "bias/own_lang_first", "recall@10/multi", "ndcg@10/multi")]
    types = batch_type_names()  # training batch types (the columns above are evaluation settings)
    # "last 10": `convergence.mean_of_last`, from each run's history.csv (not in load_runs: runs.csv stays as it was)
    last = [mean_of_last(h) if (h := RunDir(d).read_history()) is not None else {} for d in complete["run_dir"]]
    complete = pd.concat([complete, pd.DataFrame(last, index=complete.index)], axis=1)
    conv_cols = [f"conv/{t}/{c}/last{LAST_N}" for t in types for c in ("loss", "mse")] + [f"conv/{t}/loss/auc" for t in types]
    table = by_ratio(complete, [*metric_cols, *conv_cols, "train/steps"])
    table["schedule"] = [schedule_name(*r) for r in table[list(ratio_columns())].itertuples(index=False)]
    order = {"mono only": 0, "cross only": 1, "hybrid": 2}
    table = table.sort_values("schedule", key=lambda s: s.map(lambda x: order.get(x, 3)), kind="stable")
    seeds = sorted({int(s) for s in complete["seed"].dropna()})
    model = str((first_cfg.get("model") or {}).get("name_or_path", "?"))
    zs = RunDir(zero_shot).read_metrics() if zero_shot and RunDir(zero_shot).metrics_file.is_file() else None

    out = [f"_Generated by `{command or 'python -m batchmix.report <sweep> --markdown <README>'}` on "
           f"{time.strftime('%Y-%m-%d')} from {len(complete)} complete runs ({table['schedule'].nunique()} ratios × seeds "
           f"{', '.join(map(str, seeds))}) in `{sweep.name}`; model `{model}`. Do not edit by hand._", ""]
    timing = _timing(sweep)
    if timing:
        out += [timing, ""]

    # Table 1 layout: rows = batch schedule, column groups = evaluation sets.
    header = ["model", "batches", f"ratio {'/'.join(types)}", "seeds"] + [f"{es.label} {s}" for es in sets for s in SETTINGS]
    rows = []
    if zs is not None:
        rows.append([model, "none (zero-shot)", "–", "–"] + [_pm(zs.get(f"{es.prefix}map/{s}", math.nan), math.nan, 1) for es in sets for s in SETTINGS])
    for _, r in table.iterrows():
        rows.append([model, r["schedule"], r["ratio"], int(r["n"])]
                    + [_cell(r, f"{es.prefix}map/{s}") for es in sets for s in SETTINGS])
    out += ["### mAP (the paper's Table 1 layout; mean ± sample std over seeds)", "", md_table(header, rows), ""]
    if missing:
        out += [f"Configured but not found on this machine, so not scored: {', '.join(missing)} "
                "(`required: false`; rerun the study once the data exists).", ""]

    # Language bias.
    header = ["batches", "ratio"] + [f"{es.label} {m}" for es in sets for m in ("rank distance", "own-language first")]
    rows = []
    if zs is not None:
        rows.append(["none (zero-shot)", "–"] + [v for es in sets for v in (_pm(zs.get(f"{es.prefix}bias/rank_distance", math.nan), math.nan, 1, 1),
                                                                             _pm(zs.get(f"{es.prefix}bias/own_lang_first", math.nan), math.nan, 1))])
    for _, r in table.iterrows():
        rows.append([r["schedule"], r["ratio"]] + [v for es in sets for v in (
            _cell(r, f"{es.prefix}bias/rank_distance", 1), _cell(r, f"{es.prefix}bias/own_lang_first"))])
    out += ["### Language bias (rank distance: per multilingual query, worst minus best rank of its answers across "
            "languages, lower = less biased; own-language first: share of queries whose same-language answer ranks first "
            "among its answers)", "", md_table(header, rows), "",
            "Paper, XQuAD-R rank distance, XLM-R: mono only 410.2, cross only 295.4, hybrid 286.6 (a candidate pool of all "
            "of XQuAD-R; ours is the held-out articles, so absolute values are not comparable, only the order).", ""]

    # Directions.
    out += ["### The paper's direction, checked on these runs", "",
            "\"Tied\" = the difference is within two standard errors of the difference over seeds. The paper column "
            "applies the same comparison to its Table 1 (no seeds there; \"best or tied\" allows 0.01 on monolingual mAP).", "",
            md_table(["claim (paper, Table 1)", "evaluation set", "paper", "difference here", "here"], direction_checks(table, sets)), ""]

    # Convergence: raw means of each type's last 10 batches (`convergence.mean_of_last`) and the area
    # under each type's loss curve; short runs are too short for "steps to settle".
    header = ["batches", "steps"] + [f"{c} · {t}" for c in ("loss, last 10", "MSE, last 10", "loss AUC/step") for t in types]
    rows = []
    for _, r in table.iterrows():
        cells = [_cell(r, f"conv/{t}/{c}/last{LAST_N}") for c in ("loss", "mse") for t in types]
        cells += [_cell(r, f"conv/{t}/loss/auc") for t in types]
        rows.append([r["schedule"], _cell(r, "train/steps", 0)] + cells)
    out += ["### Convergence per batch type (mean of the type's last 10 training batches, and the mean height of its "
            "loss curve over the run; curves in the figures below)", "", md_table(header, rows), ""]

    # Figures.
    figures_dir.mkdir(parents=True, exist_ok=True)
    histories = load_histories(sweep)
    figs = [("curves_loss", "Training loss by batch type, one line per ratio (mean ± std over seeds)",
             plots.plot_curves(histories, "loss", window)),
            ("curves_mse", "In-batch similarity MSE by batch type, one line per ratio", plots.plot_curves(histories, "mse", window))]
    for es in sets:
        key = es.prefix.rstrip("/") or "heldout"
        figs.append((f"map_by_ratio_{key}", f"Final mAP and rank distance per ratio, {es.label}",
                     plots.plot_final_vs_ratio(complete, metric=f"{es.prefix}map", bias=f"{es.prefix}bias/rank_distance")))
    out += ["### Figures", ""]
    for name, caption, fig in figs:
        plots.save_png(fig, figures_dir / f"{name}.png")
        out += [f"**{caption}**", "", f"![{caption}]({figures_link}/{name}.png)", ""]
    return "\n".join(out).rstrip() + "\n"


def write_study_markdown(sweep: str | os.PathLike, readme: str | os.PathLike, zero_shot: str | os.PathLike | None = None,
                         command: str | None = None, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Regenerate the marked block of `readme` (created if missing; markers appended if absent)."""
    readme = Path(readme)
    block = study_markdown(sweep, readme.parent / "figures", "figures", zero_shot, command, window, tolerance)
    text = readme.read_text() if readme.is_file() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = (text.rstrip() + "\n\n" if text else ""), "\n"
    return atomic_write_text(readme, f"{head}{BEGIN}\n{block}{END}{tail}")
