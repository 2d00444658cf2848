"""The training recipe, top to bottom: validate, load data, build the sampler, load the model,
evaluate, train on hybrid batches (validating every `eval.val_every_n_steps`), evaluate again, write
results. Every evaluation is a Lightning validation loop on the run's device (`batchmix.eval.validation`).

`train(cfg)` is what `python train.py` runs for each Hydra job; it returns the configured
objective (default `val/map/multi`: the final validation, never the test split) so a sweeper can optimise it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from batchmix.config.schema import pruning_of
from batchmix.run.checkpointing import AtomicCheckpointIO, LastCheckpoint, drop_checkpoints, resolve_keep
from batchmix.eval.convergence import write_convergence
from batchmix.data.corpus import LAReQACorpus
from batchmix.data.datamodule import HybridDataModule, PairCollator
from batchmix.data.load import load_splits
from batchmix.data.negatives import check_hard_negatives, check_negatives_options
from batchmix.data.pretokenize import pretokenize
from batchmix.core.errors import BatchmixError
from batchmix.eval.sets import headline_keys, load_eval_set, prefixed
from batchmix.eval.validation import VAL, LAReQAValidation
from batchmix.core.io import atomic_dir, write_json
from batchmix.run.loggers import build_logger, log_final_results, wandb_run_name
from batchmix.models.export import export_model
from batchmix.losses import build_loss
from batchmix.models.factory import build_dual_encoder
from batchmix.eval.baselines import table_keys
from batchmix.eval.table import HEADLINE, metrics_table
from batchmix.run.preflight import Checked, check_writable, offline_defaults, validate
from batchmix.run.evaluate import baseline_fit, evaluate_round, module_round
from batchmix.run.resume import plan_resume, sigterm_exit
from batchmix.core.run_dir import BEST_CHECKPOINT, TRUNK_CACHE, RunDir
from batchmix.mixing.sampler import HybridBatchSampler
from batchmix.eval.selection import monitor
from batchmix.eval.objectives import select_objective
from batchmix.run.sweep.pruning import pruning_callbacks
from batchmix.run.guards import NonFiniteLossGuard
from batchmix.core.versions import environment, warn_drift

log = logging.getLogger("batchmix")


def train(cfg: DictConfig, run_dir: str | Path, checked: Checked | None = None) -> dict[str, Any]:
    """Run one training job into `run_dir`; returns {'objective', 'metrics', 'metrics_before', 'run_dir'}.
    `checked`: the pre-flight's result where the entry point ran it already (else it runs here)."""
    offline_defaults()
    run_dir = check_writable(Path(run_dir))
    run = RunDir(run_dir)  # the run folder's layout: batchmix.core.run_dir

    # 1. Validate everything cheap before anything heavy loads.
    ratio, sets = checked or validate(cfg, warn=True)
    # A rerun into the same run dir (resume=true): skip a finished run, continue an interrupted one.
    plan = plan_resume(cfg, run_dir)
    if plan.finished is not None:
        return plan.finished
    if rank_zero_only.rank == 0:
        # One writer: under DDP every rank runs this recipe, and rank 0's stale-temp-file sweep in
        # plan_resume could delete another rank's temp config.yaml mid-write (seen as a rank dying
        # with FileNotFoundError, its peer left waiting at the DDP rendezvous).
        run.write_config(cfg)
        if run.versions_file.exists():  # a resumed run keeps the versions it started with
            warn_drift(run.read_versions(), f"run {run_dir}")
        else:
            run.write_versions(environment())

    # 2. Data: training pairs and held-out article splits: val chooses, the reported split (test) and
    # eval.sets are scored, never used to choose (batchmix.eval.selection).
    groups, splits = load_splits(cfg.data)
    hard_negatives = check_negatives_options(cfg.data.hard_negatives, cfg.data.negatives_lang)
    check_hard_negatives(groups, *hard_negatives)  # every pair has enough, before the model loads
    # Which training ids share an answer (data/corpus.py), indexed once here (DataLoader workers inherit it):
    # the queries `loss.mask=answers` keeps from being one another's negatives.
    sharing = sum(1 for other in groups.shared_answers if other)
    eval_split = cfg.eval.split
    eval_corpus = _nonempty(splits, eval_split, "eval.split")
    val_corpus = _nonempty(splits, VAL, "data.split.val") if eval_split != VAL else eval_corpus
    # eval.sets: more corpora scored the same way (e.g. MLQA-R zero-shot), metrics prefixed `<set>/`.
    extra_sets = {spec.key: load_eval_set(spec) for spec in sets}

    # 3. The hybrid schedule (its constructor refuses ratios this data cannot satisfy).
    sampler = HybridBatchSampler(
        [groups.langs_of(i) for i in range(len(groups))],
        cfg.data.batch_size,
        ratio,
        batches_per_epoch=cfg.data.batches_per_epoch,
        mono_mode=cfg.data.sampler.mono_mode,
        # data.sampler.avoid_shared_answers: no two queries of a batch share an answer (data/corpus.py)
        exclusive=groups.shared_answers if cfg.data.sampler.avoid_shared_answers else None,
        seed=cfg.seed,
    )
    log.info("ratio %s: %d training ids, %d batches/epoch %s", ratio.label(), len(groups), len(sampler), ratio.counts(len(sampler)))

    # 4. Model.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    loss = build_loss(cfg.loss)  # after seeding, as the model: a loss may draw random numbers when built
    log.info("answers: %d of %d training ids share an answer with another id (any language); loss.mask=%s%s", sharing, len(groups),
             loss.mask if loss.in_batch else "none", ", the sampler keeps them apart" if cfg.data.sampler.avoid_shared_answers else "")
    module = build_dual_encoder(cfg.model, loss, cfg.optim)
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
        pretokenized=pretokenize(groups, tokenizer, **text_settings) if cfg.data.pretokenize else None,
        hard_negatives=hard_negatives[0],  # data.hard_negatives per query, chosen by data.negatives_lang
        negatives_lang=hard_negatives[1],
    )
    # 5. Evaluation as Lightning validation loops on the trainer's device (batchmix.eval.validation):
    # the val split every eval.val_every_n_steps steps (the val curve), and rounds before and after fit.
    every = cfg.eval.val_every_n_steps
    validation = LAReQAValidation(module_round(module, {VAL: val_corpus}, cfg.eval) if every else None)
    datamodule = HybridDataModule(groups, sampler, collator, num_workers=cfg.data.num_workers, val_loaders=validation.val_dataloaders)
    corpora = {eval_split: eval_corpus, VAL: val_corpus, **extra_sets}
    fit = baseline_fit(splits.get("train"), cfg.eval)  # the training-free baselines' fit text (eval.baselines)
    title = f"{cfg.model.name_or_path} ({{}}, ratio {ratio.label()})"

    def evaluate(tag: str, **kwargs) -> dict[str, float]:  # eval/<tag>/ and eval/<tag>/<key>/ (batchmix.run.evaluate)
        metrics = evaluate_round(trainer, validation, module, corpora, eval_split, run.eval_dir(tag), cfg.eval,
                                 title=title.format(tag), tag=tag, fit=fit, **kwargs)
        if eval_split == VAL:  # the reported split is val itself: its keys also as val/..., where selection reads them
            metrics.update(prefixed(VAL, {k: v for k, v in metrics.items() if not k.startswith(tuple(f"{s}/" for s in extra_sets))}))
        return metrics

    # 6. The trainer: checkpoints/last.ckpt every checkpoint.every_n_steps steps, at the end and on
    # SIGTERM (atomically); checkpoints/best.ckpt (checkpoint.best) at the best val objective.
    logger = build_logger(cfg.logger, run_dir, name=wandb_run_name(ratio, cfg.seed), config=OmegaConf.to_container(cfg, resolve=True))
    checkpoint = LastCheckpoint(run.checkpoints_dir, every_n_steps=cfg.checkpoint.every_n_steps, val_every_n_steps=every)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        logger=logger,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            validation,
            # best before last (Lightning runs checkpoint callbacks last, in this order): a SIGTERM held
            # through a validation stops the run in last's on_validation_end, after best.ckpt saw the point
            *best_checkpoint(cfg.checkpoint.best, cfg.objective, run.checkpoints_dir),
            checkpoint,
            NonFiniteLossGuard(run_dir, checkpoint),  # a NaN/inf loss stops the run before it touches the model
            *pruning_callbacks(pruning_of(cfg), cfg.objective),  # reports the val curve to an Optuna trial, if any
        ],
        **({"val_check_interval": every, "check_val_every_n_epoch": None} if every else {}),
    )

    # 7. Evaluate the untrained model (step 0 of the val curve), so the final table shows what training changed.
    if plan.checkpoint and run.metrics_before_file.is_file():  # a resumed run scored its untrained model already
        metrics_before = run.read_metrics_before()
    else:
        metrics_before = evaluate("before") if cfg.eval.before else {}
        if metrics_before and rank_zero_only.rank == 0:
            run.write_metrics_before(metrics_before)

    # 8. Train on hybrid batches.
    try:
        with warnings.catch_warnings():
            # eval.val_every_n_steps=0: no periodic validation, so fit gets no val loaders (on purpose)
            warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
            # model.train_top_layers: the frozen trunk is in eval mode on purpose (no dropout: cacheable)
            warnings.filterwarnings("ignore", message="Found .* module\\(s\\) in eval mode at the start of training")
            trainer.fit(module, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=False)  # our own checkpoint
    except SIGTERMException:
        raise sigterm_exit(run_dir, trainer.global_step) from None
    history = pd.DataFrame(module.history)
    if trainer.global_rank == 0:
        run.write_history(history)  # before a best checkpoint's load replaces the module's history

    # 9. Evaluate the trained model (the last or the best-val weights) on every rank, then rank 0 writes.
    best = run.best_checkpoint if cfg.eval.final_from == "best" else None
    if best is not None and not best.is_file():
        raise BatchmixError(f"eval.final_from=best but {best} was never written (no val point before training ended); use eval.final_from=last")
    metrics = evaluate("final", ckpt_path=str(best) if best else None, curve=best is None)
    if trainer.global_rank != 0:
        return {"objective": None, "metrics": {}, "metrics_before": {}, "run_dir": run_dir}
    val_history = pd.DataFrame(validation.history)
    run.write_val_history(val_history)
    convergence = write_convergence(run_dir, history, val_history=val_history)  # loss/MSE and val-curve figures
    metrics.update(_training_summary(history, convergence))
    run.write_metrics(metrics)
    if module.trunk_store is not None:  # model.train_top_layers: what the shared trunk cache holds and cost
        module.trunk_store.write_report(run_dir / TRUNK_CACHE)
    if cfg.save_model:
        with atomic_dir(run.model_dir) as staging:  # all of model/ or none of it
            # what training changed over the base model (export_full=true: a standalone HF folder)
            export_model(module, staging, base=str(cfg.model.name_or_path), full=cfg.export_full,
                         precision=str(cfg.trainer.precision))
    # checkpoint.keep: what a finished run keeps of checkpoints/ (auto: nothing in a sweep that exported model/).
    keep = resolve_keep(cfg.checkpoint.keep, multirun=_in_multirun(), exported=bool(cfg.save_model))
    for path in drop_checkpoints(run.checkpoints_dir, keep):
        log.info("checkpoint.keep=%s: removed %s", keep, path)
    log_final_results(logger, {**metrics, **convergence}, run_dir)  # last: it closes a W&B run
    print(metrics_table(metrics_before, metrics, title=f"{eval_corpus.name} · ratio {'/'.join(ratio.names())} = {ratio.label()}",
                        keys=HEADLINE + table_keys(cfg.eval.baselines.methods) + headline_keys([VAL, *extra_sets])))  # val/...: the val curve's last point
    objective = select_objective(cfg.objective, metrics)
    print(f"run dir: {run_dir}")
    return {"objective": objective, "metrics": metrics, "metrics_before": metrics_before, "run_dir": run_dir}


