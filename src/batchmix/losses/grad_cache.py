"""GradCache: a contrastive loss over a large batch at the activation memory of a small chunk.

Gao, Zhang, Han & Callan (2021), "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup" (the method of sentence-transformers' CachedMultipleNegativesRankingLoss and of
Tevatron). The loss L(q, p) depends on the encoder only through the embeddings, so

    dL/dθ = Σ_chunks  Σ_i (dL/d emb_i) · (d emb_i / dθ)

1. embed every chunk (queries, positives, hard negatives) without a graph (remembering each chunk's RNG state, so dropout replays);
2. compute the loss on those embeddings (all-gathered across ranks under DDP, unless
   loss.gather=false) and cache dL/d emb;
3. when Lightning calls `backward()` on the returned loss, a hook re-embeds one chunk at a time
   with a graph and back-propagates the surrogate  Σ_i emb_i · cached_grad_i.
Peak activation memory is that of one chunk (two in the last step); compute is one extra forward.

Written here rather than taken from sentence-transformers because its loss is bound to its own
model and trainer; this one works on any model with `encode` (a `DualEncoder`), called by
`BatchLoss.step`, inside Lightning's automatic optimisation
(gradient clipping, accumulation, AMP scaling and DDP all unchanged):
- the hook's `grad_output` carries Lightning's scaling (AMP loss scale, 1/accumulate_grad_batches);
- the re-embedding runs under the autocast state of the forward pass;
- all chunks but the last are back-propagated with `torch.autograd.grad` and added to `.grad`
  (as DDP's `no_sync` accumulates), and the last chunk of each set of texts together with
  a normal `backward()`, so under DDP every parameter's gradient hook fires exactly once per step
  and the reducer all-reduces the total.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import get_device_states, set_device_states


class RandContext:
    """Replays the RNG state (CPU and the tensors' CUDA devices) captured at construction."""

    def __init__(self, *tensors: Tensor) -> None:
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.devices, enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        set_device_states(self.devices, self.device_states)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


# The encoder tower of each set of texts in a batch.
TOWER = {"query": "query", "passage": "passage", "negative": "passage"}


def _chunk(features: dict[str, Tensor], start: int, stop: int) -> dict[str, Tensor]:
    return {k: v[start:stop] for k, v in features.items()}


def grad_cached_loss(loss_fn: Any, module: Any, batch: dict[str, Any], chunk_size: int) -> tuple[Tensor, dict[str, Tensor]]:
    """`loss_fn`'s output for the whole batch embedded by `module` (a `base.EncodingModel`), as
    (loss, logs) of a `LossOutput`; the loss is a leaf whose backward runs the cached chunk passes. Works for
    any in-batch loss: the gradients of the loss's own learned parameters (e.g. a learned
    temperature) are cached with those of the embeddings."""
    # Hard negatives (batch["negative"]) are a third set of chunks, embedded by the passage tower.
    features = {"query": batch["query"], "passage": batch["positive"], **({"negative": batch["negative"]} if "negative" in batch else {})}
    pieces = [
        (name, start, min(start + chunk_size, len(feats["input_ids"])))
        for name, feats in features.items()
        for start in range(0, len(feats["input_ids"]), chunk_size)
    ]
    rng_states, reps = [], {name: [] for name in features}
    with torch.no_grad():
        for name, start, stop in pieces:
            feats = _chunk(features[name], start, stop)
            rng_states.append(RandContext(feats["input_ids"]))
            reps[name].append(module.encode(feats, TOWER[name]))
    leaves = {name: torch.cat(chunks).detach().requires_grad_() for name, chunks in reps.items()}
    with torch.enable_grad():
        q_all = loss_fn.gathered(leaves["query"])
        out = loss_fn(q_all, loss_fn.candidates(leaves["passage"], leaves.get("negative")), batch)
        learned = [param for param in loss_fn.parameters() if param.requires_grad]
        grads = torch.autograd.grad(out.loss, [*leaves.values(), *learned])
    device = leaves["query"].device.type
    autocast = {"device_type": device, "enabled": torch.is_autocast_enabled(device), "dtype": torch.get_autocast_dtype(device)}
    cache = {**dict(zip(leaves, grads)), "loss": list(zip(learned, grads[len(leaves):]))}
    loss = out.loss.detach().requires_grad_()
    loss.register_hook(partial(_backward_hook, module, features, pieces, rng_states, cache, autocast))
    return loss, out.logs


def _backward_hook(module: Any, features, pieces, rng_states, cache, autocast, grad_output: Tensor) -> None:
    params = [param for param in module.parameters() if param.requires_grad]
    last = {max(i for i, piece in enumerate(pieces) if piece[0] == name) for name in features}

    def surrogate(i: int) -> Tensor:
        name, start, stop = pieces[i]
        with rng_states[i], torch.autocast(**autocast):
            rep = module.encode(_chunk(features[name], start, stop), TOWER[name])
        return (rep.float() * (cache[name][start:stop] * grad_output).float()).sum()

    with torch.enable_grad():
        for i in range(len(pieces)):
            if i in last:
                continue
            for param, grad in zip(params, torch.autograd.grad(surrogate(i), params, allow_unused=True)):
                if grad is not None:
                    param.grad = grad if param.grad is None else param.grad.add_(grad)
        final = sum(surrogate(i) for i in sorted(last))
        for param, grad in cache["loss"]:  # the loss's own parameters (a learned temperature)
            final = final + (param * (grad * grad_output)).sum()
        final.backward()
