"""Losses: hand-computed values, agreement with reference formulas, gradients, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from batchmix.errors import BatchmixError
from batchmix.losses import (
    LOSSES,
    DistillMSELoss,
    InfoNCELoss,
    SimilarityMSELoss,
    build_loss,
    similarity_mse,
)

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
    loss = InfoNCELoss()(Q_HAND, P_HAND, temperature=0.5)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_infonce_symmetric_hand_computed_value():
    # passage→query direction: column j of the logits, target row j.
    col0 = -1.2 + math.log(math.exp(1.2) + math.exp(1.6))
    col1 = -2.0 + math.log(math.exp(0.0) + math.exp(2.0))
    row0 = -1.2 + math.log(math.exp(1.2) + math.exp(0.0))
    row1 = -2.0 + math.log(math.exp(1.6) + math.exp(2.0))
    expected = ((row0 + row1) / 2 + (col0 + col1) / 2) / 2
    loss = InfoNCELoss(symmetric=True)(Q_HAND, P_HAND, temperature=0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("temperature", [0.02, 0.05, 1.0])
def test_infonce_matches_cross_entropy(temperature):
    q, p = random_unit_rows(9, 32, seed=1), random_unit_rows(9, 32, seed=2)
    expected = F.cross_entropy(torch.einsum("id,jd->ij", q, p) / temperature, torch.arange(9))
    assert InfoNCELoss()(q, p, temperature).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("temperature", [0.05, 0.1])
def test_infonce_matches_sentence_transformers_mnrl(symmetric, temperature):
    q, p = random_unit_rows(16, 24, seed=3), random_unit_rows(16, 24, seed=4)
    expected = multiple_negatives_ranking_loss(q, p, scale=1 / temperature, symmetric=symmetric)
    loss = InfoNCELoss(symmetric=symmetric)(q, p, temperature)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_infonce_symmetric_is_mean_of_both_directions():
    q, p = random_unit_rows(6, 8, seed=5), random_unit_rows(6, 8, seed=6)
    one_way = InfoNCELoss()
    expected = (one_way(q, p, 0.1) + one_way(p, q, 0.1)) / 2
    assert InfoNCELoss(symmetric=True)(q, p, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)
    assert one_way(q, p, 0.1).item() != pytest.approx(one_way(p, q, 0.1).item(), rel=1e-3)


def test_infonce_is_lower_for_aligned_pairs():
    q = random_unit_rows(8, 16, seed=7)
    aligned = InfoNCELoss()(q, q, 0.05)
    shuffled = InfoNCELoss()(q, q.roll(1, dims=0), 0.05)
    assert aligned.item() < 0.1 < shuffled.item()


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_gradients_reach_inputs_and_learnable_temperature(symmetric):
    q = random_unit_rows(5, 8, seed=8).requires_grad_()
    p = random_unit_rows(5, 8, seed=9).requires_grad_()
    log_scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))  # model-owned, τ = exp(-log_scale)
    loss = InfoNCELoss(symmetric=symmetric)(q, p, temperature=torch.exp(-log_scale))
    loss.backward()
    for grad in (q.grad, p.grad, log_scale.grad):
        assert grad is not None and torch.isfinite(grad).all()
    assert q.grad.abs().sum() > 0 and p.grad.abs().sum() > 0 and log_scale.grad.abs() > 0


def test_infonce_gradcheck_float64():
    q = random_unit_rows(4, 3, seed=10, dtype=torch.float64).requires_grad_()
    p = random_unit_rows(4, 3, seed=11, dtype=torch.float64).requires_grad_()
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, t: InfoNCELoss(symmetric=True)(a, b, t), (q, p, temperature))


def test_infonce_batch_of_one_is_zero_with_zero_gradient():
    q = random_unit_rows(1, 8, seed=12).requires_grad_()
    p = random_unit_rows(1, 8, seed=13).requires_grad_()
    loss = InfoNCELoss(symmetric=True)(q, p, 0.05)
    loss.backward()
    assert loss.item() == 0.0  # one candidate: softmax is 1, there are no negatives
    assert torch.equal(q.grad, torch.zeros_like(q)) and torch.equal(p.grad, torch.zeros_like(p))


def test_infonce_bfloat16_input_gives_float32_scalar_close_to_float32_loss():
    q, p = random_unit_rows(8, 64, seed=14), random_unit_rows(8, 64, seed=15)
    loss_bf16 = InfoNCELoss()(q.bfloat16(), p.bfloat16(), 0.05)
    assert loss_bf16.shape == () and loss_bf16.dtype == torch.float32
    assert loss_bf16.item() == pytest.approx(InfoNCELoss()(q, p, 0.05).item(), rel=2e-2)


def test_infonce_rejects_bad_shapes_and_temperature():
    q = random_unit_rows(4, 8, seed=16)
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(3, 8\)"):
        InfoNCELoss()(q, q[:3])
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss()(q[0], q[0])
    with pytest.raises(BatchmixError, match="temperature=0.0 must be > 0"):
        InfoNCELoss()(q, q, temperature=0.0)


# --- similarity-matrix MSE -------------------------------------------------------------------


def test_similarity_mse_hand_computed_value():
    # S - I = [[0.6 - 1, 0.0], [0.8, 1.0 - 1]] → squares 0.16 + 0 + 0.64 + 0 over 4 entries
    assert similarity_mse(Q_HAND, P_HAND).item() == pytest.approx(0.8 / 4, abs=1e-6)
    assert SimilarityMSELoss()(Q_HAND, P_HAND).item() == pytest.approx(0.2, abs=1e-6)


def test_similarity_mse_is_zero_for_orthonormal_pairs_and_ignores_temperature():
    q = torch.eye(5, 7)
    assert similarity_mse(q, q).item() == 0.0
    p = random_unit_rows(5, 7, seed=17)
    assert SimilarityMSELoss()(q, p, temperature=0.05).item() == pytest.approx(similarity_mse(q, p).item())


def test_similarity_mse_batch_of_one():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])
    assert similarity_mse(q, p).item() == pytest.approx((0.6 - 1.0) ** 2, abs=1e-6)


def test_similarity_mse_gradient_and_dtypes():
    q = random_unit_rows(6, 8, seed=18).requires_grad_()
    p = random_unit_rows(6, 8, seed=19).requires_grad_()
    SimilarityMSELoss()(q, p).backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0 and torch.isfinite(p.grad).all()
    value_bf16 = similarity_mse(q.detach().bfloat16(), p.detach().bfloat16())
    assert value_bf16.shape == () and value_bf16.dtype == torch.float32
    assert value_bf16.item() == pytest.approx(similarity_mse(q.detach(), p.detach()).item(), rel=2e-2)
    with pytest.raises(ValueError, match="same shape"):
        similarity_mse(q, p[:, :4])


# --- distillation MSE ------------------------------------------------------------------------


def test_distill_mse_hand_computed_value_and_teacher_gets_no_gradient():
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0], [3.0, 5.0]], requires_grad=True)
    loss = DistillMSELoss()(student, teacher)
    # differences 0, 2, 0, -1 → (0 + 4 + 0 + 1) / 4
    assert loss.item() == pytest.approx(1.25)
    loss.backward()
    assert teacher.grad is None
    # d/ds mean((s - t)²) = 2 (s - t) / 4
    assert torch.allclose(student.grad, torch.tensor([[0.0, 1.0], [0.0, -0.5]]))


def test_distill_mse_dtypes_and_shapes():
    student, teacher = random_unit_rows(3, 8, seed=20), random_unit_rows(3, 8, seed=21)
    loss_bf16 = DistillMSELoss()(student.bfloat16(), teacher)
    assert loss_bf16.shape == () and loss_bf16.dtype == torch.float32
    assert loss_bf16.item() == pytest.approx(DistillMSELoss()(student, teacher).item(), rel=2e-2)
    with pytest.raises(ValueError, match=r"\(3, 8\) and \(1, 8\)"):
        DistillMSELoss()(student, teacher[:1])  # would silently broadcast in F.mse_loss


# --- registry --------------------------------------------------------------------------------


def test_build_loss_by_name_with_options():
    assert set(LOSSES) == {"infonce", "mse", "distill_mse"}
    assert isinstance(build_loss("mse"), SimilarityMSELoss)
    assert isinstance(build_loss("distill_mse"), DistillMSELoss)
    loss = build_loss("infonce", symmetric=True)
    assert isinstance(loss, InfoNCELoss) and loss.symmetric


def test_build_loss_unknown_name_lists_valid_names_and_override():
    with pytest.raises(BatchmixError) as error:
        build_loss("triplet")
    message = str(error.value)
    assert "'triplet'" in message and "loss=infonce" in message and "\n" not in message
    for name in LOSSES:
        assert name in message


@pytest.mark.parametrize(("name", "option"), [("mse", "symmetric"), ("distill_mse", "symmetric"), ("infonce", "temp")])
def test_build_loss_unknown_option_is_a_batchmix_error(name, option):
    with pytest.raises(BatchmixError, match=f"'{name}' got unknown option.*{option}"):
        build_loss(name, **{option: True})
