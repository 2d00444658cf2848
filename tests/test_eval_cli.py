"""`eval.py` on a batchmix run reproduces the run's own final metrics, from its checkpoint and its HF export."""

from __future__ import annotations

import json
import logging
from importlib.metadata import version

import pytest
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError

LANGS = "data.languages=[en,de,es]"


def _cfg(name, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


# full: every weight trains, model/ is a standalone HF folder; top: model.train_top_layers=1 (cached
# trunk), model/ holds the trained layer only and refers to the base (models/export.py), trained and
# validated under CPU bf16 autocast, which eval.py's precision=auto must take from the run.
VARIANTS = {"full": [], "top": ["model.train_top_layers=1", "model.trunk_cache=memory", "trainer.precision=bf16-mixed"]}
PRECISION = {"full": "32-true", "top": "bf16-mixed"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def tiny_run(tmp_path_factory, xquad_root, request):
    from batchmix.run.train import train

    run = tmp_path_factory.mktemp("run")
    cfg = _cfg("train", ["model=tiny", LANGS, "data.batch_size=8", "data.batches_per_epoch=4", "eval.before=false", "save_model=true",
                         "ratio.mono=0.5", "ratio.multi=0.5", *VARIANTS[request.param]])
    train(cfg, run)
    exported = {p.name for p in (run / "model").iterdir()}
    if request.param == "top":
        assert exported == {"batchmix.json", "trained.safetensors"}
        info = json.loads((run / "model" / "batchmix.json").read_text())
        assert info["base"] == "embedded:xlmr-tokenizer" and info["train_top_layers"] == 1 and info["precision"] == "bf16-mixed"
        assert any("word_embeddings" in k for k in info["frozen"])
    else:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= exported
    return run


@pytest.mark.slow
@pytest.mark.parametrize("target", ["run_dir", "export", "ckpt"])
def test_eval_reproduces_training_metrics(tiny_run, tmp_path, target, caplog, request):
    from batchmix.run.evaluate import evaluate

    path = {"run_dir": tiny_run, "export": tiny_run / "model", "ckpt": tiny_run / "checkpoints" / "last.ckpt"}[target]
    versions = tiny_run / "versions.json"
    recorded = json.loads(versions.read_text())
    assert recorded["transformers"] == version("transformers") and recorded["torch"] == version("torch")
    # The run as if trained under another transformers minor release: eval.py says so in one line.
    old = "4.44.2" if target == "export" else recorded["transformers"]
    versions.write_text(json.dumps({**recorded, "transformers": old}))
    if target == "run_dir":
        (tiny_run / "model").rename(tiny_run / "model.hidden")  # force the checkpoint path
    try:
        with caplog.at_level(logging.INFO, logger="batchmix"):
            out = evaluate(_cfg("eval", [f"checkpoint={path}", LANGS]), tmp_path)
    finally:
        versions.write_text(json.dumps(recorded))
        if target == "run_dir":
            (tiny_run / "model.hidden").rename(tiny_run / "model")
    drift = [r.getMessage() for r in caplog.records if "other releases" in r.getMessage()]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision ")]
    variant = request.node.callspec.params["tiny_run"]
    assert said == [f"precision {PRECISION[variant]} (the run's trainer.precision; precision=32-true to override)"]
    if target == "export":
        assert len(drift) == 1 and "\n" not in drift[0] and f"transformers 4.44.2 -> {version('transformers')}" in drift[0]
    else:
        assert drift == []
    trained = json.loads((tiny_run / "metrics.json").read_text())
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == out["metrics"]
    assert (tmp_path / "map_matrix.png").stat().st_size > 1000
    assert (tmp_path / "map_matrix.csv").exists()
    assert {p.name for p in (tmp_path / "trec").glob("*.run")} >= {"multi.run", "mono.en.run", "cross.de-en.run"}
    for key in ("map/multi", "map/mono", "map/cross", "map/cross/de-en", "bias/rank_distance", "ndcg@10/multi"):
        assert written[key] == pytest.approx(trained[key], abs=1e-6), key


def test_eval_precision_auto_follows_the_run(tmp_path):
    """precision=auto: the run's config, else what a model/ export copied away from its run records,
    else 32-true; a 16-mixed run on a CPU falls back to 32-true; an explicit value wins and says so."""
    from batchmix.run.evaluate import eval_precision

    export = tmp_path / "model"
    export.mkdir()
    (export / "batchmix.json").write_text(json.dumps({"pooling": "mean", "precision": "bf16-mixed"}))
    gpu_run = {"trainer": {"precision": "16-mixed"}}
    assert eval_precision("auto", str(export), {})[0] == "bf16-mixed"
    assert eval_precision("auto", str(tmp_path / "run"), {"trainer": {"precision": "bf16-mixed"}})[0] == "bf16-mixed"
    assert eval_precision("auto", str(tmp_path), {}) == ("32-true", "precision=auto, the run's precision is not recorded")
    assert eval_precision("auto", None, {}) == ("32-true", "precision=auto, not a batchmix run")
    assert eval_precision("auto", str(export), gpu_run, device="cpu")[0] == "32-true"
    assert eval_precision("32-true", str(export), {}) == ("32-true", "as given; the run trained in bf16-mixed")


def test_eval_rejects_missing_checkpoint(tmp_path):
    from batchmix.run.evaluate import evaluate

    with pytest.raises(BatchmixError, match="does not exist"):
        evaluate(_cfg("eval", [f"checkpoint={tmp_path}/nope"]), tmp_path)


def test_eval_rejects_bad_split(tmp_path):
    from batchmix.run.evaluate import evaluate

    with pytest.raises(BatchmixError, match="split='dev'"):
        evaluate(_cfg("eval", ["split=dev", "model=tiny"]), tmp_path)
