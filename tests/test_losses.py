"""Losses: hand-computed values, agreement with reference formulas, gradients, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.losses import (
    DistillMSELoss,
    InfoNCELoss,
    LossOutput,
    SimilarityMSELoss,
    build_loss,
    loss_names,
)
from batchmix.losses.base import similarity_mse
from batchmix.losses.distill_mse import distill_mse
from batchmix.losses.infonce import info_nce
from loss_options import loss_options

# A 2×2 case small enough to do by hand. Rows are unit vectors:
#   q0 = (1, 0), q1 = (0, 1);  p0 = (0.6, 0.8), p1 = (0, 1)
# so the cosine matrix S = q @ p.T is [[0.6, 0.0], [0.8, 1.0]].
Q_HAND = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P_HAND = torch.tensor([[0.6, 0.8], [0.0, 1.0]])


def random_unit_rows(batch_size: int, dim: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch_size, dim, generator=generator, dtype=dtype), dim=-1)


def multiple_negatives_ranking_loss(q: torch.Tensor, p: torch.Tensor, scale: float, symmetric: bool) -> torch.Tensor:
    """sentence-transformers' MultipleNegativesRankingLoss (v6) restated: cos_sim * scale, then
    -(positive score - logsumexp) averaged; its symmetric form (directions=query_to_doc+doc_to_query,
    partition_mode="per_direction") averages the two logsumexps. Restated rather than imported
    because importing sentence-transformers takes ~8 s."""
    scores = (F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T) * scale
    positive_scores = scores.diagonal()
    log_z = torch.logsumexp(scores, dim=1)
    if symmetric:
        log_z = (log_z + torch.logsumexp(scores.T, dim=1)) / 2
    return -(positive_scores - log_z).mean()


# --- InfoNCE ---------------------------------------------------------------------------------


def test_infonce_hand_computed_value():
    # τ = 0.5 → logits [[1.2, 0.0], [1.6, 2.0]]; row i's target is column i.
    row0 = -1.2 + math.log(math.exp(1.2) + math.exp(0.0))
    row1 = -2.0 + math.log(math.exp(1.6) + math.exp(2.0))
    loss = info_nce(Q_HAND, P_HAND, temperature=0.5)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_infonce_symmetric_hand_computed_value():
    # passage→query direction: column j of the logits, target row j.
    col0 = -1.2 + math.log(math.exp(1.2) + math.exp(1.6))
    col1 = -2.0 + math.log(math.exp(0.0) + math.exp(2.0))
    row0 = -1.2 + math.log(math.exp(1.2) + math.exp(0.0))
    row1 = -2.0 + math.log(math.exp(1.6) + math.exp(2.0))
    expected = ((row0 + row1) / 2 + (col0 + col1) / 2) / 2
    loss = info_nce(Q_HAND, P_HAND, temperature=0.5, symmetric=True)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("temperature", [0.02, 0.05, 1.0])
def test_infonce_matches_cross_entropy(temperature):
    q, p = random_unit_rows(9, 32, seed=1), random_unit_rows(9, 32, seed=2)
    expected = F.cross_entropy(torch.einsum("id,jd->ij", q, p) / temperature, torch.arange(9))
    assert info_nce(q, p, temperature).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("temperature", [0.05, 0.1])
def test_infonce_matches_sentence_transformers_mnrl(symmetric, temperature):
    q, p = random_unit_rows(16, 24, seed=3), random_unit_rows(16, 24, seed=4)
    expected = multiple_negatives_ranking_loss(q, p, scale=1 / temperature, symmetric=symmetric)
    loss = info_nce(q, p, temperature, symmetric=symmetric)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_infonce_symmetric_is_mean_of_both_directions():
    q, p = random_unit_rows(6, 8, seed=5), random_unit_rows(6, 8, seed=6)
    one_way = InfoNCELoss(**loss_options("infonce", temperature=0.1))
    expected = (one_way(q, p).loss + one_way(p, q).loss) / 2
    assert info_nce(q, p, 0.1, symmetric=True).item() == pytest.approx(expected.item(), rel=1e-6)
    assert one_way(q, p).loss.item() != pytest.approx(one_way(p, q).loss.item(), rel=1e-3)


def test_infonce_is_lower_for_aligned_pairs():
    q = random_unit_rows(8, 16, seed=7)
    aligned = info_nce(q, q, 0.05)
    shuffled = info_nce(q, q.roll(1, dims=0), 0.05)
    assert aligned.item() < 0.1 < shuffled.item()


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_gradients_reach_inputs_and_learnable_temperature(symmetric):
    q = random_unit_rows(5, 8, seed=8).requires_grad_()
    p = random_unit_rows(5, 8, seed=9).requires_grad_()
    log_scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))  # model-owned, τ = exp(-log_scale)
    loss = info_nce(q, p, temperature=torch.exp(-log_scale), symmetric=symmetric)
    loss.backward()
    for grad in (q.grad, p.grad, log_scale.grad):
        assert grad is not None and torch.isfinite(grad).all()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0 and log_scale.grad.abs() > 0


def test_infonce_gradcheck_float64():
    q = random_unit_rows(4, 3, seed=10, dtype=torch.float64).requires_grad_()
    p = random_unit_rows(4, 3, seed=11, dtype=torch.float64).requires_grad_()
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, t: info_nce(a, b, t, symmetric=True), (q, p, temperature))


def test_infonce_batch_of_one_is_zero_with_zero_gradient():
    q = random_unit_rows(1, 8, seed=12).requires_grad_()
    p = random_unit_rows(1, 8, seed=13).requires_grad_()
    loss = info_nce(q, p, 0.05, symmetric=True)
    loss.backward()
    assert loss.item() == 0.0  # one candidate: softmax is 1, there are no negatives
    assert torch.equal(q.grad, torch.zeros_like(q)) and torch.equal(p.grad, torch.zeros_like(p))


def test_infonce_bfloat16_input_gives_float32_scalar_close_to_float32_loss():
    q, p = random_unit_rows(8, 64, seed=14), random_unit_rows(8, 64, seed=15)
    loss_bf16 = info_nce(q.bfloat16(), p.bfloat16(), 0.05)
    assert loss_bf16.shape == () and loss_bf16.dtype == torch.float32
    assert loss_bf16.item() == pytest.approx(info_nce(q, p, 0.05).item(), rel=2e-2)


def test_infonce_rejects_bad_shapes_and_temperature():
    q = random_unit_rows(4, 8, seed=16)
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(3, 8\)"):
        info_nce(q, q[:3], 0.05)
    with pytest.raises(ValueError, match=r"candidates \[B \+ M, D\]"):
        info_nce(q[0], q[0], 0.05)
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(6, 4\)"):
        info_nce(q, random_unit_rows(6, 4, seed=1), 0.05)
    with pytest.raises(BatchmixError, match="temperature=0.0 must be > 0"):
        info_nce(q, q, 0.0)


# --- similarity-matrix MSE -------------------------------------------------------------------


def test_similarity_mse_hand_computed_value():
    # S - I = [[0.6 - 1, 0.0], [0.8, 1.0 - 1]] → squares 0.16 + 0 + 0.64 + 0 over 4 entries
    assert similarity_mse(Q_HAND, P_HAND).item() == pytest.approx(0.8 / 4, abs=1e-6)
    assert SimilarityMSELoss(**loss_options("mse"))(Q_HAND, P_HAND).loss.item() == pytest.approx(0.2, abs=1e-6)


def test_similarity_mse_is_zero_for_orthonormal_pairs_and_ignores_temperature():
    q = torch.eye(5, 7)
    assert similarity_mse(q, q).item() == 0.0
    p = random_unit_rows(5, 7, seed=17)
    assert SimilarityMSELoss(**loss_options("mse", temperature=0.5))(q, p).loss.item() == pytest.approx(similarity_mse(q, p).item())


def test_similarity_mse_batch_of_one():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])
    assert similarity_mse(q, p).item() == pytest.approx((0.6 - 1.0) ** 2, abs=1e-6)


def test_similarity_mse_gradient_and_dtypes():
    q = random_unit_rows(6, 8, seed=18).requires_grad_()
    p = random_unit_rows(6, 8, seed=19).requires_grad_()
    SimilarityMSELoss(**loss_options("mse"))(q, p).loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0 and torch.isfinite(p.grad).all()
    value_bf16 = similarity_mse(q.detach().bfloat16(), p.detach().bfloat16())
    assert value_bf16.shape == () and value_bf16.dtype == torch.float32
    assert value_bf16.item() == pytest.approx(similarity_mse(q.detach(), p.detach()).item(), rel=2e-2)
    with pytest.raises(ValueError, match=r"candidates \[B \+ M, D\]"):
        similarity_mse(q, p[:, :4])


# --- distillation MSE ------------------------------------------------------------------------


def test_distill_mse_hand_computed_value_and_teacher_gets_no_gradient():
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0], [3.0, 5.0]], requires_grad=True)
    loss = distill_mse(student, teacher)
    # differences 0, 2, 0, -1 → (0 + 4 + 0 + 1) / 4
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    assert teacher.grad is None
    # d/ds mean((s - t)²) = 2 (s - t) / 4
    assert torch.allclose(student.grad, torch.tensor([[0.0, 1.0], [0.0, -0.5]]))


def test_distill_mse_dtypes_and_shapes():
    student, teacher = random_unit_rows(3, 8, seed=20), random_unit_rows(3, 8, seed=21)
    loss_bf16 = distill_mse(student.bfloat16(), teacher)
    assert loss_bf16.shape == () and loss_bf16.dtype == torch.float32
    assert loss_bf16.item() == pytest.approx(distill_mse(student, teacher).item(), rel=2e-2)
    with pytest.raises(ValueError, match=r"\(3, 8\) and \(1, 8\)"):
        distill_mse(student, teacher[:1])  # would silently broadcast in F.mse_loss


# --- one interface, built from the configs ----------------------------------------------------


def loss_cfg(name: str, **overrides: object) -> dict:
    return {**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "loss" / f"{name}.yaml")), **overrides}


def test_every_loss_config_builds_its_class():
    assert loss_names() == ["distill_mse", "infonce", "mse"]
    kinds = {"infonce": InfoNCELoss, "mse": SimilarityMSELoss, "distill_mse": DistillMSELoss}
    for name in loss_names():
        loss = build_loss(loss_cfg(name))
        assert type(loss) is kinds[name]
        assert loss.temperature.item() == pytest.approx(0.05)


def test_every_option_reaches_the_loss():
    """The trap of issue #12: an option in the config must never be dropped on the way to the loss."""
    loss = build_loss(loss_cfg("infonce", symmetric=True, temperature=0.2, learn_temperature=True, gather=False, cache_chunk=4))
    assert loss.symmetric and not loss.gather and loss.cache_chunk == 4
    assert isinstance(loss.log_temperature, torch.nn.Parameter) and loss.temperature.item() == pytest.approx(0.2)
    distill = build_loss(loss_cfg("distill_mse", pivot_lang="de", teacher="some/teacher"))
    assert distill.pivot_lang == "de" and distill.teacher_name == "some/teacher"
    assert distill.teacher is None  # built when bound to a model, never in the pre-flight
    assert not distill.in_batch and loss.in_batch


