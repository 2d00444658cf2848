"""TREC run and qrels files for every LAReQA setting, so any outside scorer can recompute ours.

Why: `batchmix.eval.metrics` computes every metric from the relevant items' ranks without ever
materialising a ranking; writing the rankings in trec_eval's format lets trec_eval, ranx
(`Run.from_file(path, kind="trec")`) or any other tool check those numbers independently.

Formats (trec_eval's): run lines `qid Q0 docid rank score tag`, qrels lines `qid 0 docid 1`.
Ids: query `<question id>.<query language>` (a question id is asked in every language holding
it, so the language makes it unique), document `<language>.<candidate index>` (the index into
that language's `LanguageSet.candidates`). Files, per setting: `multi.{run,qrels}` (every
question against the pool of all languages' candidates), `mono.<L>.*`, `cross.<X>-<Y>.*`.
Questions the evaluator skips in a cross setting (id absent from Y) are left out of its files;
a setting with no answerable question gets no files.

Depth: a run holds each query's top `depth` candidates (None: the full ranking). An outside
scorer treats relevant items below the cutoff as never retrieved, so its full-ranking mAP equals
our `map/<setting>` only at full depth; at depth k it is a lower bound that still equals ours for
every query whose answers all rank within the top k (its recall@j and ndcg@j, j <= k, equal
ours at any depth k). Ties: outside scorers order tied scores their own way
(trec_eval by docid), we rank them pessimistically; with float embeddings of distinct texts
ties essentially never occur.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from batchmix.data.corpus import LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_write_chunks, atomic_write_text

_NO_SPACE = re.compile(r"^[^\s\x00]+$")
_LINES_PER_CHUNK = 1 << 18


def _check_depth(depth: int | None) -> int | None:
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 0:
        raise BatchmixError(f"trec_depth={depth!r} must be a positive integer, or 0 / None for the full ranking")
    return int(depth) or None


@dataclass
class Ranking:
    """The top candidates of each query of one query language, best first.

    docs: int32 [n_queries, k], pool indices (languages concatenated in corpus order);
    scores: [n_queries, k], the evaluator's scores (float32, or float64 for float64 embeddings).
    """

    docs: np.ndarray
    scores: np.ndarray


class RunCollector:
    """Keeps the top `depth` candidates per query of every setting, from the evaluator's scores.

    Pass one to `evaluate_embeddings(..., runs=collector)`: for each query
    chunk the evaluator hands over the [chunk, pool] score matrix it computed anyway; the
    collector takes the top `depth` of the whole pool (multi) and of each language block
    (mono / cross) on the scoring device, and moves only those to the CPU. No second scoring
    pass. depth None or 0: the full ranking - for XQuAD-R that is 2 x 13k x 13k entries held
    (~2.7 GB) and ~20 GB of run files, so meant for small corpora and spot checks.
    """

    def __init__(self, depth: int | None = 100):
        self.depth = _check_depth(depth)
        self.langs: list[str] = []
        self.bounds: list[tuple[int, int]] = []
        # Per query language: chunks of (pool indices, scores); index 0 = multi, 1 + y = block y.
        self._parts: dict[str, list[list[tuple[np.ndarray, np.ndarray]]]] = {}
        self._joined: dict[tuple[str, int], Ranking] = {}

    def begin(self, langs: Sequence[str], bounds: Sequence[tuple[int, int]]) -> None:
        """Called by the evaluator before scoring: the pool's languages and their [start, stop) blocks."""
        self.langs = list(langs)
        self.bounds = [(int(a), int(b)) for a, b in bounds]
        self._parts = {lang: [[] for _ in range(1 + len(self.langs))] for lang in self.langs}
        self._joined = {}

    def add(self, query_lang: str, scores: Tensor) -> None:
        """Called by the evaluator per query chunk: `scores` [chunk, pool] of questions asked in `query_lang`."""
        parts = self._parts[query_lang]
        for slot, (a, b) in enumerate([(0, scores.shape[1]), *self.bounds]):
            k = b - a if self.depth is None else min(self.depth, b - a)
            values, index = scores[:, a:b].topk(k, dim=1, largest=True, sorted=True)
            parts[slot].append(((index + a).to(torch.int32).cpu().numpy(), values.cpu().numpy()))

    def _ranking(self, query_lang: str, slot: int) -> Ranking:
        key = (query_lang, slot)
        if key not in self._joined:
            parts = self._parts[query_lang][slot]
            if parts:
                ranking = Ranking(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
            else:
                a, b = ([(0, self.bounds[-1][1] if self.bounds else 0), *self.bounds])[slot]
                k = b - a if self.depth is None else min(self.depth, b - a)
                ranking = Ranking(np.zeros((0, k), dtype=np.int32), np.zeros((0, k), dtype=np.float32))
            self._parts[query_lang][slot] = []
            self._joined[key] = ranking
        return self._joined[key]

    def multi(self, query_lang: str) -> Ranking:
        """Top candidates of the whole pool for every question asked in `query_lang`."""
        return self._ranking(query_lang, 0)

    def block(self, query_lang: str, doc_lang: str) -> Ranking:
        """Top `doc_lang` candidates for every question asked in `query_lang` (mono when equal)."""
        return self._ranking(query_lang, 1 + self.langs.index(doc_lang))


def _check_ids(corpus: LAReQACorpus, tag: str) -> None:
    if not _NO_SPACE.match(tag):
        raise BatchmixError(f"TREC run tag {tag!r} must be one word without whitespace; pass e.g. tag='batchmix'")
    for lang, ls in corpus.languages.items():
        if not _NO_SPACE.match(lang):
            raise BatchmixError(f"language code {lang!r} contains whitespace; TREC ids cannot, rename the language")
        bad = next((q for q in ls.question_ids if not _NO_SPACE.match(q)), None)
        if bad is not None:
            raise BatchmixError(
                f"question id {bad!r} ({lang}) is empty or contains whitespace, which the TREC format cannot hold; "
                "use ids without spaces"
            )


def _check_runs(corpus: LAReQACorpus, runs: RunCollector) -> None:
    sizes = [len(corpus.languages[lang].candidates) for lang in corpus.langs]
    if runs.langs != corpus.langs or [b - a for a, b in runs.bounds] != sizes:
        raise BatchmixError(
            f"the run collector holds rankings for languages {runs.langs} but corpus {corpus.name!r} has "
            f"{corpus.langs}; pass the collector that evaluate_embeddings filled for this corpus"
        )
    for lang in corpus.langs:
        n = runs.multi(lang).docs.shape[0]
        if n != len(corpus.languages[lang].questions):
            raise BatchmixError(
                f"the run collector holds {n} rankings for {lang!r} questions but the corpus has "
                f"{len(corpus.languages[lang].questions)}; pass the collector filled by evaluating this corpus"
            )


def _run_chunks(query_prefix: np.ndarray, ranking: Ranking, doc_names: np.ndarray, tag: str) -> Iterator[str]:
    """`qid Q0 docid rank score tag` lines for every (query, ranked doc), ~`_LINES_PER_CHUNK` per string.

    query_prefix: StringDType [n_queries], "<qid> Q0 "; doc_names: StringDType [pool]. Built
    column-wise with numpy's string ufuncs: as fast as Python f-strings (~1 us a line, most of it
    float formatting) but scores keep their dtype's shortest round-trip decimal (a float32 reads
    "0.2130461", not "0.21304610371589661"), so an outside scorer sees exactly our order. Chunks
    bound the memory of full-depth runs.
    """
    n_queries, k = ranking.docs.shape
    if n_queries == 0 or k == 0:
        return
    text = np.dtypes.StringDType()
    ranks = np.strings.add(np.strings.add(" ", np.arange(1, k + 1).astype(text)), " ")[None, :]
    tail = f" {tag}\n"
    step = max(1, _LINES_PER_CHUNK // k)
    for a in range(0, n_queries, step):
        lines = np.strings.add(query_prefix[a : a + step, None], doc_names[ranking.docs[a : a + step]])
        lines = np.strings.add(lines, ranks)
        lines = np.strings.add(lines, np.strings.add(ranking.scores[a : a + step].astype(text), tail))
        yield "".join(lines.ravel().tolist())


def _kept_rows(ranking: Ranking, keep: np.ndarray) -> Ranking:
    return ranking if keep.all() else Ranking(ranking.docs[keep], ranking.scores[keep])


def write_trec(
    out_dir: str | os.PathLike,
    corpus: LAReQACorpus,
    runs: RunCollector,
    tag: str = "batchmix",
) -> list[Path]:
    """Write `<out_dir>/<setting>.run` and `.qrels` for every setting, plus a README.txt; returns the paths.

    `runs`: the collector `evaluate_embeddings` filled for this corpus. Loops over settings and
    query chunks only; the lines themselves are built by numpy.
    """
    _check_ids(corpus, tag)
    _check_runs(corpus, runs)
    out_dir = Path(out_dir)
    langs = corpus.langs
    text = np.dtypes.StringDType()
    doc_names = np.array(
        [f"{lang}.{i}" for lang in langs for i in range(len(corpus.languages[lang].candidates))], dtype=text
    )
    answer_of = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    prefix = {lang: np.array([f"{q}.{lang} Q0 " for q in ls.question_ids], dtype=text) for lang, ls in corpus.languages.items()}
    written: list[Path] = []

    def qrels_lines(x: str, targets: list[str]) -> list[str]:
        ids = corpus.languages[x].question_ids
        return [f"{q}.{x} 0 {y}.{answer_of[y][q]} 1\n" for q in ids for y in targets if q in answer_of[y]]

    multi_qrels = [line for x in langs for line in qrels_lines(x, langs)]
    if multi_qrels:
        chunks = (chunk for x in langs for chunk in _run_chunks(prefix[x], runs.multi(x), doc_names, tag))
        written.append(atomic_write_chunks(out_dir / "multi.run", chunks))
        written.append(atomic_write_text(out_dir / "multi.qrels", "".join(multi_qrels)))

    for x in langs:
        ids = corpus.languages[x].question_ids
        for y in langs:
            keep = np.array([q in answer_of[y] for q in ids], dtype=bool)
            if not keep.any():
                continue  # no question of x has an answer in y: the evaluator skips the whole setting
            setting = f"mono.{x}" if x == y else f"cross.{x}-{y}"
            ranking = _kept_rows(runs.block(x, y), keep)
            written.append(atomic_write_chunks(out_dir / f"{setting}.run", _run_chunks(prefix[x][keep], ranking, doc_names, tag)))
            written.append(atomic_write_text(out_dir / f"{setting}.qrels", "".join(qrels_lines(x, [y]))))

    depth = "the full ranking" if runs.depth is None else f"the top {runs.depth} candidates"
    readme = (
        f"TREC run/qrels files of the LAReQA evaluation of {corpus.name} (written by batchmix).\n"
        f"Runs hold {depth} per query: `qid Q0 docid rank score {tag}`; qrels `qid 0 docid 1`.\n"
        "Query id <question id>.<query language>; doc id <language>.<candidate index>.\n"
        "Settings: multi (every question vs. all languages' candidates), mono.<L>, cross.<X>-<Y>\n"
        "(questions with no answer in Y left out; no files if none has one).\n"
        "An outside scorer's full-ranking mAP equals batchmix's map/<setting> only at full depth\n"
        "(trec_depth=None); at depth k it is a lower bound. recall@j and ndcg@j (j <= k) match at any depth.\n"
    )
    written.append(atomic_write_text(out_dir / "README.txt", readme))
    return written
