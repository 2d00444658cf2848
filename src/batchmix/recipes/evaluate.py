"""Evaluation, the step `train.py` (before and after training) and `eval.py` share, and the recipe behind
`python eval.py`: any encoder or batchmix run, every LAReQA setting.

`evaluate_corpora` scores a model on its main corpus and on every `eval.sets` corpus, one folder of
outputs per corpus:

    <out_dir>/          the main corpus (the held-out split, or eval.py's corpus): metrics unprefixed
    <out_dir>/<set>/    each extra set: its metrics prefixed `<set>/` (`mlqa-r/map/multi`)

One place encodes, scores and writes, so a training run's numbers and `eval.py`'s on the same model
and corpus are the same numbers. `evaluate` is eval.py's recipe: zero-shot models are scored on the
whole corpus (LAReQA's protocol); a batchmix run on its own held-out article split (same split
fractions and seed as in training), so no question it trained on is ever scored.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from batchmix.data.corpus import LAReQACorpus
from batchmix.data.load import load_corpus
from batchmix.data.split import split_by_article
from batchmix.errors import BatchmixError
from batchmix.eval.outputs import evaluate_and_write
from batchmix.eval.sets import eval_sets, headline_keys, load_eval_set, prefixed
from batchmix.metrics_table import HEADLINE, metrics_table
from batchmix.models.factory import build_dual_encoder, load_trained
from batchmix.models.dual_encoder import DualEncoder
from batchmix.preflight import check_writable, offline_defaults, validate_eval
from batchmix.run_dir import RunDir


log = logging.getLogger("batchmix")
SPLITS = ("auto", "all", "train", "val", "test")


def evaluate(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    offline_defaults()
    out_dir = check_writable(Path(out_dir))
    if cfg.split not in SPLITS:
        raise BatchmixError(f"split={cfg.split!r} is not one of {list(SPLITS)}")
    validate_eval(cfg)
    extra_sets = eval_sets(cfg, trained_on_data=bool(cfg.checkpoint))  # checked before the model loads

    if cfg.checkpoint:
        module, run_cfg = load_trained(cfg.checkpoint)
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        if run_cfg.get("data", {}).get("name") == data_cfg.get("name"):
            # Same dataset as in training: take its split so the held-out articles are the same.
            data_cfg.update({k: run_cfg["data"][k] for k in ("split", "split_seed") if k in run_cfg["data"]})
        split = "test" if cfg.split == "auto" else cfg.split
        what = f"batchmix run {cfg.checkpoint}"
    else:
        module = build_dual_encoder(cfg.model)
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        split = "all" if cfg.split == "auto" else cfg.split
        what = str(cfg.model.name_or_path)

    corpus = load_corpus(data_cfg)
    if split != "all":
        corpus = split_by_article(corpus, data_cfg.get("split") or {}, seed=int(data_cfg.get("split_seed", 0)))[split]
    log.info("evaluating %s on %s (%d languages)", what, corpus.name, len(corpus.langs))
    # eval.sets: more corpora, each scored the same way into <out_dir>/<set>/; metrics prefixed `<set>/`.
    extra = {spec.key: load_eval_set(spec) for spec in extra_sets}
    # trec_depth false / 0 / null: the full ranking (eval.py has always read any false value so)
    settings = {**OmegaConf.to_container(cfg.eval, resolve=True), "trec_depth": cfg.eval.trec_depth or None}
    metrics = evaluate_corpora(module, corpus, extra, out_dir, settings, title=what, tag=what)
    if extra_sets:
        RunDir(out_dir).write_metrics(metrics)  # one flat file with every set, as training runs write it
    print(metrics_table({}, metrics, title=f"{what} · {corpus.name}", keys=HEADLINE + headline_keys(s.key for s in extra_sets)))
    print(f"output dir: {out_dir}")
    return {"metrics": metrics, "out_dir": out_dir}


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
