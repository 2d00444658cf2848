"""Build a `DualEncoder` from the `model` / `loss` / `optim` configs, fresh or from a finished run.

One place turns configs into a model, so training and `eval.py` can never disagree about
pooling, prefixes or lengths.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import OmegaConf

from batchmix.errors import BatchmixError
from batchmix.losses import build_loss
from batchmix.models.dual_encoder import DualEncoder
from batchmix.models.loading import load_encoder, load_tokenizer
from batchmix.run_dir import CHECKPOINTS, CONFIG, LAST_CHECKPOINT, MODEL, MODEL_INFO, RunDir, read_json

_DEFAULT_LOSS = {"name": "infonce", "temperature": 0.05, "learn_temperature": False, "symmetric": False, "gather": True, "cache_chunk": None}
_DEFAULT_OPTIM = {"lr": 3e-5, "weight_decay": 0.01, "warmup_ratio": 0.1}


def build_dual_encoder(model: Mapping[str, Any], loss: Mapping[str, Any] | None = None, optim: Mapping[str, Any] | None = None) -> DualEncoder:
    loss = {**_DEFAULT_LOSS, **(loss or {})}
    optim = {**_DEFAULT_OPTIM, **(optim or {})}
    tokenizer = load_tokenizer(model["name_or_path"])
    encoder = load_encoder(model["name_or_path"], model.get("architecture"))
    teacher = None
    if loss["name"] == "distill_mse":
        # Reimers & Gurevych (2020): the teacher is the model as it was before training, frozen.
        teacher = load_encoder(loss["teacher"]) if loss.get("teacher") else copy.deepcopy(encoder)
    if model.get("gradient_checkpointing", False):
        # Recompute activations in backward: ~30% more compute for far less memory. Non-reentrant,
        # so it works when one encoder embeds queries and passages in one step, and under DDP.
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = DualEncoder(
        encoder,
        tokenizer,
        build_loss(loss["name"], **({"symmetric": loss.get("symmetric", False)} if loss["name"] == "infonce" else {})),
        pooling=model.get("pooling", "mean"),
        normalize=model.get("normalize", True),
        shared=model.get("shared", True),
        query_prefix=model.get("query_prefix", ""),
        passage_prefix=model.get("passage_prefix", ""),
        query_max_length=model.get("query_max_length", 64),
        passage_max_length=model.get("passage_max_length", 128),
        temperature=loss["temperature"],
        learn_temperature=loss.get("learn_temperature", False),
        freeze_embeddings=model.get("freeze_embeddings", False),
        lr=optim["lr"],
        weight_decay=optim["weight_decay"],
        warmup_ratio=optim["warmup_ratio"],
        teacher=teacher,
        gather=loss.get("gather", True),
        cache_chunk=loss.get("cache_chunk"),
    )
    if model.get("compile", False):
        _compile(module, model.get("compile_backend", "inductor"))
    return module


def _compile(module: DualEncoder, backend: str) -> None:
    """torch.compile the encoder(s) in place (`nn.Module.compile`: state-dict keys, checkpoints and
    exports are unchanged). dynamic=True: padded lengths change from batch to batch."""
    encoders = {id(module.query_encoder): module.query_encoder, id(module.passage_encoder): module.passage_encoder}
    for encoder in encoders.values():
        encoder.compile(backend=backend, dynamic=True)


def load_trained(path: str | Path) -> tuple[DualEncoder, dict[str, Any]]:
    """A trained batchmix model from a run dir, its `model/` export, or a Lightning `.ckpt`.

    Returns the model (eval mode) and the run's resolved config (empty if unknown).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BatchmixError(f"checkpoint={str(path)!r} does not exist: give a batchmix run dir, its model/ folder, or a .ckpt file")
    if path.is_file():
        run, ckpt = RunDir(path.parent.parent), path
    elif (path / MODEL_INFO).exists():
        run, ckpt = RunDir(path.parent), None
    else:
        run, ckpt = RunDir(path), None
    cfg = OmegaConf.to_container(run.load_config(), resolve=True) if run.config_file.exists() else {}
    export = path if (path / MODEL_INFO).exists() else run.model_dir
    if ckpt is None and (export / MODEL_INFO).exists():
        info = read_json(export / MODEL_INFO)
        model_cfg = {**cfg.get("model", {}), **info, "name_or_path": str(export), "architecture": None, "freeze_embeddings": False}
        if not info.get("shared", True):
            raise BatchmixError(f"{export} holds separate query/passage towers: evaluate its {CHECKPOINTS}/{LAST_CHECKPOINT} instead")
        module = build_dual_encoder(model_cfg)
    else:
        ckpt = ckpt or run.last_checkpoint
        if not ckpt.exists() or not cfg:
            raise BatchmixError(f"no model found at {path}: expected <run>/{MODEL}/{MODEL_INFO} or "
                                f"<run>/{CHECKPOINTS}/{LAST_CHECKPOINT} with <run>/{CONFIG}")
        module = build_dual_encoder(
            {**cfg["model"], "compile": False, "gradient_checkpointing": False},
            {**cfg.get("loss", {}), "name": "infonce", "cache_chunk": None},
        )
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("teacher.")}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BatchmixError(
                f"{ckpt} does not match the model of {run.config_file} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}): was the config edited after training?"
            )
    return module.eval(), cfg
