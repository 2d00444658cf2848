"""Which headline metrics each report shows: one list per purpose, each cut from what a run prints
(`batchmix.eval.table.HEADLINE`, there because `run/` prints it) for the reason given beside it."""

from __future__ import annotations

from batchmix.eval.settings import HEADLINE_ORDER
from batchmix.eval.table import HEADLINE

# The HTML report's per-run table: mAP per setting and the bias, all a row per run has room for.
RUNS_TABLE_HEADLINE = (*(f"map/{s}" for s in HEADLINE_ORDER), "bias/rank_distance")
# The HTML report's per-ratio summary: the per-run columns plus recall@10, the ranking figure users quote.
REPORT_HEADLINE = (*RUNS_TABLE_HEADLINE, "recall@10/multi")
# A study's committed results.csv columns (and the sweep Markdown's per-ratio means): everything printed but
# map@20, which the paper does not report and the committed CSVs never had.
STUDY_HEADLINE = tuple(k for k in HEADLINE if k != "map@20/multi")
# The language-bias table of both study views (key, header, digits): rank distance is a rank, so one digit.
BIAS_COLUMNS = (("bias/rank_distance", "rank distance", 1), ("bias/own_lang_first", "own-language first", 3),
                ("bias/mrc", "MRC", 3))
