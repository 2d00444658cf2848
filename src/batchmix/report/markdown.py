"""A ratio study in the layout of arXiv 2408.10536 (Table 1), written into a README.

`write_study_markdown(sweep, readme)` reads every run of a sweep (`aggregate.load_runs`) and
replaces the block between `<!-- batchmix:report:begin -->` and `<!-- batchmix:report:end -->` of
`readme` with: mAP in the paper's layout (mean ± std over seeds, one column group per evaluation
set), the language-bias table, the paper's directional claims checked on these runs, convergence
figures per batch type, the validation curve's figures (where runs have val_history.csv), the
selection split, and the plots (PNGs next to the README). Everything in the block comes from
the run files, so rerunning the study and this function regenerates it; prose outside the markers
is left alone. The numbers, figures and captions come from `report/model.py` (shared with the HTML
report); the paper's claims and their noise rule from `report/studies/paper_claims.py`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from batchmix.mixing.batch_types import batch_type_names
from batchmix.eval.convergence import DEFAULT_TOLERANCE, DEFAULT_WINDOW, LAST_N, mean_of_last
from batchmix.core.errors import BatchmixError
from batchmix.eval.settings import EVAL_SETTINGS as SETTINGS
from batchmix.core.io import atomic_write_text
from batchmix.report import plots
from batchmix.report.aggregate import by_ratio, ratio_columns
from batchmix.report.headlines import BIAS_COLUMNS, STUDY_HEADLINE
from batchmix.report.model import VAL_TABLE_CAPTION, ReportModel, cell, ratio_rows
from batchmix.report.studies.paper_claims import PAPER_RANK_DISTANCE, EvalSetInfo, direction_checks, schedule_name
from batchmix.core.run_dir import RunDir, find_run_dirs

BEGIN = "<!-- batchmix:report:begin -->"
END = "<!-- batchmix:report:end -->"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (pandas' to_markdown needs the optional `tabulate`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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


def _timing(sweep: Path) -> str:
    """Wall time from the files the runs wrote: first config.yaml to last metrics.json."""
    runs = [run for run in map(RunDir, find_run_dirs(sweep)) if run.metrics_file.is_file()]
    if not runs:
        return ""
    starts, ends = [r.config_file.stat().st_mtime for r in runs], [r.metrics_file.stat().st_mtime for r in runs]
    per_run = [e - s for s, e in zip(starts, ends)]
    span = max(ends) - min(starts)
    return (f"Grid wall time {span / 60:.1f} min for {len(per_run)} runs (first run's config.yaml to last run's "
            f"metrics.json; per run {min(per_run) / 60:.1f}–{max(per_run) / 60:.1f} min, training plus final evaluation).")


def study_markdown(sweep: str | os.PathLike, figures_dir: Path, figures_link: str, zero_shot: str | os.PathLike | None = None,
                   command: str | None = None, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The generated block (without markers); writes the figures into `figures_dir`."""
    sweep = Path(sweep)
    report = ReportModel.from_dirs([sweep], window=window, tolerance=tolerance)
    complete = report.complete
    if complete.empty:
        raise BatchmixError(f"no complete run (config.yaml + metrics.json) under {sweep}; run the study first")
    first_cfg = RunDir(complete["run_dir"].iloc[0]).read_config()
    sets, missing = eval_sets_of(complete, first_cfg)
    types = batch_type_names()  # training batch types (STUDY_HEADLINE's settings are evaluation settings)
    # "last 10": `convergence.mean_of_last`, from each run's history.csv (not in load_runs: runs.csv stays as it was)
    last = [mean_of_last(h) if (h := RunDir(d).read_history()) is not None else {} for d in complete["run_dir"]]
    complete = pd.concat([complete, pd.DataFrame(last, index=complete.index)], axis=1)
    conv_cols = [f"conv/{t}/{c}/last{LAST_N}" for t in types for c in ("loss", "mse")] + [f"conv/{t}/loss/auc" for t in types]
    table = by_ratio(complete, [*(f"{es.prefix}{m}" for es in sets for m in STUDY_HEADLINE), *conv_cols, "train/steps"])
    table["schedule"] = [schedule_name(*r) for r in table[list(ratio_columns())].itertuples(index=False)]
    order = {"mono only": 0, "cross only": 1, "hybrid": 2}
    table = table.sort_values("schedule", key=lambda s: s.map(lambda x: order.get(x, 3)), kind="stable")
    seeds = sorted({int(s) for s in complete["seed"].dropna()})
    model = str((first_cfg.get("model") or {}).get("name_or_path", "?"))
    zs = RunDir(zero_shot).read_metrics() if zero_shot and RunDir(zero_shot).metrics_file.is_file() else None

    out = [f"_Generated by `{command or 'batchmix report <sweep> --markdown <README>'}` on "
           f"{time.strftime('%Y-%m-%d')} from {len(complete)} complete runs ({table['schedule'].nunique()} ratios × seeds "
           f"{', '.join(map(str, seeds))}) in `{sweep.name}`; model `{model}`. Do not edit by hand._", ""]
    out += [report.selection_note(), ""]
    timing = _timing(sweep)
    if timing:
        out += [timing, ""]
    out += _map_section(table, sets, missing, model, zs)
    out += _bias_section(table, sets, zs, with_mrc=any(f"{es.prefix}bias/mrc" in complete for es in sets))
    out += ["### The paper's direction, checked on these runs", "",
            "\"Tied\" = the difference is within two standard errors of the difference over seeds. The paper column "
            "applies the same comparison to its Table 1 (no seeds there; \"best or tied\" allows 0.01 on monolingual mAP).", "",
            md_table(["claim (paper, Table 1)", "evaluation set", "paper", "difference here", "here"], direction_checks(table, sets)), ""]
    out += _convergence_section(table, types, report)
    figs = report.curve_figures()
    figs += [report.final_vs_ratio_figure(es.prefix, es.label, name=f"map_by_ratio_{es.prefix.rstrip('/') or 'heldout'}") for es in sets]
    out += figures_section([(f.name, f.caption, f.figure) for f in figs], figures_dir, figures_link)
    return "\n".join(out).rstrip() + "\n"


