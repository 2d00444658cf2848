"""model.train_top_layers and the frozen-trunk cache: same numbers as Hugging Face's own forward
with the same frozen layers, shared on disk, invalidated by every key, and rebuilt when corrupt."""

from __future__ import annotations

import logging

import pytest
import torch

from batchmix.core.errors import BatchmixError
from batchmix.models.trunk_cache import SHARD_GLOB, TRUNK_DIR, check_attention, top_states, trunk_states
from scale_helpers import TEXTS, assert_same_grads, loss_and_grads, make_batch, tiny_encoder

XLMR = {"model_type": "xlm-roberta", "vocab_size": 250037, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 514, "pad_token_id": 1}


def pair(trunk_cache: str = "memory", top: int = 1, **model):
    """(plain Hugging Face forward with the same frozen layers, cached path): same seed, same weights."""
    return (tiny_encoder(train_top_layers=top, trunk_cache="off", **model),
            tiny_encoder(train_top_layers=top, trunk_cache=trunk_cache, **model))


def shards(root):
    return sorted((root / TRUNK_DIR).glob(f"*/{SHARD_GLOB}"))


@pytest.mark.parametrize("arch", [None, XLMR], ids=["bert", "xlm-roberta"])
def test_cached_step_gives_the_loss_and_gradients_of_the_plain_forward(arch):
    plain, cached = pair(**({"architecture": arch} if arch else {}))
    batch = make_batch(plain, 8, negatives=1)
    loss, grads = loss_and_grads(plain, batch)
    for _ in range(2):  # first: computes the trunk; second: every text from the cache
        cached_loss, cached_grads = loss_and_grads(cached, batch)
        assert cached_loss == pytest.approx(loss, abs=1e-5)
        assert_same_grads(cached_grads, grads, rtol=1e-5, atol=1e-6)
    stats = next(iter(cached.trunk_store.caches.values())).stats
    distinct = len(set(map(tuple, batch["query"]["input_ids"].tolist())) | set(map(tuple, batch["positive"]["input_ids"].tolist()))
                   | set(map(tuple, batch["negative"]["input_ids"].tolist())))
    assert stats["computed"] == 24 == distinct  # 8 queries, 8 positives, 8 negatives, each once
    assert stats["hits"] == 24
    # Only the top layer (and the temperature) trains; nothing below it has a gradient.
    top = len(plain.query_encoder.encoder.layer) - 1
    assert grads and all(f"encoder.layer.{top}." in name or name == "loss_fn.log_temperature" for name in grads)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", [None, XLMR], ids=["bert", "xlm-roberta"])
def test_the_split_forward_equals_the_models_own_forward(arch, impl):
    """Trunk then top layers, with batchmix's own attention mask, give Hugging Face's own forward
    (its own mask) on a padded batch, under both attention implementations the cache supports."""
    module = tiny_encoder(train_top_layers=1, trunk_cache="off", **({"architecture": arch} if arch else {}))
    enc = module.query_encoder.eval()
    enc.set_attn_implementation(impl)  # transformers' public switch
    assert check_attention(enc) == impl
    feats = module.tokenize(TEXTS, "query")
    tokens = feats["attention_mask"].bool()
    assert not tokens.all()  # texts of different lengths: padding is masked
    with torch.no_grad():
        own = enc(**feats).last_hidden_state
        split = top_states(enc, trunk_states(enc, feats["input_ids"], feats["attention_mask"], 1), feats["attention_mask"], 1)
    torch.testing.assert_close(split[tokens], own[tokens], rtol=1e-5, atol=1e-5)


def test_an_attention_implementation_without_an_additive_mask_is_refused_in_one_line():
    module = tiny_encoder(trunk_cache="off")
    enc = module.query_encoder
    enc.set_attn_implementation("flex_attention")  # wants a block mask, not an additive one
    feats = module.tokenize(TEXTS, "query")
    with pytest.raises(BatchmixError, match=r"^model.train_top_layers supports attention implementations eager\|sdpa, "
                       r"not 'flex_attention' of BertModel; .*model.train_top_layers=null$"):
        trunk_states(enc, feats["input_ids"], feats["attention_mask"], 1)


def test_the_frozen_trunk_runs_without_dropout_and_the_top_with_it():
    module = tiny_encoder(dropout=0.1, train_top_layers=1, trunk_cache="off")
    module.on_fit_start()
    enc = module.query_encoder
    assert not enc.embeddings.training and not enc.encoder.layer[0].training
    assert enc.encoder.layer[1].training
    module.train()
    assert not enc.encoder.layer[0].training and enc.encoder.layer[1].training
    assert not enc.embeddings.word_embeddings.weight.requires_grad and not enc.encoder.layer[0].attention.self.query.weight.requires_grad


