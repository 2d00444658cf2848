"""The training recipe, top to bottom: validate, load data, build the sampler, load the model,
evaluate, train on hybrid batches, evaluate again, write results.

`train(cfg)` is what `python train.py` runs for each Hydra job; it returns the configured
objective (default `map/multi` on the held-out split) so a sweeper can optimise it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from batchmix.checkpointing import AtomicCheckpointIO, LastCheckpoint
from batchmix.convergence import write_convergence
from batchmix.data.datamodule import HybridDataModule, PairCollator
from batchmix.data.load import load_splits
from batchmix.data.pretokenize import pretokenize
from batchmix.errors import BatchmixError
from batchmix.eval.sets import eval_sets, headline_keys, load_eval_set
from batchmix.io import atomic_dir, write_json
from batchmix.loggers import build_logger, log_final_results
from batchmix.models.factory import build_dual_encoder
from batchmix.models.dual_encoder import DualEncoder
from batchmix.metrics_table import HEADLINE, metrics_table
from batchmix.preflight import check_writable, offline_defaults, validate
from batchmix.recipes.evaluate import evaluate_corpora
from batchmix.resume import plan_resume, sigterm_exit
from batchmix.run_dir import MODEL_INFO, RunDir
from batchmix.sampling.hybrid_batch_sampler import HybridBatchSampler
from batchmix.sweep.objectives import select_objective
from batchmix.sweep.pruning import pruning_callbacks
from batchmix.training_guards import NonFiniteLossGuard

log = logging.getLogger("batchmix")


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run one training job into `run_dir`; returns {'objective', 'metrics', 'metrics_before', 'run_dir'}."""
    offline_defaults()
    run_dir = check_writable(Path(run_dir))
    run = RunDir(run_dir)  # the run folder's layout: batchmix.run_dir

    # 1. Validate everything cheap before anything heavy loads.
    ratio = validate(cfg)
    # A rerun into the same run dir (resume=true): skip a finished run, continue an interrupted one.
    plan = plan_resume(cfg, run_dir)
    if plan.finished is not None:
        return plan.finished
    if rank_zero_only.rank == 0:
        # One writer: under DDP every rank runs this recipe, and rank 0's stale-temp-file sweep in
        # plan_resume could delete another rank's temp config.yaml mid-write (seen as a rank dying
        # with FileNotFoundError, its peer left waiting at the DDP rendezvous).
        run.write_config(cfg)

    # 2. Data: training pairs and held-out article splits.
    groups, splits = load_splits(cfg.data)
    eval_split = cfg.eval.split
    if eval_split not in splits or not splits[eval_split].langs or not any(ls.question_ids for ls in splits[eval_split].languages.values()):
        raise BatchmixError(f"eval.split={eval_split!r} is empty or not one of the data.split keys {list(splits)}")
    eval_corpus = splits[eval_split]
    # eval.sets: more corpora scored the same way (e.g. MLQA-R zero-shot), metrics prefixed `<set>/`.
    extra_sets = {spec.key: load_eval_set(spec) for spec in eval_sets(cfg)}

    # 3. The hybrid schedule (its constructor refuses ratios this data cannot satisfy).
    sampler = HybridBatchSampler(
        [groups.langs_of(i) for i in range(len(groups))],
        cfg.data.batch_size,
        ratio,
        batches_per_epoch=cfg.data.batches_per_epoch,
        mono_mode=cfg.data.sampler.mono_mode,
        seed=cfg.seed,
    )
    log.info("ratio %s: %d training ids, %d batches/epoch %s", ratio.label(), len(groups), len(sampler), ratio.counts(len(sampler)))

    # 4. Model.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_dual_encoder(cfg.model, cfg.loss, cfg.optim)
    tokenizer = module.tokenizer
    text_settings = dict(
        query_prefix=cfg.model.query_prefix,
        passage_prefix=cfg.model.passage_prefix,
        query_max_length=cfg.model.query_max_length,
        passage_max_length=cfg.model.passage_max_length,
    )
    collator = PairCollator(
        groups,
        tokenizer,
        **text_settings,
        pivot_lang=module.loss_fn.pivot_lang,  # a loss that needs pivot-language texts in the batch names the language
        # data.pretokenize: tokenise every pair once into the on-disk cache (same batches, faster)
        pretokenized=pretokenize(groups, tokenizer, **text_settings) if cfg.data.get("pretokenize", False) else None,
    )
    datamodule = HybridDataModule(groups, sampler, collator, num_workers=cfg.data.num_workers)

    # 5. Evaluate the untrained model, so the final table shows what training changed.
    def evaluate(tag: str) -> dict[str, float]:  # eval/<tag>/ and eval/<tag>/<set>/ (batchmix.recipes.evaluate)
        return evaluate_corpora(module, eval_corpus, extra_sets, run.eval_dir(tag), cfg.eval, tag=tag,
                                title=f"{cfg.model.name_or_path} ({tag}, ratio {ratio.label()})")

    # Under DDP every process runs this recipe; only global rank 0 evaluates and writes results.
    is_main = rank_zero_only.rank == 0
    if plan.checkpoint and run.metrics_before_file.is_file():  # a resumed run scored its untrained model already
        metrics_before = run.read_metrics_before()
    else:
        metrics_before = evaluate("before") if cfg.eval.before and is_main else {}
        if metrics_before:
            run.write_metrics_before(metrics_before)

    # 6. Train.
    logger = build_logger(cfg, run_dir)
    # checkpoints/last.ckpt every checkpoint.every_n_steps steps, at the end and on SIGTERM (atomically)
    checkpoint = LastCheckpoint(run.checkpoints_dir, every_n_steps=cfg.checkpoint.every_n_steps)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            checkpoint,
            NonFiniteLossGuard(run_dir, checkpoint),  # a NaN/inf loss stops the run before it touches the model
            *pruning_callbacks(cfg, splits),  # reports validation mAP to an Optuna trial, if any
        ],
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=False)  # our own checkpoint
    except SIGTERMException:
        raise sigterm_exit(run_dir, trainer.global_step) from None
    if trainer.global_rank != 0:
        return {"objective": None, "metrics": {}, "metrics_before": {}, "run_dir": run_dir}
    history = pd.DataFrame(module.history)
    run.write_history(history)
    convergence = write_convergence(run_dir, history)  # convergence.json: smoothed curves' settling, AUC, final

    # 7. Evaluate the trained model and write the results.
    metrics = evaluate("final")
    metrics.update(_training_summary(history, convergence))
    run.write_metrics(metrics)
    if cfg.save_model:
        with atomic_dir(run.model_dir) as staging:  # all of model/ or none of it
            _export(module, staging)
    log_final_results(logger, {**metrics, **convergence}, run_dir)  # last: it closes a W&B run
    print(metrics_table(metrics_before, metrics, title=f"{eval_corpus.name} · ratio {'/'.join(ratio.names())} = {ratio.label()}",
                        keys=HEADLINE + headline_keys(extra_sets)))
    objective = select_objective(cfg.objective, metrics)
    print(f"run dir: {run_dir}")
    return {"objective": objective, "metrics": metrics, "metrics_before": metrics_before, "run_dir": run_dir}


