"""`LAReQAValidation`: every evaluation of a run as a Lightning validation loop, and the val curve.

One callback serves every round (`batchmix.eval.rounds.EvalRound`):

- during `fit`, the val split every `eval.val_every_n_steps` steps (Lightning's
  `val_check_interval`): one point of the val curve per call;
- `run(trainer, module, round)`, a `trainer.validate` call: the untrained model before `fit`
  (val + the reported split + `eval.sets`; its val point is the curve's step 0) and the trained one
  after it (its val point is the curve's last, unless the final round reads the best checkpoint).

So encoding runs on the trainer's device, under its precision (autocast), sharded over DDP ranks;
`LAReQAMetric` gathers and scores. A val point logs `val/<key>` for `VAL_CURVE_KEYS` (and the seconds
it took) to the run's logger, and keeps every aggregate metric in `history`, which
`val_history.csv` is written from and the checkpoints carry (a resumed run keeps its curve).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L

from batchmix.eval.rounds import EvalDataModule, EvalRound
from batchmix.eval.settings import VAL_CURVE_KEYS, VAL_SPLIT

log = logging.getLogger("batchmix")

VAL = VAL_SPLIT  # the key of the validation split in a round, and the prefix of its metrics


def aggregate(metrics: dict[str, float]) -> dict[str, float]:
    """The macro / pooled figures (`map/multi`, `bias/rank_distance`), not per language or pair."""
    return {k: v for k, v in metrics.items() if k.count("/") == 1 and not k.startswith("n_skipped")}


class LAReQAValidation(L.Callback):
    """Scores whichever round the running validation loop holds; `results` = the last round's metrics."""

    def __init__(self, val_round: EvalRound | None = None) -> None:
        self.val_round = val_round  # what fit's periodic validation scores (None: no periodic validation)
        self.active: EvalRound | None = None
        self.curve = True
        self.history: list[dict[str, float]] = []
        self.results: dict[str, dict[str, float]] = {}
        self._start = 0.0

    # ------------------------------------------------------------------ rounds outside fit
    def run(self, trainer: L.Trainer, module: L.LightningModule, round_: EvalRound, *, ckpt_path: str | None = None,
            curve: bool = True) -> dict[str, dict[str, float]]:
        """`trainer.validate` on `round_` (every rank calls it); returns {corpus key: metrics}.
        `curve=False`: its val point is not part of the curve (the weights of another step)."""
        self.active, self.curve, self.results = round_, curve, {}
        try:
            trainer.validate(module, datamodule=EvalDataModule(round_), ckpt_path=ckpt_path, verbose=False, weights_only=False)
        finally:
            self.active, self.curve = None, True
        return self.results

    def val_dataloaders(self, trainer: L.Trainer) -> list:
        """The loaders of fit's periodic validation ([] = none)."""
        return self.val_round.dataloaders(trainer.global_rank, trainer.world_size) if self.val_round else []

    # ------------------------------------------------------------------ the loop's hooks
    def _round(self) -> EvalRound:
        round_ = self.active or self.val_round
        assert round_ is not None, "a validation loop ran without an evaluation round"
        return round_

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:  # Lightning's sanity check runs a few batches: nothing to score
            return
        self._start = time.perf_counter()
        self._round().reset(pl_module.device)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._round().update(dataloader_idx, outputs["rows"], outputs["embeddings"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        round_ = self._round()
        self.results = round_.compute()
        seconds = time.perf_counter() - self._start
        if trainer.is_global_zero:  # every rank scored the same numbers: one line, not one per process
            pools = ", ".join(f"{key} {q} questions x {c} candidates" for key in round_.corpora for q, c in [round_.pool_size(key)])
            log.info("validation at step %d (%s) took %.1fs", trainer.global_step, pools, seconds)
        if VAL in self.results and self.curve:
            self._add_point(trainer, pl_module, round_, seconds)

    def _add_point(self, trainer: L.Trainer, pl_module: L.LightningModule, round_: EvalRound, seconds: float) -> None:
        step = trainer.global_step
        if any(row["step"] == step for row in self.history):
            return  # the final round at a step the periodic validation already scored: the same weights
        metrics = self.results[VAL]
        n_queries, n_candidates = round_.pool_size(VAL)
        self.history.append({"step": step, "seconds": seconds, "n_queries": n_queries, "n_candidates": n_candidates,
                             **{f"{VAL}/{k}": v for k, v in aggregate(metrics).items()}})
        logged = {f"{VAL}/{k}": metrics[k] for k in VAL_CURVE_KEYS if k in metrics}
        pl_module.log_dict({**logged, f"{VAL}/seconds": seconds}, on_step=False, on_epoch=True)

    # ------------------------------------------------------------------ checkpoints carry the curve
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
