"""Build a `DualEncoder` from the `model` / `loss` / `optim` configs, fresh or from a finished run.

One place turns configs into a model, so training and `eval.py` can never disagree about
pooling, prefixes or lengths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from batchmix.core.errors import BatchmixError
from batchmix.losses import build_loss
from batchmix.models.dual_encoder import DualEncoder, upgrade_state_dict
from batchmix.models.export import BASE, ENCODING_FIELDS, is_delta, load_delta
from batchmix.models.frozen_weights import restore_frozen
from batchmix.models.loading import load_encoder, load_tokenizer
from batchmix.core.run_dir import CHECKPOINTS, CONFIG, LAST_CHECKPOINT, MODEL, MODEL_INFO, RunDir, read_json

_DEFAULT_LOSS = {"_target_": "batchmix.losses.InfoNCELoss"}  # conf/loss/infonce.yaml without options: its defaults
_DEFAULT_OPTIM = {"lr": 3e-5, "weight_decay": 0.01, "warmup_ratio": 0.1}


def build_dual_encoder(model: Mapping[str, Any], loss: Mapping[str, Any] | None = None, optim: Mapping[str, Any] | None = None) -> DualEncoder:
    """`loss`: a `conf/loss` config (`_target_` + all its options), built by `build_loss`; None: InfoNCE."""
    optim = {**_DEFAULT_OPTIM, **(optim or {})}
    loss_fn = build_loss(loss or _DEFAULT_LOSS)  # cheap, and checks its options before any weight loads
    tokenizer = load_tokenizer(model["name_or_path"])
    encoder = load_encoder(model["name_or_path"], model.get("architecture"))
    module = DualEncoder(
        encoder,
        tokenizer,
        loss_fn,
        pooling=model.get("pooling", "mean"),
        normalize=model.get("normalize", True),
        shared=model.get("shared", True),
        query_prefix=model.get("query_prefix", ""),
        passage_prefix=model.get("passage_prefix", ""),
        query_max_length=model.get("query_max_length", 64),
        passage_max_length=model.get("passage_max_length", 128),
        freeze_embeddings=model.get("freeze_embeddings", False),
        train_top_layers=model.get("train_top_layers"),
        trunk_cache=model.get("trunk_cache", "disk"),
        lr=optim["lr"],
        weight_decay=optim["weight_decay"],
        warmup_ratio=optim["warmup_ratio"],
    )
    if model.get("gradient_checkpointing", False):
        # Recompute activations in backward: ~30% more compute for far less memory. Non-reentrant,
        # so it works when one encoder embeds queries and passages in one step, and under DDP. After
        # the model is built, so a distillation teacher (a copy of the student) keeps it off.
        # transformers >= 5.24 names it activation checkpointing (the old name warns); older releases
        # have only the old name.
        for enc in module.distinct_encoders():
            if hasattr(enc, "activation_checkpointing_enable"):
                enc.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                enc.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if model.get("compile", False):
        _compile(module, model.get("compile_backend", "inductor"))
    return module


def _compile(module: DualEncoder, backend: str) -> None:
    """torch.compile the encoder(s) in place (`nn.Module.compile`: state-dict keys, checkpoints and
    exports are unchanged). dynamic=True: padded lengths change from batch to batch."""
    for encoder in module.distinct_encoders():
        encoder.compile(backend=backend, dynamic=True)


def load_trained(path: str | Path) -> tuple[DualEncoder, dict[str, Any]]:
    """A trained batchmix model from a run dir, its `model/` export, or a Lightning `.ckpt`.

    Returns the model (eval mode) and the run's resolved config (empty if unknown).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BatchmixError(f"checkpoint={str(path)!r} does not exist: give a batchmix run dir, its model/ folder, or a .ckpt file")
    run, ckpt = RunDir.of_model(path), (path if path.is_file() else None)
    cfg = OmegaConf.to_container(run.load_config(), resolve=True) if run.config_file.exists() else {}
    export = path if (path / MODEL_INFO).exists() else run.model_dir
    # The seed training built the model under: a random-init base (model.architecture) is rebuilt equal.
    torch.manual_seed(int(cfg.get("seed", 0)))
    info = read_json(export / MODEL_INFO) if ckpt is None and (export / MODEL_INFO).exists() else None
    if info is not None and is_delta(info):
        # model/ holds what training changed (models/export.py): rebuild the base, check it, load over it.
        fields = {k: info[k] for k in ENCODING_FIELDS if k in info}
        module = build_dual_encoder({**cfg.get("model", {}), **fields, "name_or_path": info[BASE], "compile": False,
                                     "gradient_checkpointing": False})
        load_delta(module, export, info)
    elif info is not None:
        model_cfg = {**cfg.get("model", {}), **info, "name_or_path": str(export), "architecture": None, "freeze_embeddings": False}
        if not info.get("shared", True):
            raise BatchmixError(f"{export} holds separate query/passage towers: evaluate its {CHECKPOINTS}/{LAST_CHECKPOINT} instead")
        module = build_dual_encoder(model_cfg)
    else:
        # A run whose final evaluation read its best checkpoint (eval.final_from=best) is that model.
        final_from_best = (cfg.get("eval") or {}).get("final_from") == "best" and run.best_checkpoint.is_file()
        ckpt = ckpt or (run.best_checkpoint if final_from_best else run.last_checkpoint)
        if not ckpt.exists() or not cfg:
            raise BatchmixError(f"no model found at {path}: expected <run>/{MODEL}/{MODEL_INFO} or "
                                f"<run>/{CHECKPOINTS}/{LAST_CHECKPOINT} with <run>/{CONFIG}")
        loss = {k: v for k, v in cfg.get("loss", {}).items() if k in ("temperature", "learn_temperature")}
        module = build_dual_encoder(  # the encoder and the temperature: no teacher, no GradCache
            {**cfg["model"], "compile": False, "gradient_checkpointing": False}, {**_DEFAULT_LOSS, **loss}
        )
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
        state = upgrade_state_dict(checkpoint["state_dict"])
        restore_frozen(checkpoint, module, source=str(ckpt))  # the frozen weights it does not store
        # The encoder(s) and the temperature; whatever else the training loss held (a teacher, its own
        # parameters) is not needed to encode.
        state = {k: v for k, v in state.items() if not k.startswith("loss_fn.") or k == "loss_fn.log_temperature"}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BatchmixError(
                f"{ckpt} does not match the model of {run.config_file} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}): was the config edited after training?"
            )
    return module.eval(), cfg