def _map_section(table: pd.DataFrame, sets: list[EvalSetInfo], missing: list[str], model: str, zs: dict | None) -> list[str]:
    """mAP in the paper's Table 1 layout: rows = batch schedule, column groups = evaluation sets."""
    header = ["model", "batches", f"ratio {'/'.join(batch_type_names())}", "seeds"] + [f"{es.label} {s}" for es in sets for s in SETTINGS]
    rows = ratio_rows(table, lambda r: [model, r["schedule"], r["ratio"], int(r["n"])],
                      [(f"{es.prefix}map/{s}", 3) for es in sets for s in SETTINGS], zs, [model, "none (zero-shot)", "–", "–"])
    return ["### mAP (the paper's Table 1 layout; mean ± sample std over seeds)", "", md_table(header, rows), ""] + (
        [f"Configured but not found on this machine, so not scored: {', '.join(missing)} "
         "(`required: false`; rerun the study once the data exists).", ""] if missing else [])


def _bias_section(table: pd.DataFrame, sets: list[EvalSetInfo], zs: dict | None, with_mrc: bool) -> list[str]:
    """Language bias per evaluation set; runs scored before MRC existed have no bias/mrc, and then no MRC column."""
    columns = [c for c in BIAS_COLUMNS if with_mrc or c[0] != "bias/mrc"]
    header = ["batches", "ratio"] + [f"{es.label} {name}" for es in sets for _, name, _ in columns]
    rows = ratio_rows(table, lambda r: [r["schedule"], r["ratio"]],
                      [(f"{es.prefix}{key}", digits) for es in sets for key, _, digits in columns], zs, ["none (zero-shot)", "–"])
    return ["### Language bias (rank distance: per multilingual query, worst minus best rank of its answers across "
            "languages, lower = less biased; own-language first: share of queries whose same-language answer ranks first "
            "among its answers" + ("; MRC: mean Spearman correlation between the rankings of the pool by a question's "
            "translations, Yang, Jiang and Baldwin 2025, higher = less biased" if with_mrc else "") + ")", "", md_table(header, rows), "",
            "Paper, XQuAD-R rank distance, XLM-R: "
            + ", ".join(f"{schedule} {value}" for (_, schedule), value in PAPER_RANK_DISTANCE.items())
            + " (a candidate pool of all "
            "of XQuAD-R; ours is the held-out articles, so absolute values are not comparable, only the order).", ""]


def _convergence_section(table: pd.DataFrame, types: list[str], report: ReportModel) -> list[str]:
    """Raw means of each type's last 10 batches (`convergence.mean_of_last`) and the area under each type's
    loss curve (short runs are too short for "steps to settle"), then the validation curve's table."""
    header = ["batches", "steps"] + [f"{c} · {t}" for c in ("loss, last 10", "MSE, last 10", "loss AUC/step") for t in types]
    keys = [(f"conv/{t}/{c}/last{LAST_N}", 3) for c in ("loss", "mse") for t in types] + [(f"conv/{t}/loss/auc", 3) for t in types]
    out = ["### Convergence per batch type (mean of the type's last 10 training batches, and the mean height of its "
           "loss curve over the run; curves in the figures below)", "",
           md_table(header, ratio_rows(table, lambda r: [r["schedule"], cell(r, "train/steps", 0)], keys)), ""]
    if not report.has_val_curve:  # runs without val_history.csv: one line
        return out + [report.val_note(), ""]
    val = report.val_table()
    return out + [f"### {VAL_TABLE_CAPTION}", "", report.val_note(), "", md_table(list(val.columns), val.values.tolist()), ""]


def figures_section(figures: list[tuple[str, str, object]], figures_dir: Path, figures_link: str) -> list[str]:
    """Each (name, caption, Figure) saved as `figures_dir/<name>.png` and shown under its caption."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    out = ["### Figures", ""]
    for name, caption, figure in figures:
        (figures_dir / f"{name}.png").write_bytes(plots.figure_png(figure))
        out += [f"**{caption}**", "", f"![{caption}]({figures_link}/{name}.png)", ""]
    return out


def write_study_markdown(sweep: str | os.PathLike, readme: str | os.PathLike, zero_shot: str | os.PathLike | None = None,
                         command: str | None = None, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Regenerate the marked block of `readme` (created if missing; markers appended if absent)."""
    readme = Path(readme)
    return replace_block(readme, study_markdown(sweep, readme.parent / "figures", "figures", zero_shot, command, window, tolerance))


def replace_block(readme: Path, block: str) -> Path:
    """Put `block` between the markers of `readme` (created if missing; markers appended if absent)."""
    text = readme.read_text() if readme.is_file() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = (text.rstrip() + "\n\n" if text else ""), "\n"
    return atomic_write_text(readme, f"{head}{BEGIN}\n{block}{END}{tail}")
