"""Build a `DualEncoder` from the `model` / `optim` configs and a loss, fresh or from a finished run.

One place turns configs into a model, so training and `eval.py` can never disagree about
pooling, prefixes or lengths.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from batchmix.config.legacy import upgrade
from batchmix.config.schema import ModelConfig, OptimConfig
from batchmix.core.errors import BatchmixError
from batchmix.models.dual_encoder import DualEncoder, upgrade_state_dict
from batchmix.models.export import BASE, ENCODING_FIELDS, load_delta
from batchmix.models.frozen_weights import restore_frozen
from batchmix.core.run_dir import CHECKPOINTS, CONFIG, LAST_CHECKPOINT, MODEL, MODEL_INFO, RunDir, read_json

Node = Mapping[str, Any]


def build_dual_encoder(model: Node, loss: Any = None, optim: Node | None = None) -> DualEncoder:
    """A model from its `model` node; with a loss (`batchmix.losses.build_loss(cfg.loss)`: the loss
    wraps the model, so models/ never imports losses/) and an `optim` node, one that trains. Without
    them it only encodes."""
    optim_config = _typed(OptimConfig, "optim", optim) if optim is not None else None
    return DualEncoder(_typed(ModelConfig, "model", model), loss, optim_config)


def _typed(schema: type, key: str, node: Node) -> Any:
    """`node` as its schema's dataclass (other keys are ignored). The schema's defaults are not used:
    every value is written once, in the config, and a node that lacks one is a one-line error naming
    it rather than a value made up here."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    missing = [f.name for f in fields(schema) if f.name not in values]
    if missing:
        raise BatchmixError(f"the {key} config has no {', '.join(f'{key}.{m}' for m in missing)}: "
                            f"give it (conf/{key}/*.yaml lists every option)")
    return schema(**{f.name: values[f.name] for f in fields(schema)})


def _saved_model(cfg: Node) -> dict[str, Any]:
    """A saved run config's `model` node as today's code reads it: a key added since at its legacy value."""
    saved = {f"model.{k}": v for k, v in (cfg.get("model") or {}).items()}
    present = {f"model.{f.name}" for f in fields(ModelConfig)}
    return {k.removeprefix("model."): v for k, v in upgrade(saved, present)[0].items()} if saved else {}


def load_trained(path: str | Path, model: Node | None = None) -> tuple[DualEncoder, dict[str, Any]]:
    """A trained batchmix model from a run dir, its `model/` export, or a Lightning `.ckpt`.

    Returns the model (eval mode, without a loss) and the run's resolved config (empty if unknown).
    `model`: a `model` node for what neither the run's config.yaml nor `model/batchmix.json` says
    (a model/ folder copied away from its run: its max lengths).
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
    base = {**(OmegaConf.to_container(OmegaConf.create(dict(model)), resolve=True) if model is not None else {}), **_saved_model(cfg)}
    encode_only = {"compile": False, "gradient_checkpointing": False}
    if info is not None and BASE in info:
        # model/ holds what training changed (models/export.py): rebuild the base, check it, load over it.
        fields = {k: info[k] for k in ENCODING_FIELDS if k in info}
        module = build_dual_encoder({**base, **fields, "name_or_path": info[BASE], **encode_only})
        load_delta(module, export, info)
    elif info is not None:
        model_cfg = {**base, **info, "name_or_path": str(export), "architecture": None, "freeze_embeddings": False}
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
        module = build_dual_encoder({**base, **encode_only})  # the encoder(s) only: no loss, no teacher
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
        state = upgrade_state_dict(checkpoint["state_dict"])
        restore_frozen(checkpoint, module, source=str(ckpt))  # the frozen weights it does not store
        # The encoder(s); what the training loss held (its temperature, a teacher) is not needed to encode.
        state = {k: v for k, v in state.items() if not k.startswith("loss_fn.")}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BatchmixError(
                f"{ckpt} does not match the model of {run.config_file} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}): was the config edited after training?"
            )
    return module.eval(), cfg
