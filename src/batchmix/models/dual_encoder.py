"""DualEncoder: a Hugging Face encoder trained as a bi-encoder retriever with Lightning.

Queries and passages go through the same encoder by default (`shared=True`, as in LaBSE / E5 /
arXiv 2408.10536); `shared=False` gives the passage tower its own copy. Embeddings are pooled
(`cls` or `mean`) and L2-normalised, so a dot product is a cosine.

The loss is a `BatchLoss` built from `conf/loss`; as in sentence-transformers it wraps the model it
is given (`loss.step(model, batch)` embeds the batch with `encode`: batchmix/losses/base.py), so this
module imports nothing from batchmix.losses and never asks which loss trains. Every training step logs
`train/loss`, each part the loss returns (`train/mse`: losses/similarity_mse.py says why) and the same
per batch type (`train/{mono,cross,multi}/loss`, ...); the per-step history is kept on the module (and
in checkpoints) so a run can write it as a tidy CSV.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from batchmix.config.schema import ModelConfig, OptimConfig
from batchmix.core.distributed import world_size
from batchmix.core.errors import BatchmixError
from batchmix.models.frozen_weights import restore_frozen, strip_frozen
from batchmix.models.loading import load_encoder, load_tokenizer
from batchmix.models.pooling import Pooling
from batchmix.models.trunk_cache import TrunkStore, freeze_trunk, top_states, trunk_modules
from batchmix.data.tokenize import tokenize


class DualEncoder(L.LightningModule):
    """`spec`: the encoder(s) and how they embed (`model.*`); `loss`: what trains them (a `batchmix.losses`
    loss, or None for a model that only encodes); `optim`: AdamW with linear warmup and decay (`optim.*`;
    None: not trained). models/factory.py builds the two from their config nodes."""

    def __init__(self, spec: ModelConfig, loss: nn.Module | None = None, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.spec, self.optim = spec, optim
        self.tokenizer = load_tokenizer(spec.name_or_path)
        encoder = load_encoder(spec.name_or_path, spec.architecture)
        self.query_encoder = encoder
        self.passage_encoder = encoder if spec.shared else copy.deepcopy(encoder)
        self.pooler = Pooling(spec.pooling)
        self.normalize = spec.normalize
        self.query_prefix, self.passage_prefix = spec.query_prefix, spec.passage_prefix
        self.query_max_length, self.passage_max_length = spec.query_max_length, spec.passage_max_length
        for enc in (self.query_encoder, self.passage_encoder):
            if getattr(enc, "pooler", None) is not None:
                # BERT-style poolers are unused by cls/mean pooling; frozen so no trainable weight
                # goes without a gradient (which DDP would reject).
                enc.pooler.requires_grad_(False)
        if spec.freeze_embeddings:
            # The 250k-row XLM-R vocabulary is most of a small model's weights; freezing it keeps
            # CPU steps fast and AdamW state small, and barely changes retrieval quality.
            for enc in self.distinct_encoders():
                enc.get_input_embeddings().weight.requires_grad_(False)
        # train_top_layers=K: only the top K layers train; the frozen trunk below runs without dropout
        # and its output is cached per text (models/trunk_cache.py; trunk_cache=off: plain forward).
        self.train_top_layers = spec.train_top_layers
        self.trunk_start: int | None = None
        self.trunk_store: TrunkStore | None = None
        if spec.train_top_layers is not None:
            for enc in self.distinct_encoders():
                self.trunk_start = freeze_trunk(enc, spec.train_top_layers)
            self.trunk_store = None if spec.trunk_cache == "off" else TrunkStore(spec.trunk_cache)
        # The loss (its temperature, and a distillation teacher built in `bind`) is a submodule: it
        # moves with the model, and its state is in the checkpoints (`loss_fn.log_temperature`).
        self.loss_fn = loss
        if loss is not None:
            loss.bind(self)
        self.history: list[dict[str, Any]] = []
        if spec.gradient_checkpointing:
            # Recompute activations in backward: ~30% more compute for far less memory. Non-reentrant,
            # so it works when one encoder embeds queries and passages in one step, and under DDP. After
            # the loss is bound, so a distillation teacher (a copy of the student) keeps it off.
            # transformers >= 5.24 names it activation checkpointing (the old name warns); older releases
            # have only the old name.
            for enc in self.distinct_encoders():
                if hasattr(enc, "activation_checkpointing_enable"):
                    enc.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
                else:
                    enc.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if spec.compile:
            # nn.Module.compile: state-dict keys, checkpoints and exports are unchanged. dynamic=True:
            # padded lengths change from batch to batch.
            for enc in self.distinct_encoders():
                enc.compile(backend=spec.compile_backend, dynamic=True)

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

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.loss_fn.step(self, batch)  # the loss embeds the batch with this model (plain or GradCache)
        self._log_step(batch, out)
        return out.loss

    def _log_step(self, batch: dict[str, Any], out: Any) -> None:
        """train/loss, train/<part> (the loss's `LossOutput`) and the same per batch type (Lightning's
        logger); one history row."""
        loss = out.loss.detach()
        logs = {name: value.detach() for name, value in out.logs.items()}
        btype, gathered = batch["batch_type"], self.loss_fn.gathers
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

    on_validation_end = on_train_epoch_end = flush_trunk_cache  # Lightning's hooks

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
            [{"params": decay, "weight_decay": self.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.optim.lr, **({"foreach": True} if scaled else {"fused": True}),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.optim.warmup_ratio * total), total)
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
