"""Precision and speed switches change speed or memory, never results beyond tolerance."""

from __future__ import annotations

import pytest
import torch

from scale_helpers import assert_same_grads, loss_and_grads, make_batch, tiny_encoder, training_losses


def reference(batch_size: int = 8):
    module = tiny_encoder()
    batch = make_batch(module, batch_size)
    return batch, *loss_and_grads(module, batch)


def test_gradient_checkpointing_gives_the_same_gradients():
    batch, loss, grads = reference()
    module = tiny_encoder(gradient_checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in module.query_encoder.modules())
    ckpt_loss, ckpt_grads = loss_and_grads(module, batch)
    assert ckpt_loss == pytest.approx(loss, rel=1e-6)
    assert_same_grads(ckpt_grads, grads, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile_gives_the_same_gradients_and_state_dict_keys(backend):
    batch, loss, grads = reference()
    module = tiny_encoder(compile=True, compile_backend=backend)
    compiled_loss, compiled_grads = loss_and_grads(module, batch)
    assert compiled_loss == pytest.approx(loss, rel=1e-5)
    assert_same_grads(compiled_grads, grads, rtol=1e-3, atol=1e-5)
    # nn.Module.compile works in place: checkpoints and exports keep their keys.
    assert not any("_orig_mod" in key for key in module.state_dict())
    # A second batch of another padded length runs without error (dynamic shapes).
    loss_and_grads(module, make_batch(module, 5, offset=3))


@pytest.mark.slow
def test_bf16_mixed_training_run_stays_within_tolerance_of_fp32(tmp_path, xquad_root):
    curves = training_losses(tmp_path, {p: [f"trainer.precision={p}"] for p in ("32-true", "bf16-mixed")})
    # bf16 has an 8-bit mantissa: per-step losses move by ~1% (measured: at most 0.9% here).
    assert curves["bf16-mixed"] == pytest.approx(curves["32-true"], rel=0.03)
    assert not (curves["bf16-mixed"] == curves["32-true"]).all()  # the switch really took effect


def test_pretrained_encoders_train_with_dropout_on():
    """`from_pretrained` hands back eval-mode modules; fine-tuning must switch dropout on again."""
    module = tiny_encoder(dropout=0.1, loss=None)
    module.query_encoder.eval()  # as from_pretrained returns it
    module.teacher = tiny_encoder().query_encoder.eval()
    module.on_fit_start()
    assert module.query_encoder.training and module.passage_encoder.training
    assert all(m.training for m in module.query_encoder.modules())
    assert not module.teacher.training


def test_bf16_mixed_clips_gradients_with_the_fused_optimizer():
    """Lightning's AMP plugin refuses to clip for a fused optimizer; under bf16-mixed (no loss
    scaler) the module clips itself, and must really clip."""
    from types import SimpleNamespace

    module = tiny_encoder()
    loss_and_grads(module, make_batch(module, 6))
    for p in module.parameters():
        if p.grad is not None:
            p.grad.mul_(1000.0)
    module._trainer = SimpleNamespace(precision="bf16-mixed")
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], fused=True)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None]))
    assert float(norm) == pytest.approx(1.0, rel=1e-3)
