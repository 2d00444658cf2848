"""Evaluation, the step `train.py` (before and after training) and `eval.py` share, and the recipe behind
`python eval.py`: any encoder or batchmix run, every LAReQA setting.

`evaluate_round` scores named corpora in one Lightning validation loop (`batchmix.eval.validation`),
on the trainer's device and precision, sharded over its DDP ranks, and rank 0 writes one folder of
outputs per corpus:

    <out_dir>/          the main corpus (the reported split, or eval.py's corpus): metrics unprefixed
    <out_dir>/<key>/    every other corpus (`val`, each `eval.sets` entry): metrics prefixed `<key>/`

One path encodes, scores and writes, so a training run's numbers and `eval.py`'s on the same model
and corpus are the same numbers. `evaluate` is eval.py's recipe: zero-shot models are scored on the
whole corpus (LAReQA's protocol); a batchmix run on its own held-out article split (same split
fractions and seed as in training), so no question it trained on is ever scored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from batchmix.data.corpus import LAReQACorpus
from batchmix.data.load import load_corpus
from batchmix.data.split import split_by_article
from batchmix.core.errors import BatchmixError
from batchmix.eval.baselines import fit_corpus, table_keys
from batchmix.eval.outputs import write_outputs
from batchmix.eval.rounds import EvalRound
from batchmix.eval.sets import eval_sets, headline_keys, load_eval_set, prefixed
from batchmix.eval.trec import RunCollector
from batchmix.eval.validation import LAReQAValidation
from batchmix.eval.table import HEADLINE, metrics_table
from batchmix.models.dual_encoder import DualEncoder
from batchmix.models.export import trained_precision
from batchmix.models.factory import build_dual_encoder, load_trained
from batchmix.run.preflight import check_writable, offline_defaults, validate_eval
from batchmix.core.run_dir import RunDir
from batchmix.core.versions import warn_drift


log = logging.getLogger("batchmix")
SPLITS = ("auto", "all", "train", "val", "test")
AUTO, DEFAULT_PRECISION = "auto", "32-true"  # eval.py's precision=auto, and what it falls back to
_ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}  # eval.py device= -> Lightning accelerator


def evaluate(cfg: DictConfig, out_dir: str | Path, validated: bool = False) -> dict[str, Any]:
    """eval.py's recipe; `validated`: the entry point ran the pre-flight (`validate_eval`) already."""
    offline_defaults()
    out_dir = check_writable(Path(out_dir))
    if cfg.split not in SPLITS:
        raise BatchmixError(f"split={cfg.split!r} is not one of {list(SPLITS)}")
    if not validated:
        validate_eval(cfg)
    extra_sets = eval_sets(cfg.eval.sets, cfg.data, trained_on_data=bool(cfg.checkpoint))  # checked before the model loads

    run_cfg: dict[str, Any] = {}
    if cfg.checkpoint:
        module, run_cfg = load_trained(cfg.checkpoint, cfg.model)  # cfg.model: what a copied-away model/ does not record
        warn_drift(RunDir.of_model(cfg.checkpoint).read_versions(), f"batchmix run {cfg.checkpoint}")
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
    settings = settings_of(cfg)
    articles = split_by_article(corpus, data_cfg["split"], seed=int(data_cfg["split_seed"])) if split != "all" or settings["baselines"]["methods"] else {}
    fit = baseline_fit(articles.get("train"), settings)
    if fit is not None and split in ("all", "train"):
        log.warning("eval.baselines are fitted on %d training ids, which split=%s also scores", len(fit.languages[fit.langs[0]].question_ids), split)
    if split != "all":
        corpus = articles[split]
    log.info("evaluating %s on %s (%d languages)", what, corpus.name, len(corpus.langs))
    # eval.sets: more corpora, each scored the same way into <out_dir>/<set>/; metrics prefixed `<set>/`.
    extra = {spec.key: load_eval_set(spec) for spec in extra_sets}
    precision, why = eval_precision(cfg.precision, cfg.checkpoint, run_cfg, cfg.device)
    log.info("precision %s (%s)", precision, why)
    validation = LAReQAValidation()
    trainer = L.Trainer(accelerator=_ACCELERATORS[cfg.device], devices=1, precision=precision, logger=False,
                        callbacks=[validation], enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
    metrics = evaluate_round(trainer, validation, module, {split: corpus, **extra}, split, out_dir, settings, title=what, tag=what, fit=fit)
    if extra_sets:
        RunDir(out_dir).write_metrics(metrics)  # one flat file with every set, as training runs write it
    print(metrics_table({}, metrics, title=f"{what} · {corpus.name} · {precision}", keys=HEADLINE + table_keys(settings["baselines"]["methods"]) + headline_keys(s.key for s in extra_sets)))
    print(f"output dir: {out_dir}")
    return {"metrics": metrics, "out_dir": out_dir}


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """eval.py's `eval` node as a plain dict; trec_depth false / 0 / null: the full ranking (eval.py has
    always read any false value so)."""
    return {**OmegaConf.to_container(cfg.eval, resolve=True), "trec_depth": cfg.eval.trec_depth or None}


def eval_precision(asked: str, checkpoint: str | None, run_cfg: Mapping[str, Any], device: str = "auto") -> tuple[str, str]:
    """The precision eval.py encodes under, and why: `auto` takes a batchmix run's `trainer.precision`
    (from its config.yaml, or the `precision` its model/ export records), so a bf16 run is scored as it
    validated itself (fp32 moves its metrics by ~1e-3); anything else is taken as given."""
    trained = (run_cfg.get("trainer") or {}).get("precision")
    if trained is None and checkpoint:
        trained = trained_precision(Path(checkpoint).expanduser())
    if asked != AUTO:
        return asked, "as given" + (f"; the run trained in {trained}" if trained and trained != asked else "")
    if not checkpoint:
        return DEFAULT_PRECISION, "precision=auto, not a batchmix run"
    if trained is None:
        return DEFAULT_PRECISION, "precision=auto, the run's precision is not recorded"
    if trained == "16-mixed" and (device == "cpu" or not torch.cuda.is_available()):
        return DEFAULT_PRECISION, "precision=auto: the run trained in 16-mixed, which Lightning runs on a GPU only"
    return str(trained), "the run's trainer.precision; precision=32-true to override"


def module_round(module: DualEncoder, corpora: Mapping[str, LAReQACorpus], eval_cfg: Mapping[str, Any],
                 fit: LAReQACorpus | None = None) -> EvalRound:
    """The round that scores `corpora` with `module`'s tokenizer and width, as the `eval` config says
    (batch_size, candidates, baselines): fit's periodic validation and every `evaluate_round` build it
    here. `fit`: the text the training-free baselines are fitted on (None: no baselines)."""
    return EvalRound(corpora, tokenize=module.tokenize, batch_size=eval_cfg["batch_size"],
                     candidates=eval_cfg["candidates"], width=module.embedding_dim,
                     baselines=eval_cfg["baselines"] if fit is not None else None, fit=fit)


def baseline_fit(train: LAReQACorpus | None, eval_cfg: Mapping[str, Any]) -> LAReQACorpus | None:
    """The baselines' fit text from a training-article split (None: no baselines asked, or no such split)."""
    if not eval_cfg["baselines"]["methods"]:
        return None
    if train is None or not any(ls.question_ids for ls in train.languages.values()):
        log.warning("eval.baselines: no training articles to fit them on (data.split.train is 0); not scored")
        return None
    return fit_corpus(train, int(eval_cfg["baselines"]["fit_ids"]))


def evaluate_round(
    trainer: L.Trainer,
    validation: LAReQAValidation,
    module: DualEncoder,
    corpora: Mapping[str, LAReQACorpus],
    main: str,
    out_dir: str | Path,
    eval_cfg: Mapping[str, Any],
    *,
    title: str,
    tag: str,
    ckpt_path: str | None = None,
    curve: bool = True,
    fit: LAReQACorpus | None = None,
) -> dict[str, float]:
    """Score `corpora` in one validation loop of `trainer` (every DDP rank calls this); returns every
    corpus's metrics in one flat dict, `main` unprefixed and the others prefixed `<key>/`.

    Rank 0 writes `main`'s outputs into `out_dir` and each other corpus's into `out_dir/<key>`.
    `eval_cfg`: the `eval` config (batch_size, candidates, trec, trec_depth). `title` names the model
    in the heatmaps and TREC runs; `tag` starts the log line ("final evaluation on ... took 41.0s").
    `ckpt_path`: score the weights of that checkpoint; `curve=False`: not a point of the val curve.
    `fit`: the text the training-free baselines are fitted on (`baseline_fit`; None: no baselines).
    """
    round_ = module_round(module, corpora, eval_cfg, fit=fit)
    is_main = rank_zero_only.rank == 0
    if eval_cfg["trec"] and is_main:
        for metric in round_.metrics.values():
            metric.runs = RunCollector(eval_cfg["trec_depth"])
    start = time.perf_counter()
    results = validation.run(trainer, module, round_, ckpt_path=ckpt_path, curve=curve)
    metrics: dict[str, float] = {}
    for key, scores in results.items():
        metrics.update(scores if key == main else prefixed(key, scores))
        if is_main:
            write_outputs(Path(out_dir) / key if key != main else Path(out_dir), corpora[key], scores,
                          round_.metrics[key].runs, title=title)
    if is_main:
        log.info("%s evaluation on %s took %.1fs", tag, ", ".join(c.name for c in corpora.values()), time.perf_counter() - start)
    return metrics