def _training_summary(history: pd.DataFrame, convergence: dict[str, float]) -> dict[str, float]:
    """Steps per batch type, and its final loss and MSE: the one definition of `batchmix.convergence`
    (the last point of the smoothed curve, `conv/<type>/<curve>/final`)."""
    out: dict[str, float] = {"train/steps": float(len(history))}
    if history.empty:
        return out
    for btype, part in history.groupby("batch_type"):
        out[f"train/{btype}/steps"] = float(len(part))
        out[f"train/{btype}/loss_final"] = convergence[f"conv/{btype}/loss/final"]
        out[f"train/{btype}/mse_final"] = convergence[f"conv/{btype}/mse/final"]
    return out


def _export(module: DualEncoder, out: Path) -> None:
    """HF-style export (encoder + tokenizer + how to pool), loadable by eval.py or any HF tool."""
    module.query_encoder.save_pretrained(out)
    module.tokenizer.save_pretrained(out)
    write_json(
        out / MODEL_INFO,
        {"pooling": module.pooling, "normalize": module.normalize, "query_prefix": module.query_prefix,
         "passage_prefix": module.passage_prefix, "shared": module.passage_encoder is module.query_encoder},
    )
    if module.passage_encoder is not module.query_encoder:
        module.passage_encoder.save_pretrained(out / "passage_encoder")