def _in_multirun() -> bool:
    """Is this run one point of a Hydra multirun (`-m`: a sweep, an Optuna study)?"""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _nonempty(splits: dict[str, LAReQACorpus], name: str, what: str) -> LAReQACorpus:
    if name not in splits or not splits[name].langs or not any(ls.question_ids for ls in splits[name].languages.values()):
        if what == "data.split.val":
            raise BatchmixError(f"the val split is empty (data.split {list(splits)}): selection reads it; give it articles, e.g. data.split.val=0.1")
        raise BatchmixError(f"{what}={name!r} is empty or not one of the data.split keys {list(splits)}")
    return splits[name]


def best_checkpoint(best: bool, objective: Any, dirpath: Path) -> list[ModelCheckpoint]:
    """checkpoint.best: Lightning's ModelCheckpoint on the objective's first name (a val metric), weights
    only (what the final evaluation and an export need; last.ckpt holds the optimizer for resuming)."""
    if not best:
        return []
    metric, mode = monitor(objective)
    return [ModelCheckpoint(dirpath=str(dirpath), filename=Path(BEST_CHECKPOINT).stem, monitor=metric, mode=mode,
                            save_top_k=1, save_weights_only=True, auto_insert_metric_name=False, enable_version_counter=False)]


def _training_summary(history: pd.DataFrame, convergence: dict[str, float]) -> dict[str, float]:
    """Steps per batch type, the masked entries (false negatives left out) summed over them, and its
    final loss and MSE: the one definition of `batchmix.eval.convergence` (the last point of the smoothed
    curve, `conv/<type>/<curve>/final`)."""
    out: dict[str, float] = {"train/steps": float(len(history))}
    if history.empty:
        return out
    if "masked" in history:  # the loss's false negatives: (query, candidate) entries its mask left out
        out["train/masked"] = float(history["masked"].sum())
    for btype, part in history.groupby("batch_type"):
        out[f"train/{btype}/steps"] = float(len(part))
        if "masked" in part:
            out[f"train/{btype}/masked"] = float(part["masked"].sum())
        out[f"train/{btype}/loss_final"] = convergence[f"conv/{btype}/loss/final"]
        out[f"train/{btype}/mse_final"] = convergence[f"conv/{btype}/mse/final"]
    return out
