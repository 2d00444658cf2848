"""In-memory shapes of retrieval data, shared by the loaders, the sampler and the evaluator.

`LAReQACorpus` is the evaluation view (per language: questions, candidate sentences and the
index of each question's answer sentence). `TrainingGroups` is the training view (per question
id: the (query, positive) pair in every language the id exists in). Both are plain data so the
loaders (LAReQA JSON, JSONL, the hub) and the consumers never depend on each other.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field


@dataclass
class LanguageSet:
    """One language of a LAReQA-style corpus.

    Question `i` has id `question_ids[i]`; its answer sentence is `candidates[answer_index[i]]`.
    Ids are shared across languages: the same id in another language is the parallel question,
    and its answer there is that language's answer sentence. `*_group` is the language-independent
    article group each item belongs to (used to split by article).
    """

    lang: str
    question_ids: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    answer_index: list[int] = field(default_factory=list)
    question_group: list[int] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    candidate_contexts: list[str] = field(default_factory=list)
    candidate_group: list[int] = field(default_factory=list)

    def subset(self, groups: set[int]) -> "LanguageSet":
        """Keep only the questions and candidates of the given article groups (re-indexed)."""
        keep_c = [i for i, g in enumerate(self.candidate_group) if g in groups]
        new_index = {old: new for new, old in enumerate(keep_c)}
        keep_q = [i for i, g in enumerate(self.question_group) if g in groups]
        return LanguageSet(
            lang=self.lang,
            question_ids=[self.question_ids[i] for i in keep_q],
            questions=[self.questions[i] for i in keep_q],
            answer_index=[new_index[self.answer_index[i]] for i in keep_q],
            question_group=[self.question_group[i] for i in keep_q],
            candidates=[self.candidates[i] for i in keep_c],
            candidate_contexts=[self.candidate_contexts[i] for i in keep_c],
            candidate_group=[self.candidate_group[i] for i in keep_c],
        )


@dataclass
class LAReQACorpus:
    """A multilingual QA retrieval corpus: one `LanguageSet` per language code, in sorted order."""

    name: str
    languages: dict[str, LanguageSet]

    @property
    def langs(self) -> list[str]:
        return list(self.languages)

    @property
    def groups(self) -> list[int]:
        """Sorted article-group indices present in any language."""
        return sorted({g for ls in self.languages.values() for g in ls.question_group + ls.candidate_group})

    def subset(self, groups: set[int] | list[int], name: str | None = None) -> "LAReQACorpus":
        groups = set(groups)
        return LAReQACorpus(
            name=name or self.name,
            languages={lang: ls.subset(groups) for lang, ls in self.languages.items()},
        )

    def training_groups(self) -> "TrainingGroups":
        """The training view: for every question id, its (question, answer sentence) per language."""
        by_id: dict[str, dict[str, Pair]] = {}
        for lang, ls in self.languages.items():
            for qid, q, a in zip(ls.question_ids, ls.questions, ls.answer_index):
                by_id.setdefault(qid, {})[lang] = Pair(query=q, positive=ls.candidates[a])
        ids = sorted(by_id)
        return TrainingGroups(ids=ids, pairs=[by_id[i] for i in ids])


@dataclass(frozen=True)
class Negative:
    """A hard negative passage: its text, its language, and the query ids whose answer it is, so it
    is never scored as a negative of those queries (losses/false_negatives.py). `id` is the one id
    the `ids` mask reads (the smallest, as before `answers` existed); `answers` every id."""

    text: str
    lang: str
    id: str | None = None
    answers: tuple[str, ...] = ()

    def __post_init__(self) -> None:  # `answers` holds `id` too, sorted, so equal negatives compare equal
        object.__setattr__(self, "answers", tuple(sorted({*self.answers, *((self.id,) if self.id is not None else ())})))


@dataclass(frozen=True)
class Pair:
    """A query and its positive passage in one language, with the hard negatives given for them
    (data/negatives.py chooses which join a batch) and the ids of the other queries the positive
    also answers when the data says so (JSONL / HF `answers`)."""

    query: str
    positive: str
    negatives: tuple[Negative, ...] = ()
    answers: tuple[str, ...] = ()


def text_key(lang: str, text: str) -> bytes:
    """A (language, text) as a short stable key: the answers index holds keys, not texts."""
    return hashlib.blake2b(f"{lang}\0{text}".encode(), digest_size=12).digest()


@dataclass
class TrainingGroups:
    """Parallel training pairs grouped by id: `pairs[i][lang]` is id `ids[i]` in language `lang`.

    A group may exist in any subset of languages (XQuAD-R: all 11; MLQA-R: 2-4). `pairs` may be a
    read-only sequence of mappings instead of a list (data/hf.py: texts read from Arrow on access).
    """

    ids: list[str]
    pairs: list[dict[str, Pair]]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for p in self.pairs for lang in p})

    def langs_of(self, i: int) -> list[str]:
        return sorted(self.pairs[i])

    # --- which queries a passage answers ---------------------------------------------------------
    @functools.cached_property
    def _answer_index(self) -> dict[bytes, frozenset[str]]:
        """(language, text) key -> the ids whose positive in that language it is, with the ids
        each of those pairs names in `answers`. Parallel data makes this cross-lingual by itself:
        two questions with one English answer sentence share its translation in every language."""
        index: dict[bytes, set[str]] = {}
        for qid, pairs in zip(self.ids, self.pairs):
            for lang, pair in pairs.items():
                index.setdefault(text_key(lang, pair.positive), set()).update((qid, *pair.answers))
        return {k: frozenset(v) for k, v in index.items()}

    def answers(self, lang: str, text: str) -> frozenset[str]:
        """The ids of the queries a passage in `lang` answers, as far as the training data tells."""
        return self._answer_index.get(text_key(lang, text), frozenset())

    def positive_answers(self, group: int, lang: str) -> frozenset[str]:
        """Every id the positive of (`group`, `lang`) answers: its own, those sharing the text, its `answers`."""
        pair = self.pairs[group][lang]
        return self.answers(lang, pair.positive) | {self.ids[group], *pair.answers}

    def negative_answers(self, negative: Negative) -> frozenset[str]:
        """Every id a hard negative answers: the ids it carries, and those whose positive it is."""
        return self.answers(negative.lang, negative.text) | set(negative.answers)

    @functools.cached_property
    def shared_answers(self) -> list[frozenset[int]]:
        """For each group, the other groups one of its positives answers (in any language): the
        queries that must not share a batch with it under `data.sampler.avoid_shared_answers`."""
        position = {qid: g for g, qid in enumerate(self.ids)}
        out: list[set[int]] = [set() for _ in self.ids]
        for ids in self._answer_index.values():
            members = sorted(position[i] for i in ids if i in position)
            for g in members:
                out[g].update(members)
        return [frozenset(s - {g}) for g, s in enumerate(out)]