def test_forward_returns_the_loss_and_the_similarity_mse_to_log():
    q, p = random_unit_rows(6, 8, seed=30), random_unit_rows(6, 8, seed=31)
    for loss in (InfoNCELoss(**loss_options("infonce", temperature=0.1, symmetric=True)), SimilarityMSELoss(**loss_options("mse"))):
        out = loss(q, p, {})
        assert isinstance(out, LossOutput) and set(out.logs) == {"mse", "masked"}
        assert out.logs["masked"].item() == 0  # a batch without keys: nothing masked
        assert out.logs["mse"].item() == pytest.approx(similarity_mse(q, p).item())
        assert not out.logs["mse"].requires_grad
    assert InfoNCELoss(**loss_options("infonce", temperature=0.1, symmetric=True))(q, p).loss.item() == pytest.approx(
        multiple_negatives_ranking_loss(q, p, scale=10.0, symmetric=True).item(), rel=1e-5)


def test_learned_temperature_gets_its_gradient_through_the_loss():
    q = random_unit_rows(5, 8, seed=32).requires_grad_()
    p = random_unit_rows(5, 8, seed=33)
    loss = InfoNCELoss(**loss_options("infonce", temperature=0.05, learn_temperature=True))
    loss(q, p).loss.backward()
    # L = -mean_i(S_ii/τ - logsumexp_j S_ij/τ), so dL/d log τ = τ dL/dτ = mean_i(S_ii - Σ_j softmax_ij S_ij) / τ
    s = q.detach() @ p.T
    softmax = torch.softmax(s / 0.05, dim=1)
    expected = ((s.diagonal() - (softmax * s).sum(1)) / 0.05).mean()
    assert loss.log_temperature.grad.item() == pytest.approx(expected.item(), rel=1e-4)


