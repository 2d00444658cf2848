"""Evaluation encodes where the trainer runs and under its precision: the GPU when there is one
(the CUDA test runs only where CUDA is present), autocast for bf16-mixed, the device the metric
state lives on."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from batchmix.eval.rounds import EvalRound
from batchmix.eval.validation import LAReQAValidation
from embeddings import trigram_xquad_slice
from scale_helpers import tiny_encoder


class Spy(L.Callback):
    def __init__(self) -> None:
        self.devices: set[str] = set()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.devices.add(outputs["embeddings"].device.type)
        self.devices.add(batch["features"]["input_ids"].device.type)


def _validate(xquad_root, accelerator: str, precision: str = "32-true"):
    corpus, _, _ = trigram_xquad_slice(xquad_root, langs=("de", "en"), n_groups=1)
    module = tiny_encoder()
    autocast: list[bool] = []
    encode = module.encode

    def recording_encode(*args, **kwargs):
        autocast.append(torch.is_autocast_enabled(module.device.type))
        return encode(*args, **kwargs)

    module.encode = recording_encode
    round_ = EvalRound({"val": corpus}, tokenize=module.tokenize, batch_size=16, width=module.embedding_dim)
    validation, spy = LAReQAValidation(), Spy()
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, logger=False, callbacks=[validation, spy],
                        enable_progress_bar=False, enable_model_summary=False)
    results = validation.run(trainer, module, round_)
    return results["val"], spy.devices, autocast, {m.device.type for m in round_.metrics.values()}


def test_cpu_bf16_mixed_evaluation_runs_under_the_trainers_autocast(xquad_root):
    metrics, devices, autocast, metric_devices = _validate(xquad_root, "cpu", "bf16-mixed")
    assert devices == {"cpu"} and metric_devices == {"cpu"}
    assert autocast and all(autocast)
    assert 0.0 <= metrics["map/multi"] <= 1.0
    _, _, autocast32, _ = _validate(xquad_root, "cpu", "32-true")
    assert not any(autocast32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_tensors_live_on_the_gpu(xquad_root):
    metrics, devices, autocast, metric_devices = _validate(xquad_root, "gpu", "bf16-mixed")
    assert devices == {"cuda"} and metric_devices == {"cuda"}
    assert all(autocast)
    assert 0.0 <= metrics["map/multi"] <= 1.0