def test_evaluation_metrics_equal_the_plain_forward(xquad_root):
    from batchmix.data.lareqa import load_lareqa
    from batchmix.eval.scoring import evaluate_embeddings
    from embeddings import encode_corpus

    full = load_lareqa(xquad_root, ["de", "en"])
    corpus = full.subset(full.groups[:1], name="slice")
    plain, cached = pair()
    a = evaluate_embeddings(corpus, *encode_corpus(corpus, plain.eval()), progress=False)
    b = evaluate_embeddings(corpus, *encode_corpus(corpus, cached.eval()), progress=False)
    assert a.keys() == b.keys()
    assert all(abs(a[k] - b[k]) <= 1e-5 or (a[k] != a[k] and b[k] != b[k]) for k in a)  # NaN where both are NaN


def test_runs_share_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path))
    plain, first = pair("disk")
    reference = plain.encode_texts(TEXTS, "passage")
    assert torch.allclose(first.encode_texts(TEXTS, "passage"), reference, atol=1e-5)  # flushes at the end
    assert len(shards(tmp_path)) == 1
    second = tiny_encoder(train_top_layers=1, trunk_cache="disk")  # another run of the sweep: same base
    assert torch.allclose(second.encode_texts(TEXTS, "passage"), reference, atol=1e-5)
    stats = next(iter(second.trunk_store.caches.values())).stats
    assert stats["computed"] == 0 and stats["hits"] == len(TEXTS) and stats["shards_read"] == 1
    report = next(iter(second.trunk_store.report().values()))
    assert report["texts"] == len(TEXTS) and report["disk_mb"] >= 0


@pytest.mark.parametrize("change", ["trunk weight", "layers", "bf16", "max length", "prefix"])
def test_every_key_change_misses_the_cache(tmp_path, monkeypatch, change):
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path))
    tiny_encoder(train_top_layers=1, trunk_cache="disk").encode_texts(TEXTS, "query")
    kwargs = {"train_top_layers": 1, "trunk_cache": "disk"}
    if change == "layers":
        kwargs["train_top_layers"] = 2
    if change == "max length":
        kwargs["query_max_length"] = 8  # shorter than every text: every key changes
    if change == "prefix":
        kwargs["query_prefix"] = "question: "
    other = tiny_encoder(**kwargs)
    if change == "trunk weight":
        with torch.no_grad():
            other.query_encoder.embeddings.LayerNorm.bias.add_(0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=change == "bf16"):
        other.encode_texts(TEXTS, "query")
    stats = next(iter(other.trunk_store.caches.values())).stats
    feats = other.tokenize(TEXTS, "query")
    distinct = {tuple(ids[mask.bool()].tolist()) for ids, mask in zip(feats["input_ids"], feats["attention_mask"])}
    assert stats["computed"] == len(distinct) and stats["hits"] == len(TEXTS) - len(distinct)  # nothing from the first run
    # Text keys live inside one fingerprint; the model-side keys start a new one.
    assert len(list((tmp_path / TRUNK_DIR).iterdir())) == (1 if change in ("max length", "prefix") else 2)


