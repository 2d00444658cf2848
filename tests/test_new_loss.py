"""A new loss is one class and a `_target_`: this file writes VSE++'s hardest-negative hinge (Faghri et
al. 2018, "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives") as a `BatchLoss` here,
without touching any batchmix source or config file, and checks that it is built from a config with
its options checked in one line, that its value and the false-negative mask match a hand
computation, that GradCache gives it the same gradients as the plain step, and that the real recipe
trains with it and logs what it adds (`train/violations`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import Tensor

from batchmix.core.errors import BatchmixError
from batchmix.losses import BatchLoss, LossOutput, build_loss
from batchmix.losses.base import MASK
from batchmix.losses.infonce import InfoNCELoss
from loss_options import loss_options

TARGET = f"{__name__}.HardestNegativeLoss"
COMMON = loss_options("mse")  # exactly the options every loss shares (temperature, mask, gather, ...)


class HardestNegativeLoss(BatchLoss):
    """mean_i max(0, margin - s_ii + max_{j != i, not masked} s_ij), s = q @ p.T (cosines)."""

    def __init__(self, margin: float = 0.2, **common: Any) -> None:
        super().__init__(**common)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin <= 2:
            raise BatchmixError(f"loss.margin={margin!r} must be a number in (0, 2] (e.g. 0.2)")
        self.margin = margin

    def compute(self, q: Tensor, p: Tensor, batch: dict[str, Any]) -> LossOutput:
        s = q.float() @ p.float().T
        b = q.shape[0]
        out = torch.eye(b, s.shape[1], dtype=torch.bool, device=s.device)  # the positives
        masked = batch.get(MASK)
        if masked is not None:
            out |= masked
        hardest = s.masked_fill(out, float("-inf")).max(dim=1).values
        hinge = (self.margin - s.diagonal() + hardest).clamp(min=0)
        return LossOutput(hinge.mean(), {"violations": (hinge > 0).float().mean().detach()})


def _pairs(seed: int = 0, b: int = 4, d: int = 8) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(b, d, generator=gen), dim=1), F.normalize(torch.randn(b, d, generator=gen), dim=1))


def test_it_is_built_from_its_config_and_checks_its_option():
    loss = build_loss({"_target_": TARGET, "margin": 0.3, **COMMON})
    assert isinstance(loss, HardestNegativeLoss) and loss.margin == 0.3
    with pytest.raises(BatchmixError, match=r"loss.margin=5 must be a number in \(0, 2\]"):
        build_loss({"_target_": TARGET, "margin": 5, **COMMON})


def test_value_and_mask_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.6, 0.8], [0.8, 0.6]])  # s = [[.6, .8], [.8, .6]]: each query's negative beats its positive
    loss = HardestNegativeLoss(margin=0.2, **COMMON)
    out = loss(q, p)
    assert out.loss.item() == pytest.approx(0.4)  # max(0, .2 - .6 + .8) = .4 for both queries
    assert out.logs["violations"].item() == 1.0 and "mse" in out.logs  # the base adds the logged MSE
    # the other row answers query 0 too (a false negative): masked, query 0 has no negative left
    masked = torch.tensor([[False, True], [False, False]])
    assert loss(q, p, {MASK: masked}).loss.item() == pytest.approx(0.2)  # (0 + .4) / 2


class _Model(torch.nn.Module):
    """The least a loss needs from a model (`EncodingModel`): a linear encoder over feature vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.device = torch.device("cpu")

    def encode(self, features: dict[str, Tensor], tower: str = "query") -> Tensor:
        return F.normalize(self.proj(features["input_ids"]), dim=1)  # GradCache chunks by input_ids


def test_gradcache_gives_the_plain_gradients():
    q, p = _pairs(1, b=6)
    batch = {"query": {"input_ids": q}, "positive": {"input_ids": p}}
    grads = []
    for chunk in (None, 2):
        torch.manual_seed(0)
        model = _Model()
        out = HardestNegativeLoss(margin=0.5, **{**COMMON, "cache_chunk": chunk}).step(model, batch)
        out.loss.backward()
        grads.append(torch.cat([g.grad.flatten() for g in model.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_recipe_trains_with_it_and_logs_its_parts(tmp_path, xquad_root):
    from batchmix.config import CONF_DIR
    from batchmix.run.train import train

    overrides = ["model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=4",
                 "save_model=false", "logger=csv", "eval.before=false", "eval.val_every_n_steps=0",
                 f"loss._target_={TARGET}", "+loss.margin=0.3", "~loss.symmetric"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    train(cfg, tmp_path)
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert {"train/violations", "train/loss", "train/mse"} <= set(logged.columns)
    assert logged["train/violations"].dropna().between(0, 1).all()
    hist = pd.read_csv(tmp_path / "history.csv")
    assert len(hist) == 4 and hist["loss"].notna().all()
    assert not isinstance(build_loss(cfg.loss), InfoNCELoss)