def test_unknown_loss_target_lists_the_loss_configs():
    with pytest.raises(BatchmixError) as error:
        build_loss({"_target_": "batchmix.losses.TripletLoss"})
    message = str(error.value)
    assert "'batchmix.losses.TripletLoss'" in message and "loss=infonce" in message and "\n" not in message
    for name in ("distill_mse", "infonce", "mse"):
        assert f"loss={name}" in message
    with pytest.raises(BatchmixError, match="is not a batchmix loss"):
        build_loss({"_target_": "torch.nn.MSELoss"})  # a class, but not a batch loss


@pytest.mark.parametrize(("name", "option"), [("mse", "symmetric"), ("distill_mse", "symmetric"), ("infonce", "temp")])
def test_build_loss_unknown_option_is_a_batchmix_error(name, option):
    with pytest.raises(BatchmixError, match=f"got unknown option.*{option}.*it accepts: .*temperature"):
        build_loss(loss_cfg(name, **{option: True}))


@pytest.mark.parametrize(("option", "value", "match"), [
    ("temperature", 0.0, r"loss.temperature=0.0 must be a number > 0 \(e.g. 0.05\)"),
    ("temperature", "hot", r"loss.temperature='hot' must be a number > 0"),
    ("cache_chunk", 0, r"loss.cache_chunk=0 must be null or a positive integer"),
    ("gather", "yes", r"loss.gather='yes' must be true or false"),
])
def test_each_loss_checks_its_options_when_built(option, value, match):
    for name in loss_names():
        with pytest.raises(BatchmixError, match=match):
            build_loss(loss_cfg(name, **{option: value}))


