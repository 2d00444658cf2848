"""GradCache (loss.cache_chunk): same loss and gradients as the plain step, at a chunk's activation memory."""

from __future__ import annotations

import weakref

import pytest
import torch

from batchmix.core.errors import BatchmixError
from scale_helpers import DEVICE, assert_same_grads, loss_and_grads, make_batch, tiny_encoder, training_losses


@pytest.mark.slow
@pytest.mark.parametrize("chunk, learn_temperature", [(1, False), (5, True), (12, False), (64, True)])
def test_cached_gradients_equal_uncached(chunk, learn_temperature):
    plain = tiny_encoder(loss={"learn_temperature": learn_temperature})
    batch = make_batch(plain, 12)
    loss, grads = loss_and_grads(plain, batch)
    cached = tiny_encoder(loss={"learn_temperature": learn_temperature, "cache_chunk": chunk})
    cached_loss, cached_grads = loss_and_grads(cached, batch)
    assert cached_loss == pytest.approx(loss, rel=1e-6)
    assert_same_grads(cached_grads, grads)
    assert ("loss_fn.log_temperature" in grads) == learn_temperature


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cached_step_under_autocast_stays_close_to_the_plain_one(dtype):
    """Under bf16-mixed / 16-mixed the hook re-embeds under the forward's autocast state. Chunked
    half-precision matmuls round differently from whole-batch ones, so this is a tolerance check
    (measured on CPU, bf16: 1.8% relative gradient norm at most)."""
    if dtype is torch.float16 and DEVICE.type == "cpu":
        pytest.skip("16-mixed is a GPU precision")
    plain = tiny_encoder()
    batch = make_batch(plain, 12)
    loss, grads = loss_and_grads(plain, batch, autocast=dtype)
    cached_loss, cached_grads = loss_and_grads(tiny_encoder(loss={"cache_chunk": 4}), batch, autocast=dtype)
    assert cached_loss == pytest.approx(loss, rel=1e-6)  # the loss is computed once, on the same embeddings
    for name, grad in grads.items():
        if grad.norm() > 0:
            assert (cached_grads[name] - grad).norm() / grad.norm() < 0.05, name


def test_dropout_masks_are_replayed_in_the_cached_backward():
    """With dropout on and one chunk per tower, the re-embedding must draw the first pass's masks:
    then the step is bit-for-bit the plain one (a fresh draw would change every gradient)."""
    batch = make_batch(tiny_encoder(), 8)
    torch.manual_seed(7)
    loss, grads = loss_and_grads(tiny_encoder(dropout=0.2), batch)
    torch.manual_seed(7)
    cached_loss, cached_grads = loss_and_grads(tiny_encoder(dropout=0.2, loss={"cache_chunk": 8}), batch)
    assert cached_loss == loss
    assert_same_grads(cached_grads, grads)


def test_grad_output_scaling_is_applied():
    """Lightning scales the loss (AMP loss scale, 1/accumulate_grad_batches) before backward."""
    batch = make_batch(tiny_encoder(), 6)
    _, grads = loss_and_grads(tiny_encoder(loss={"cache_chunk": 2}), batch)
    module = tiny_encoder(loss={"cache_chunk": 2})
    module.train()
    (module.training_step(batch, 0) * 0.25).backward()
    for name, p in module.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name] * 0.25, rtol=1e-4, atol=1e-8)


class SavedActivationPeak:
    """Peak bytes of tensors held by autograd for backward (the activation memory GradCache bounds).

    Counts each storage once while any saved tensor refers to it; freed when autograd drops it.
    """

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}
        self.now = self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key in self.live:
            self.live[key][1] += 1
        else:
            self.live[key] = [t.untyped_storage().nbytes(), 1]
            self.now += self.live[key][0]
            self.peak = max(self.peak, self.now)
        weakref.finalize(t, self._release, key)
        return t

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def activation_peak(batch_size: int, cache_chunk: int | None) -> int:
    module = tiny_encoder(loss={"cache_chunk": cache_chunk})
    batch = make_batch(module, batch_size)
    module.train()
    with SavedActivationPeak() as meter:
        module.training_step(batch, 0).backward()
    return meter.peak


def test_batch_256_with_cache_chunk_32_needs_about_the_memory_of_batch_32():
    small, large, cached = activation_peak(32, None), activation_peak(256, None), activation_peak(256, 32)
    assert large > 6 * small  # the meter sees activations grow with the batch ...
    assert cached < 2.5 * small  # ... and GradCache holds one query + one passage chunk at most (~2x)
    assert cached < large / 3


@pytest.mark.slow
def test_cache_chunk_in_a_training_run_gives_the_same_losses(tmp_path, xquad_root):
    """Through Lightning (automatic optimisation, clipping, LR schedule): identical loss curves."""
    curves = training_losses(tmp_path, {"plain": [], "cached": ["loss.cache_chunk=3"]})
    assert curves["cached"] == pytest.approx(curves["plain"], rel=1e-4)


@pytest.mark.parametrize("bad", [0, -4, 2.5, True])
def test_bad_cache_chunk_is_a_clear_error(bad):
    with pytest.raises(BatchmixError, match=r"loss.cache_chunk=.* must be null or a positive integer"):
        tiny_encoder(loss={"cache_chunk": bad})
