"""The table a run ends with: headline metrics before training (step 0), after, and the change."""

from __future__ import annotations

from typing import Mapping

from batchmix.eval.settings import HEADLINE_ORDER

# What train and eval print: every headline metric; batchmix.report.headlines cuts the reports' lists from it.
HEADLINE = (
    *(f"map/{setting}" for setting in HEADLINE_ORDER),
    "map@20/multi", "mrr/multi", "recall@10/multi", "ndcg@10/multi",
    "bias/rank_distance", "bias/own_lang_first", "bias/mrc",
)


def metrics_table(before: Mapping[str, float], after: Mapping[str, float], title: str = "", keys: tuple[str, ...] = HEADLINE) -> str:
    rows = [k for k in keys if k in after or k in before]
    width = max([len(k) for k in rows] + [6])
    lines = [title] if title else []
    if not before:
        lines.append(f"{'metric':<{width}}  {'value':>9}")
        lines.append("-" * (width + 11))
        lines += [f"{k:<{width}}  {after[k]:9.1f}" if k == "bias/rank_distance" else f"{k:<{width}}  {after[k]:9.4f}" for k in rows]
        return "\n".join(lines)
    lines.append(f"{'metric':<{width}}  {'before':>9}  {'after':>9}  {'change':>9}")
    lines.append("-" * (width + 33))
    for k in rows:
        b, a = before.get(k), after.get(k)
        fmt = (lambda v: f"{v:9.1f}") if k == "bias/rank_distance" else (lambda v: f"{v:9.4f}")
        bs = fmt(b) if b is not None else f"{'-':>9}"
        as_ = fmt(a) if a is not None else f"{'-':>9}"
        ds = (f"{a - b:+9.1f}" if k == "bias/rank_distance" else f"{a - b:+9.4f}") if a is not None and b is not None else f"{'':>9}"
        lines.append(f"{k:<{width}}  {bs}  {as_}  {ds}")
    return "\n".join(lines)