def test_distillation_refuses_gradcache():
    with pytest.raises(BatchmixError, match="not DistillMSELoss; set loss.cache_chunk=null"):
        build_loss(loss_cfg("distill_mse", cache_chunk=8))


class ScaledInfoNCE(InfoNCELoss):
    """A loss defined outside the batchmix package, as a user's own module would define it."""

    def __init__(self, scale: float = 1.0, **common):
        super().__init__(**common)
        self.scale = scale


def test_a_loss_outside_the_package_gets_its_own_options_and_the_common_ones():
    from batchmix.losses import build_loss

    target = f"{ScaledInfoNCE.__module__}.ScaledInfoNCE"
    loss = build_loss({"_target_": target, "scale": 2.0, **loss_options("infonce", symmetric=True, temperature=0.1)})
    assert isinstance(loss, ScaledInfoNCE) and loss.scale == 2.0 and loss.symmetric
    assert float(loss.temperature) == pytest.approx(0.1)
    with pytest.raises(BatchmixError, match=r"unknown option\(s\) alpha; it accepts: .*scale.*symmetric.*temperature"):
        build_loss({"_target_": target, "alpha": 1})


def test_a_missing_option_is_one_line_naming_it():
    options = loss_options("infonce")
    del options["symmetric"]
    with pytest.raises(BatchmixError, match=r"loss 'batchmix.losses.InfoNCELoss' needs option\(s\) symmetric; give each a value"):
        build_loss({"_target_": "batchmix.losses.InfoNCELoss", **options})


def test_a_per_example_loss_refuses_gradcache_in_the_base_class():
    class PerExample(InfoNCELoss):
        in_batch = False

    with pytest.raises(BatchmixError, match="not PerExample; set loss.cache_chunk=null"):
        PerExample(**loss_options("infonce", cache_chunk=4))
