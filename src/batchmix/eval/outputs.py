"""Everything one LAReQA evaluation leaves on disk, in one folder.

    <out_dir>/metrics.json       flat metrics (`batchmix.eval.scoring`), written atomically
    <out_dir>/map_matrix.csv     per-language-pair mAP: rows = query, columns = candidate language
    <out_dir>/map_matrix.png     the same as an annotated heatmap with mean row / column
    <out_dir>/trec/<setting>.run / .qrels   rankings + relevance for outside scorers (see
                                 `batchmix.eval.trec`: ids, depth, and when their mAP equals ours)

Why files beyond metrics.json: the matrix shows which pairs fail, and the TREC files let anyone
recompute every number with trec_eval or ranx without trusting batchmix's metric code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from batchmix.data.corpus import LAReQACorpus
from batchmix.eval.pair_matrix import pair_matrix, plot_pair_matrix, write_pair_matrix_csv
from batchmix.eval.settings import EVAL_SETTINGS
from batchmix.eval.trec import RunCollector, write_trec
from batchmix.core.run_dir import RunDir


def _subtitle(metrics: Mapping[str, float]) -> str:
    parts = [f"{s} {metrics[f'map/{s}']:.3f}" for s in EVAL_SETTINGS if f"map/{s}" in metrics]
    return "LAReQA mAP per language pair" + (f" ({', '.join(parts)})" if parts else "")


def write_outputs(
    out_dir: str | os.PathLike,
    corpus: LAReQACorpus,
    metrics: Mapping[str, float],
    runs: RunCollector | None = None,
    *,
    title: str | None = None,
) -> dict[str, Path]:
    """Write metrics.json, map_matrix.csv / .png and (if `runs` is given) trec/ into `out_dir`.

    For precomputed embeddings: `runs = RunCollector(depth=100)`, then
    `metrics = evaluate_embeddings(corpus, q_emb, c_emb, runs=runs)`, then this. `title` (e.g. the
    model or run name) goes into the heatmap's title and, without whitespace, is the TREC run tag.
    Returns the paths written, by kind ("metrics", "matrix_csv", "matrix_png", "trec").
    """
    out_dir = Path(out_dir)
    paths = {"metrics": RunDir(out_dir).write_metrics(metrics)}
    matrix = pair_matrix(metrics, corpus.langs)
    paths["matrix_csv"] = write_pair_matrix_csv(out_dir / "map_matrix.csv", matrix)
    heading = corpus.name if not title else f"{corpus.name} · {title}"
    paths["matrix_png"] = plot_pair_matrix(out_dir / "map_matrix.png", matrix, heading, _subtitle(metrics))
    if runs is not None:
        tag = re.sub(r"\s+", "_", title.strip()) if title and title.strip() else "batchmix"
        write_trec(out_dir / "trec", corpus, runs, tag=tag)
        paths["trec"] = out_dir / "trec"
    return paths
