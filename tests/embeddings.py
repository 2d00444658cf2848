"""Cheap, deterministic text embeddings for evaluator tests: no model, no tied scores."""

from __future__ import annotations

import zlib

import torch


def bag_of_trigrams(texts: list[str], dim: int = 512, seed: int = 0) -> torch.Tensor:
    """Hashed character-trigram counts plus a small jitter (no tied scores), L2-normalised, float64."""
    out = torch.zeros(len(texts), dim, dtype=torch.float64)
    for i, text in enumerate(texts):
        t = f"  {text.lower()}  "
        for k in range(len(t) - 2):
            out[i, zlib.crc32(t[k : k + 3].encode()) % dim] += 1.0
    jitter = torch.randn(len(texts), dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.nn.functional.normalize(torch.nn.functional.normalize(out, dim=1) + 1e-3 * jitter, dim=1)


def trigram_xquad_slice(root, langs=("de", "en", "zh"), n_groups: int = 2):
    """A real XQuAD-R slice (a few languages, the first article groups) with trigram embeddings."""
    from batchmix.data.lareqa import load_lareqa

    full = load_lareqa(root, list(langs))
    corpus = full.subset(full.groups[:n_groups], name="xquad-r-slice")
    assert all(20 < len(ls.questions) < 200 for ls in corpus.languages.values())
    q_emb = {lang: bag_of_trigrams(ls.questions, seed=1) for lang, ls in corpus.languages.items()}
    c_emb = {lang: bag_of_trigrams(ls.candidates, seed=2) for lang, ls in corpus.languages.items()}
    return corpus, q_emb, c_emb


XQUAD_R_CANDIDATES = dict(ar=1222, de=1276, el=1234, en=1180, es=1215, hi=1244, ru=1219, th=852, tr=1167, vi=1209, zh=1196)


def random_xquad_sized(question_ids: list[str], dim: int = 384, seed: int = 0):
    """A corpus of XQuAD-R's shape (11 languages, its candidate counts) with random answers and unit embeddings."""
    from batchmix.data.corpus import LAReQACorpus, LanguageSet

    gen = torch.Generator().manual_seed(seed)
    nq = len(question_ids)
    sets, q_emb, c_emb = {}, {}, {}
    for lang, n in XQUAD_R_CANDIDATES.items():
        answers = torch.randint(0, n, (nq,), generator=gen).tolist()
        sets[lang] = LanguageSet(lang=lang, question_ids=question_ids, questions=["q"] * nq, answer_index=answers, candidates=["c"] * n)
        q_emb[lang] = torch.nn.functional.normalize(torch.randn(nq, dim, generator=gen), dim=1)
        c_emb[lang] = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
    return LAReQACorpus("xquad-r-random", sets), q_emb, c_emb


def encode_corpus(corpus, model, batch_size: int = 64):
    """(q_emb, c_emb) of every language by `model.encode_texts`: a batching of its own, apart from an
    evaluation round's, for `evaluate_embeddings` as an independent path to a run's metrics."""
    q_emb = {lang: model.encode_texts(list(ls.questions), "query", batch_size, desc=False) for lang, ls in corpus.languages.items()}
    c_emb = {lang: model.encode_texts(list(ls.candidates), "passage", batch_size, desc=False) for lang, ls in corpus.languages.items()}
    return q_emb, c_emb
