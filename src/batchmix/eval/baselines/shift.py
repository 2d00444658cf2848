"""Shift (Jang, Hong, Moon and Lim 2026, arXiv 2606.18801): subtract a per-language offset from the
document embeddings at indexing time.

For each language L, the offset relative to a source language S is the mean difference between
the embeddings of parallel texts, v_L = mean_i (e_L(x_i) - e_S(x_i)) (v_S = 0); every candidate of
L becomes e - v_L, re-normalised. Queries are left as they are: the fix lives in the index, so it
costs nothing at query time. The parallel texts here are answer sentences: the answer of one
question id in L and in S (XQuAD-R's training articles are translations of each other), each
(L, S) sentence pair counted once however many questions it answers.
"""

from __future__ import annotations

from batchmix.eval.baselines.base import Embeddings, FitSample, renormalise


class Shift:
    name = "shift"

    def __init__(self, source: str = "en") -> None:
        self.source = source
        self.offset: Embeddings = {}

    def fit(self, sample: FitSample) -> None:
        self.offset = {}
        if self.source not in sample.langs:
            return  # no parallel pairs with the source: uncovered() reports every language
        languages = sample.corpus.languages
        source_answer = dict(zip(languages[self.source].question_ids, languages[self.source].answer_index))
        src = sample.candidates[self.source]
        for lang, ls in languages.items():
            # one pair per distinct (L sentence, S sentence): questions that share an answer add no new pair
            pairs = sorted({(a, source_answer[qid]) for qid, a in zip(ls.question_ids, ls.answer_index) if qid in source_answer})
            if pairs:
                rows, src_rows = zip(*pairs)
                self.offset[lang] = (sample.candidates[lang][list(rows)] - src[list(src_rows)]).mean(dim=0)

    def uncovered(self, langs: list[str]) -> list[str]:
        return [lang for lang in langs if lang not in self.offset]

    def transform(self, queries: Embeddings, candidates: Embeddings) -> tuple[Embeddings, Embeddings]:
        return dict(queries), {lang: renormalise(rows - self.offset[lang]) for lang, rows in candidates.items()}