def test_a_top_layer_change_keeps_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path))
    tiny_encoder(train_top_layers=1, trunk_cache="disk").encode_texts(TEXTS, "query")
    trained = tiny_encoder(train_top_layers=1, trunk_cache="disk")
    with torch.no_grad():
        trained.query_encoder.encoder.layer[1].output.dense.bias.add_(0.5)  # what training changes
    trained.encode_texts(TEXTS, "query")
    assert next(iter(trained.trunk_store.caches.values())).stats["computed"] == 0


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a shard"])
def test_a_corrupt_shard_is_detected_deleted_and_rebuilt(tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path))
    plain, first = pair("disk")
    reference = plain.encode_texts(TEXTS, "passage")
    first.encode_texts(TEXTS, "passage")
    [shard] = shards(tmp_path)
    data = bytearray(shard.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        data[-5] ^= 0xFF  # inside the states
    else:
        data = bytearray(b"{}")
    shard.write_bytes(bytes(data))
    second = tiny_encoder(train_top_layers=1, trunk_cache="disk")
    with caplog.at_level(logging.WARNING, logger="batchmix"):
        again = second.encode_texts(TEXTS, "passage")
    assert torch.allclose(again, reference, atol=1e-5)
    stats = next(iter(second.trunk_store.caches.values())).stats
    assert stats["shards_rebuilt"] == 1 and stats["computed"] == len(TEXTS)
    assert "is corrupt" in caplog.text
    assert shards(tmp_path) == [shard] and shard.read_bytes() != bytes(data)  # rebuilt (same content, same name)
    third = tiny_encoder(train_top_layers=1, trunk_cache="disk")
    third.encode_texts(TEXTS, "passage")
    assert next(iter(third.trunk_store.caches.values())).stats["computed"] == 0  # and it reads back


def test_checkpoints_hold_only_the_trained_layers():
    module = tiny_encoder(train_top_layers=1, trunk_cache="off")
    checkpoint = {"state_dict": {k: v.clone() for k, v in module.state_dict().items()}}
    module.on_save_checkpoint(checkpoint)
    stored = {k for k in checkpoint["state_dict"] if k.startswith("query_encoder.")}
    assert stored and all(".encoder.layer.1." in k for k in stored)


def _model_node(**values):
    """The model options check_model reads, at conf/model's values, with `values` changed."""
    from omegaconf import OmegaConf

    return OmegaConf.create({"pooling": "mean", "compile": False, "compile_backend": "inductor", "train_top_layers": None,
                             "trunk_cache": "disk", **values})


@pytest.mark.parametrize("value, fix", [(0, "positive number"), (3, "from 1 to the model's 2 layers"), ("two", "positive number")])
def test_bad_train_top_layers_is_one_line(value, fix):
    from omegaconf import OmegaConf

    from batchmix.models.checks import check_model

    cfg = _model_node(train_top_layers=value)
    with pytest.raises(BatchmixError) as error:
        if value == 3:
            tiny_encoder(train_top_layers=value)
        else:
            check_model(cfg)
    assert fix in str(error.value) and "\n" not in str(error.value)


def test_bad_trunk_cache_and_compile_are_refused():
    from omegaconf import OmegaConf

    from batchmix.models.checks import check_model

    with pytest.raises(BatchmixError, match="model.trunk_cache='ram'"):
        check_model(_model_node(trunk_cache="ram"))
    check_model(_model_node(train_top_layers=2, compile=False))
    with pytest.raises(BatchmixError, match="model.compile=true does not reach"):
        check_model(_model_node(train_top_layers=2, compile=True, compile_backend="eager"))


def test_warm_fills_what_a_run_then_reads(tmp_path, monkeypatch, xquad_root):
    """`python -m batchmix.run.warm <overrides>` computes every text; the run with those overrides computes none."""
    import json

    from batchmix.run.train import train
    from batchmix.run.warm import warm
    from test_train import TINY, compose_cfg

    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path / "cache"))
    overrides = [*TINY, "model.train_top_layers=1", "model.trunk_cache=disk", "eval.before=false", "seed=3"]  # the seed of tiny's random base
    import torch.nn as nn

    top_calls = []  # warm computes the frozen trunk only: the trained top layer never runs
    original = nn.Module.__call__
    def counting_call(self, *args, **kwargs):
        if getattr(self, "_top_layer", False):
            top_calls.append(1)
        return original(self, *args, **kwargs)
    from batchmix.models import factory
    build = factory.build_dual_encoder
    def build_marked(model_cfg):
        module = build(model_cfg)
        for enc in module.distinct_encoders():
            enc.encoder.layer[-1]._top_layer = True
        return module
    monkeypatch.setattr(factory, "build_dual_encoder", build_marked)
    monkeypatch.setattr(nn.Module, "__call__", counting_call)
    report = next(iter(warm(compose_cfg(overrides), tmp_path / "warm").values()))
    monkeypatch.undo()
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path / "cache"))
    assert report["computed"] == report["texts"] > 0 and report["disk_mb"] > 0 and not top_calls
    train(compose_cfg([*overrides, "ratio.mono=0.5", "ratio.cross=0.5"]), tmp_path / "run")
    run = next(iter(json.loads((tmp_path / "run" / "trunk_cache.json").read_text()).values()))
    assert run["computed"] == 0 and run["hits"] > 0 and run["shards_read"] >= 1


def test_warm_needs_train_top_layers(tmp_path):
    from batchmix.run.warm import warm
    from test_train import TINY, compose_cfg

    with pytest.raises(BatchmixError, match="model.train_top_layers=K"):
        warm(compose_cfg(TINY), tmp_path)


@pytest.mark.parametrize("key", ["export_full", "save_model"])
def test_export_switches_take_true_or_false_only(key):
    from batchmix.run.preflight import validate
    from test_train import TINY, compose_cfg

    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=f"{key}=ture"):  # refused by the schema (config/schema.py)
        validate(compose_cfg([*TINY, f"{key}=ture"]))
