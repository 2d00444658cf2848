"""The pre-flight (batchmix.run.preflight): every owner's check runs before any data or model loads, the
objective names come from the evaluation's own metric names, and a model built around a loss keeps
its checkpoints loadable."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.models.dual_encoder import upgrade_state_dict
from batchmix.run.preflight import validate
from batchmix.eval.objectives import check_objective
from loss_options import loss_options
from scale_helpers import make_batch, tiny_encoder, tiny_model_cfg


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.slow
def test_the_preflight_imports_neither_lightning_nor_transformers():
    """Cheap by construction: a typo must cost a second, not the seconds of these imports."""
    code = "import sys, batchmix.run.preflight; print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'transformers'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_validate_accepts_the_defaults_and_every_loss_and_logger():
    assert validate(compose_cfg([])).ratio.as_dict()["mono"] == pytest.approx(compose_cfg([]).ratio.mono)
    for loss in ("infonce", "mse", "distill_mse"):
        for logger in ("csv", "none", "tensorboard", "wandb"):
            validate(compose_cfg([f"loss={loss}", f"logger={logger}"]))


@pytest.mark.parametrize("overrides, message", [
    (["loss.symmetric=maybe"], "loss.symmetric='maybe' must be true or false"),
    (["loss.mask=maybe"], "loss.mask='maybe' is not one of answers|ids|none"),
    (["data.sampler.avoid_shared_answers=maybe"], "data.sampler.avoid_shared_answers=maybe"),
    (["loss.temperature=-1"], "loss.temperature=-1 must be a number > 0 (e.g. 0.05)"),
    (["loss=distill_mse", "loss.cache_chunk=4"], "not DistillMSELoss; set loss.cache_chunk=null"),
    (["+loss.margin=0.2"], "got unknown option(s) margin"),
    (["logger.probe_timeout=1", "+logger.retries=3"], "got unknown option(s) retries"),
    (["model.compile=ture"], "model.compile=ture"),
    (["data.num_workers=-1"], "data.num_workers=-1 must be a non-negative integer"),
    (["data.hard_negatives=-2"], "data.hard_negatives=-2 must be an integer >= 0"),
    (["data.negatives_lang=mono"], "data.negatives_lang='mono' is not one of ['any', 'same', 'other']"),
    (["loss=distill_mse", "data.hard_negatives=2"], "data.hard_negatives=2 has no use in loss=distill_mse"),
    (["checkpoint.every_n_steps=-1"], "checkpoint.every_n_steps=-1 must be a non-negative integer"),
    (["resume=maybe"], "resume=maybe"),
    (["trainer.devices=3", "data.batch_size=16"], "data.batch_size=16 (the global batch) is not divisible by the 3 processes"),
])
def test_each_owner_checks_its_options(overrides, message):
    """A wrong type is refused while Hydra composes (the schemas: batchmix/config/schema.py; the entry
    points say it in one line), a wrong value by its owner's check."""
    with pytest.raises((BatchmixError, ConfigCompositionException)) as error:
        validate(compose_cfg(overrides))
    if isinstance(error.value, ConfigCompositionException):
        assert message in str(error.value)
    else:
        assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["map/multi", "map@20/mono/de", "recall@100/cross/de-en", "ndcg@10/multi/zh",
                                  "mrr/cross", "bias/rank_distance", "bias/own_lang_first/es", "train/multi/loss_final"])
def test_objectives_are_the_evaluation_metric_keys(name):
    check_objective(name)
    check_objective([name, "map/multi"])


@pytest.mark.parametrize("name", ["map/mutli", "recall@3/multi", "bias/rank", "map", "accuracy/multi"])
def test_a_misspelt_objective_is_refused(name):
    with pytest.raises(BatchmixError, match=f"objective '{name}' is not a batchmix metric"):
        check_objective(name)


def test_checkpoints_from_before_the_loss_owned_the_temperature_still_load():
    module = tiny_encoder(loss={"learn_temperature": True, "temperature": 0.07})
    state = module.state_dict()
    old = {("log_temperature" if k == "loss_fn.log_temperature" else k): v for k, v in state.items()}
    old.update({"teacher.embeddings.word_embeddings.weight": torch.zeros(1)})
    upgraded = upgrade_state_dict(dict(old))
    assert "loss_fn.log_temperature" in upgraded and "log_temperature" not in upgraded
    assert "loss_fn.teacher.embeddings.word_embeddings.weight" in upgraded
    fresh = tiny_encoder(loss={"learn_temperature": True, "temperature": 0.05})
    fresh.load_state_dict({k: v for k, v in upgraded.items() if not k.startswith("loss_fn.teacher.")})
    assert fresh.temperature.item() == pytest.approx(0.07)


def test_the_distillation_loss_builds_its_teacher_from_the_student_when_bound():
    from batchmix.losses import build_loss
    from batchmix.models.factory import build_dual_encoder

    torch.manual_seed(0)
    module = build_dual_encoder(tiny_model_cfg(), build_loss({"_target_": "batchmix.losses.DistillMSELoss", **loss_options("distill_mse")}))
    teacher = module.loss_fn.teacher
    t0 = teacher.embeddings.word_embeddings.weight.clone()
    assert teacher is not None and teacher is not module.query_encoder
    for (name, t), (_, s) in zip(teacher.named_parameters(), module.query_encoder.named_parameters()):
        assert torch.equal(t, s) and not t.requires_grad, name
    batch = make_batch(module, 4)
    batch.update(pivot_query=batch["query"], pivot_positive=batch["positive"])
    module.eval()  # no dropout: the student is still the teacher, so every row equals its teacher row
    assert module.training_step(batch, 0).item() == 0.0
    module.query_encoder.embeddings.word_embeddings.weight.data.add_(0.1)  # training moves the student only
    assert module.training_step(batch, 0).item() > 0 and torch.equal(teacher.embeddings.word_embeddings.weight, t0)
    assert {k for k in module.state_dict() if k.startswith("loss_fn.teacher.")}
