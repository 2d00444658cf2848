"""`export_sentence_transformers`: a batchmix run, exported, loads in sentence-transformers as it is and
embeds as batchmix does (issue #27, item 4)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError

pytest.importorskip("sentence_transformers")
# Texts within both of model=tiny's limits (queries 32 tokens, passages 64): there the export must
# agree with batchmix exactly; non-ASCII and a repeated word check the tokenizer went along.
QUERIES = ["Wer unterzeichnete den Vertrag?", "谁签署了条约？", "when when when was it signed"]
PASSAGES = ["The treaty was signed in Lisbon in 1494 by both crowns.", "Der Vertrag wurde 1494 unterzeichnet."]


# top: model.train_top_layers=1 exports a delta model/ (the base + what trained), which the export
# makes whole; full: every weight trains and model/ is already an HF folder.
@pytest.fixture(scope="module", params=["top", "full"])
def run(tmp_path_factory, xquad_root, request):
    from batchmix.run.train import train

    extra = ["model.train_top_layers=1", "model.trunk_cache=memory"] if request.param == "top" else []
    out = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "data.languages=[en,de]", "data.batch_size=4", "data.batches_per_epoch=3",
                                          "eval.before=false", "eval.val_every_n_steps=0", "logger=none", *extra])
    train(cfg, out)
    return out


@pytest.mark.slow
def test_exported_folder_loads_in_sentence_transformers_and_embeds_as_batchmix(run, tmp_path):
    from sentence_transformers import SentenceTransformer

    from batchmix.models.factory import load_trained
    from batchmix.models.st_export import export_sentence_transformers

    out = export_sentence_transformers(run / "model", tmp_path / "st")
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": "query: ", "document": "passage: "}
    model = SentenceTransformer(str(out), device="cpu")  # ST's own loader, nothing of batchmix
    module, _ = load_trained(run)
    assert model.max_seq_length == max(module.query_max_length, module.passage_max_length)
    queries = model.encode_query(QUERIES, convert_to_tensor=True)
    passages = model.encode_document(PASSAGES, convert_to_tensor=True)
    torch.testing.assert_close(queries, module.encode_texts(QUERIES, "query", desc=False), rtol=0, atol=1e-5)
    torch.testing.assert_close(passages, module.encode_texts(PASSAGES, "passage", desc=False), rtol=0, atol=1e-5)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]


def test_export_refuses_a_non_empty_target_and_a_missing_run(tmp_path):
    from batchmix.models.st_export import export_sentence_transformers

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(BatchmixError, match="not an empty folder"):
        export_sentence_transformers(tmp_path, tmp_path / "taken")
    with pytest.raises(BatchmixError, match="does not exist"):
        export_sentence_transformers(tmp_path / "nope", tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_model_folder_copied_away_from_its_run_exports_with_eval_py_assumptions(run, tmp_path, capsys):
    """A model/ without its run's config.yaml records no max lengths: `batchmix export` assumes what
    eval.py does (conf/eval.yaml's model), rather than refusing or making values up in code. A delta
    model/ over model=tiny's random-init base cannot be rebuilt without that config: one line."""
    import shutil

    from sentence_transformers import SentenceTransformer

    from batchmix.run.cli import export_main

    moved = shutil.copytree(run / "model", tmp_path / "elsewhere" / "model")
    code = export_main([str(moved), "--to", str(tmp_path / "st")])
    if "base" in json.loads((moved / "batchmix.json").read_text()):  # the `top` run: a delta
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("batchmix: error:")
        return
    assert code == 0
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        assumed = compose("eval").model
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert model.max_seq_length == max(assumed.query_max_length, assumed.passage_max_length)
