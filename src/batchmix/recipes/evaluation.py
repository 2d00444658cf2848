"""The evaluation recipe `train.py` (before and after training) and `eval.py` share: score a model on
its main corpus and on every `eval.sets` corpus, one folder of outputs per corpus.

    <out_dir>/          the main corpus (the held-out split, or eval.py's corpus): metrics unprefixed
    <out_dir>/<set>/    each extra set: its metrics prefixed `<set>/` (`mlqa-r/map/multi`)

One place encodes, scores and writes, so a training run's numbers and `eval.py`'s on the same model
and corpus are the same numbers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchmix.data.corpus import LAReQACorpus
from batchmix.eval.report import evaluate_and_write
from batchmix.eval.sets import prefixed
from batchmix.models.dual_encoder import DualEncoder

log = logging.getLogger("batchmix")


def evaluate_corpora(
    module: DualEncoder,
    corpus: LAReQACorpus,
    extra_sets: Mapping[str, LAReQACorpus],
    out_dir: str | os.PathLike,
    eval_cfg: Mapping[str, Any],
    *,
    title: str,
    tag: str,
) -> dict[str, float]:
    """Encode, score and write `corpus` into `out_dir` and each extra set into `out_dir/<key>`; returns
    every set's metrics in one flat dict (extra sets prefixed `<key>/`).

    `eval_cfg`: the `eval` config (batch_size, candidates, trec, trec_depth). `title` names the model
    in the heatmaps and TREC runs; `tag` starts each corpus's log line ("final evaluation on ... took 41.0s").
    """
    out_dir = Path(out_dir)
    metrics: dict[str, float] = {}
    for key, data in {None: corpus, **extra_sets}.items():
        start = time.perf_counter()
        scores = evaluate_and_write(
            data, *module.encoders(eval_cfg["batch_size"]), out_dir / key if key else out_dir,
            candidate_mode=eval_cfg["candidates"], trec=eval_cfg["trec"], trec_depth=eval_cfg["trec_depth"], title=title,
        )
        metrics.update(prefixed(key, scores) if key else scores)
        log.info("%s evaluation on %s took %.1fs", tag, data.name, time.perf_counter() - start)
    return metrics
