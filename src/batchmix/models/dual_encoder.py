"""DualEncoder: a Hugging Face encoder trained as a bi-encoder retriever with Lightning.

Queries and passages go through the same encoder by default (`shared=True`, as in LaBSE / E5 /
arXiv 2408.10536); `shared=False` gives the passage tower its own copy. Embeddings are pooled
(`cls` or `mean`) and L2-normalised, so a dot product is a cosine.

The loss is a `BatchLoss` built from `conf/loss` (batchmix/losses/base.py: one interface). It owns
its options (temperature, a distillation teacher) and says whether it is in-batch; this module never
asks which loss trains. Every training step logs `train/loss` and each part the loss returns
(`train/mse`, the in-batch similarity MSE logged whatever loss trains, because its convergence per
batch type is what batchmix studies), and the same per batch type (`train/{mono,cross,multi}/loss`,
`.../mse`). The per-step history is kept on the module (and in checkpoints) so a run can write it as
a tidy CSV.

Scale switches (arXiv 2408.10536 trains with batch 100): under DDP the embeddings of every rank
are all-gathered with gradients for an in-batch loss (`loss.gather=true`), so the in-batch negatives
are the global batch; `loss.cache_chunk=N` computes an in-batch loss with GradCache
(losses/grad_cache.py), so a batch of 256 needs the activation memory of N.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import lightning as L
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from batchmix.core.distributed import gather_padded, gather_with_grad, world_size
from batchmix.core.errors import BatchmixError
from batchmix.losses import BatchLoss, LossOutput
from batchmix.losses.false_negatives import CANDIDATE_PAD, QUERY_PAD, mask_keys, stack_rows
from batchmix.models.frozen_weights import restore_frozen, strip_frozen
from batchmix.losses.grad_cache import grad_cached_loss
from batchmix.models.pooling import Pooling
from batchmix.models.trunk_cache import TrunkStore, freeze_trunk, top_states, trunk_modules
from batchmix.data.tokenize import tokenize


class DualEncoder(L.LightningModule):
    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        loss: BatchLoss,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        shared: bool = True,
        query_prefix: str = "",
        passage_prefix: str = "",
        query_max_length: int = 64,
        passage_max_length: int = 128,
        freeze_embeddings: bool = False,
        train_top_layers: int | None = None,
        trunk_cache: str = "disk",
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        self.query_encoder = encoder
        self.passage_encoder = encoder if shared else copy.deepcopy(encoder)
        self.tokenizer = tokenizer
        self.pooler = Pooling(pooling)
        self.normalize = normalize
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.query_max_length, self.passage_max_length = query_max_length, passage_max_length
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        for enc in (self.query_encoder, self.passage_encoder):
            if getattr(enc, "pooler", None) is not None:
                # BERT-style poolers are unused by cls/mean pooling; frozen so no trainable weight
                # goes without a gradient (which DDP would reject).
                enc.pooler.requires_grad_(False)
        if freeze_embeddings:
            # The 250k-row XLM-R vocabulary is most of a small model's weights; freezing it keeps
            # CPU steps fast and AdamW state small, and barely changes retrieval quality.
            for enc in self.distinct_encoders():
                enc.get_input_embeddings().weight.requires_grad_(False)
        # train_top_layers=K: only the top K layers train; the frozen trunk below runs without dropout
        # and its output is cached per text (models/trunk_cache.py; trunk_cache=off: plain forward).
        self.train_top_layers = train_top_layers
        self.trunk_start: int | None = None
        self.trunk_store: TrunkStore | None = None
        if train_top_layers is not None:
            for enc in self.distinct_encoders():
                self.trunk_start = freeze_trunk(enc, train_top_layers)
            self.trunk_store = None if trunk_cache == "off" else TrunkStore(trunk_cache)
        # The loss (its temperature, and a distillation teacher built in `bind`) is a submodule: it
        # moves with the model, and its state is in the checkpoints (`loss_fn.log_temperature`).
        self.loss_fn = loss
        loss.bind(self)
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ encoding
    def distinct_encoders(self) -> list[PreTrainedModel]:
        """The query encoder, and the passage encoder when it is not the same one (`shared=False`)."""
        return list({id(self.query_encoder): self.query_encoder, id(self.passage_encoder): self.passage_encoder}.values())

    @property
    def pooling(self) -> str:
        """`cls` or `mean`: what `model.pooling` set and `model/batchmix.json` records."""
        return self.pooler.pooling_mode

    @property
    def temperature(self) -> torch.Tensor:
        return self.loss_fn.temperature

    def encode(self, features: dict[str, torch.Tensor], tower: str = "query", model: nn.Module | None = None) -> torch.Tensor:
        encoder = model or (self.query_encoder if tower == "query" else self.passage_encoder)
        if model is None and self.trunk_store is not None:  # the frozen trunk's states from the cache, then the top layers
            ids, mask = features["input_ids"], features["attention_mask"]
            hidden = top_states(encoder, self.trunk_store.states(encoder, self.trunk_start, ids, mask), mask, self.trunk_start)
        else:
            hidden = encoder(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).last_hidden_state
        emb = self.pooler(hidden, features["attention_mask"])
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def tokenize(self, texts: list[str], tower: str) -> dict[str, torch.Tensor]:
        prefix = self.query_prefix if tower == "query" else self.passage_prefix
        max_length = self.query_max_length if tower == "query" else self.passage_max_length
        return tokenize(self.tokenizer, texts, prefix, max_length)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], tower: str = "query", batch_size: int = 64, desc: str | bool | None = None) -> torch.Tensor:
        """Embed raw texts (prefix added) in eval mode; returns a CPU float32 tensor [N, H]."""
        was_training = self.training
        self.eval()
        # Sort by length so each padded batch wastes little compute; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[torch.Tensor] = []
        # A bar with an ETA on a terminal (disable=None: none in CI logs); desc=False: the caller shows its own.
        for start in tqdm(range(0, len(texts), batch_size), desc=desc or f"encode {tower}", unit="batch", leave=False,
                          disable=True if desc is False else None):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            feats = {k: v.to(self.device) for k, v in self.tokenize(chunk, tower).items()}
            out.append(self.encode(feats, tower).float().cpu())
        self.train(was_training)
        self.flush_trunk_cache()
        if not out:
            return torch.empty(0, self.query_encoder.config.hidden_size)
        emb = torch.cat(out)
        result = torch.empty_like(emb)
        result[torch.tensor(order)] = emb
        return result

    @torch.inference_mode()
    def fill_trunk_cache(self, texts: list[str], tower: str = "query", batch_size: int = 64, desc: str | None = None) -> None:
        """Compute and cache the frozen-trunk states of `texts` without running the trained top layers
        (what `batchmix.run.warm` needs: the runs compute the top layers themselves)."""
        if self.trunk_store is None or self.trunk_start is None:
            raise BatchmixError("fill_trunk_cache needs model.train_top_layers=K with a trunk cache (model.trunk_cache=disk or memory)")
        encoder = self.query_encoder if tower == "query" else self.passage_encoder
        ordered = sorted(texts, key=len)  # little padding per batch, as in encode_texts
        for start in tqdm(range(0, len(ordered), batch_size), desc=desc or f"trunk {tower}", unit="batch", leave=False,
                          disable=None):  # a bar on a terminal only
            feats = {k: v.to(self.device) for k, v in self.tokenize(ordered[start : start + batch_size], tower).items()}
            self.trunk_store.fill(encoder, self.trunk_start, feats["input_ids"], feats["attention_mask"])
        self.flush_trunk_cache()

    @property
    def embedding_dim(self) -> int:
        """The width of an embedding (cls and mean pooling keep the encoder's hidden size)."""
        return int(self.query_encoder.config.hidden_size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Embed one batch of an evaluation round's texts (`batchmix.eval.rounds`) on the run's device and
        precision; `batchmix.eval.validation.LAReQAValidation` gathers and scores them."""
        return {"rows": batch["rows"], "embeddings": self.encode(batch["features"], batch["tower"]).float()}

    def encoders(self, batch_size: int = 64) -> tuple[Callable[[list[str]], torch.Tensor], Callable[[list[str]], torch.Tensor]]:
        """(encode_queries, encode_passages) callables for the evaluator (which shows its own progress)."""
        return (lambda texts: self.encode_texts(texts, "query", batch_size, desc=False),
                lambda texts: self.encode_texts(texts, "passage", batch_size, desc=False))

    # ------------------------------------------------------------------ training
    def gather_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's embeddings, with gradients, under DDP for an in-batch loss with `gather=True`; else `x`."""
        return gather_with_grad(x) if self.loss_fn.in_batch and self.loss_fn.gather else x

    def with_mask_keys(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch plus the keys the loss's false-negative mask compares (`false_negatives.mask_keys`):
        `query_keys` [B, Wq] and `candidate_keys` [B + M, Wc] (the positives, then the hard negatives),
        all-gathered like the embeddings under DDP. A batch without `ids`, or `loss.mask=none`, is
        returned as it is."""
        keys = mask_keys(batch, self.loss_fn.mask) if self.loss_fn.in_batch else None  # a per-example loss has no candidates to mask
        if keys is None:
            return batch
        gathered = self.loss_fn.in_batch and self.loss_fn.gather

        def rows(x: torch.Tensor, pad: int) -> torch.Tensor:
            x = x.to(self.device)
            return gather_padded(x, pad) if gathered else x

        query, candidates = keys
        return {**batch, "query_keys": rows(query, QUERY_PAD), "candidate_keys": stack_rows([rows(c, CANDIDATE_PAD) for c in candidates])}

    def candidates(self, positives: torch.Tensor, negatives: torch.Tensor | None) -> torch.Tensor:
        """What the loss scores each query against: the (gathered) positives, then the (gathered) hard
        negatives, in the order of `with_mask_keys`."""
        p = self.gather_embeddings(positives)
        return p if negatives is None else torch.cat([p, self.gather_embeddings(negatives)])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        batch = self.with_mask_keys(batch)
        if self.loss_fn.cache_chunk is not None:
            out = grad_cached_loss(self, batch, self.loss_fn.cache_chunk)
        else:
            q = self.gather_embeddings(self.encode(batch["query"], "query"))  # under DDP: the global batch's negatives
            n = self.encode(batch["negative"], "passage") if "negative" in batch else None
            out = self.loss_fn(q, self.candidates(self.encode(batch["positive"], "passage"), n), batch)
        self._log_step(batch, out)
        return out.loss

    def _log_step(self, batch: dict[str, Any], out: LossOutput) -> None:
        """train/loss, train/<part> and the same per batch type (Lightning's logger); one history row."""
        loss = out.loss.detach()
        logs = {name: value.detach() for name, value in out.logs.items()}
        btype, gathered = batch["batch_type"], self.loss_fn.in_batch and self.loss_fn.gather
        bs = len(batch["query"]["input_ids"]) * (world_size() if gathered else 1)  # the rows the loss saw
        self.log_dict(
            {"train/loss": loss, **{f"train/{k}": v for k, v in logs.items()},
             f"train/{btype}/loss": loss, **{f"train/{btype}/{k}": v for k, v in logs.items()}},
            on_step=True, on_epoch=False, batch_size=bs, prog_bar=False,
        )
        self.log("train/temperature", self.temperature.detach(), on_step=True, on_epoch=False, batch_size=bs)
        self.history.append(
            {
                "step": int(self.global_step),
                "epoch": int(self.current_epoch),
                "batch_type": btype,
                "loss": float(loss),
                **{k: float(v) for k, v in logs.items()},
                "lr": float(self.optimizers().param_groups[0]["lr"]) if self.attached_trainer() is not None else float("nan"),
                "temperature": float(self.temperature.detach()),
            }
        )

    def attached_trainer(self) -> L.Trainer | None:
        """The Trainer running this module, or None outside `fit` (Lightning's `trainer` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def train(self, mode: bool = True) -> "DualEncoder":
        """Lightning's / torch's train(); a frozen trunk (train_top_layers) stays in eval mode, without
        dropout, so its output depends on the text alone and can be cached."""
        super().train(mode)
        self._trunk_eval()
        return self

    def _trunk_eval(self) -> None:
        if self.trunk_start is not None:
            for enc in self.distinct_encoders():
                for module in trunk_modules(enc, self.trunk_start):
                    module.eval()

    def flush_trunk_cache(self) -> None:
        """Write the trunk states computed since the last flush to the disk cache (every run of a sweep reads them)."""
        if self.trunk_store is not None:
            self.trunk_store.flush()

    def on_validation_end(self) -> None:
        self.flush_trunk_cache()

    def on_train_epoch_end(self) -> None:
        self.flush_trunk_cache()

    def on_fit_start(self) -> None:
        # `from_pretrained` returns encoders in eval mode and Lightning (>= 2.2) keeps submodule
        # modes, so without this a pretrained model would fine-tune with dropout off (HF's Trainer
        # and sentence-transformers train with it on). The distillation teacher stays frozen in eval.
        self.query_encoder.train()
        self.passage_encoder.train()
        self._trunk_eval()  # ... except a frozen trunk

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:  # frozen: embeddings (freeze_embeddings), pooler, a distillation teacher
                continue
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)  # ndim < 2: biases, the temperature
        # fused: one kernel for all tensors instead of a per-tensor loop: 4-5x faster optimizer steps on
        # a CPU, the whole throughput gap to sentence-transformers (benchmarks/RESULTS.md). Not under
        # 16-mixed: a fused optimizer unscales the loss-scaled gradients inside its step, after
        # clipping would have seen them scaled; there the multi-tensor `foreach` kernels are used.
        trainer = self.attached_trainer()
        scaled = trainer is not None and str(trainer.precision) == "16-mixed"
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr, **({"foreach": True} if scaled else {"fused": True}),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for any fused optimizer, scaler or not.
        # bf16-mixed has no loss scaler, so the gradients are already the true ones: clip them here.
        if gradient_clip_val and str(self.trainer.precision) == "bf16-mixed":
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if gradient_clip_algorithm in (None, "norm"):
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # ------------------------------------------------------------------ checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["batchmix_history"] = self.history
        # Frozen weights (word embeddings, a distillation teacher) are not stored, only their hashes
        # (models/frozen_weights.py); hashed once per module, as they never change.
        self._frozen_hashes = strip_frozen(checkpoint, self, getattr(self, "_frozen_hashes", None))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("batchmix_history", []))
        upgrade_state_dict(checkpoint["state_dict"])  # Lightning loads the state dict after this hook
        restore_frozen(checkpoint, self)  # ... complete again: the frozen weights from this module's base model


def upgrade_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Rename, in place, the keys of a checkpoint written before the loss owned the temperature and
    the distillation teacher (`log_temperature`, `teacher.*`) to where they live now (`loss_fn.`)."""
    for key in [k for k in state if k == "log_temperature" or k.startswith("teacher.")]:
        state[f"loss_fn.{key}"] = state.pop(key)
    return state
