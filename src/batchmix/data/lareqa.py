"""Load LAReQA JSON (XQuAD-R, MLQA-R) into a `LAReQACorpus`.

LAReQA (Roy et al. 2020, arXiv 2004.05484) turns extractive QA into sentence retrieval: every
sentence of every paragraph is a candidate, and a question's answer is the sentence whose
`sentence_breaks` span holds its answer's `answer_start`. The files are SQuAD v1.1 JSON plus
per-paragraph `sentences` / `sentence_breaks`, one file per language.

Splits must keep whole articles together *across languages* (else a question leaks through its
translation), so article groups are language-independent: a union-find over (language, article)
nodes linked by shared question ids, and by identical paragraphs within a language (MLQA repeats
English paragraphs under different language pairs). That needs no assumption that articles are
parallel, so XQuAD-R (11-way parallel) and MLQA-R (each id in 2-4 languages) load the same way.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchmix.data.corpus import LanguageSet, LAReQACorpus
from batchmix.data.root import resolve_data_root
from batchmix.core.errors import BatchmixError

# File stems that count as language codes (`en`, `zh`, `pt-br`, `zh_Hans`); anything else in the
# folder (e.g. `dataset_info.json`) is ignored when languages are discovered.
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]+)*$")

_NOT_LAREQA = (
    "it must be LAReQA format (SQuAD v1.1 plus per-paragraph 'sentences' and 'sentence_breaks', "
    "as in google-research-datasets/lareqa), not plain SQuAD"
)


def available_languages(root: Path) -> list[str]:
    """Sorted language codes with a `<code>.json` file in `root`."""
    return sorted(p.stem for p in root.glob("*.json") if p.is_file() and LANGUAGE_CODE.match(p.stem))


def read_squad_json(path: Path) -> list[Any]:
    """The `data` list of a SQuAD-style JSON file, with file/line/column on any parse failure.

    `utf-8-sig`: a byte-order mark (as some Windows editors write) is skipped, not a parse error.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise BatchmixError(f"{path} does not exist; check data.root and data.languages") from None
    except OSError as e:
        raise BatchmixError(f"cannot read {path} ({e.strerror}); check its permissions, data.root and data.languages") from None
    except json.JSONDecodeError as e:
        raise BatchmixError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}, char {e.pos}: {e.msg}); "
                            "the file is malformed or truncated, re-download it") from None
    except UnicodeDecodeError as e:
        raise BatchmixError(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); re-download it") from None
    except (ValueError, RecursionError) as e:  # a number of > 4300 digits, or nesting deeper than Python's stack
        raise BatchmixError(f"{path} cannot be parsed as JSON ({str(e).splitlines()[0]}); the file is corrupt, re-download it") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise BatchmixError(f"{path} has no top-level 'data' list; {_NOT_LAREQA}")
    return document["data"]


def _id(qid: str) -> str:
    """A question id as shown in an error: as is, unless it would break the one-line message."""
    return qid if qid.isprintable() and len(qid) <= 64 else reprlib.repr(qid)


def check_text(where: str, what: str, *texts: str) -> None:
    """Reject text no tokenizer can encode: a lone UTF-16 surrogate (JSON allows the escape "\\ud800")
    would otherwise load fine and only fail at the first batch, with a TypeError from the tokenizer."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BatchmixError(
                f"{where}: {what} holds an unpaired surrogate {text[e.start]!r} (at character {e.start}), which no "
                "tokenizer accepts; the file is corrupt, re-export it as UTF-8"
            ) from None


def _sentence_spans(where: str, context: str, breaks: Any, n_sentences: int) -> list[tuple[int, int]]:
    if not isinstance(breaks, list) or len(breaks) != n_sentences:
        got = len(breaks) if isinstance(breaks, list) else type(breaks).__name__
        raise BatchmixError(f"{where}: 'sentence_breaks' has {got} entries but 'sentences' has {n_sentences}; "
                            "they must match one-to-one, re-export or re-download the file")
    spans = []
    for k, span in enumerate(breaks):
        ok = (
            isinstance(span, (list, tuple))
            and len(span) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            and 0 <= span[0] <= span[1] <= len(context)
        )
        if not ok:
            raise BatchmixError(
                f"{where}: sentence_breaks[{k}]={reprlib.repr(span)} is not a [start, end) pair inside the context "
                f"(length {len(context)}); re-export or re-download the file"
            )
        spans.append((span[0], span[1]))
    return spans


def language_set_from_squad(data: list[Any], lang: str, source: str) -> LanguageSet:
    """Turn one language's parsed SQuAD-style `data` list into a `LanguageSet`.

    Questions and candidates keep file order. `question_group` / `candidate_group` hold the
    article index *within this file*; `corpus_from_language_sets` replaces them with the
    language-independent article groups. `source` (file path or URL) names the file in errors.
    """
    ls = LanguageSet(lang=lang)
    seen_ids: set[str] = set()
    for a_idx, article in enumerate(data):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise BatchmixError(f"{source}: article {a_idx} has no 'paragraphs' list; {_NOT_LAREQA}")
        title = article.get("title")
        for p_idx, para in enumerate(article["paragraphs"]):
            where = f"{source}: article {a_idx} ({reprlib.repr(title)}) paragraph {p_idx}"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise BatchmixError(f"{where} has no 'context' string; {_NOT_LAREQA}")
            context = para["context"]
            sentences = para.get("sentences")
            if not isinstance(sentences, list) or para.get("sentence_breaks") is None:
                raise BatchmixError(f"{where} has no 'sentences'/'sentence_breaks'; {_NOT_LAREQA}")
            if not all(isinstance(s, str) for s in sentences):
                raise BatchmixError(f"{where}: 'sentences' must be a list of strings; {_NOT_LAREQA}")
            check_text(where, "its context or a sentence", context, *sentences)
            spans = _sentence_spans(where, context, para["sentence_breaks"], len(sentences))

            first_candidate = len(ls.candidates)
            ls.candidates.extend(sentences)
            ls.candidate_contexts.extend([context] * len(sentences))
            ls.candidate_group.extend([a_idx] * len(sentences))

            qas = para.get("qas")
            if qas is not None and not isinstance(qas, list):
                raise BatchmixError(f"{where}: 'qas' is a {type(qas).__name__}, not a list of questions; {_NOT_LAREQA}")
            for q_idx, qa in enumerate(qas or []):
                qid = qa.get("id") if isinstance(qa, dict) else None
                if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid).strip() == "":
                    raise BatchmixError(f"{where}: question {q_idx} has id={reprlib.repr(qid)}; every question needs a non-empty "
                                        "string 'id' (it links the question to its translations)")
                qid = str(qid)
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise BatchmixError(f"{source}: question {_id(qid)} has an empty or missing 'question' text; give it one or drop the question")
                check_text(f"{source}: question {_id(qid)}", "its id or text", qid, question)
                if qid in seen_ids:
                    raise BatchmixError(f"{source}: question id {_id(qid)} appears twice in language {lang!r}; ids must be "
                                        "unique within a language (they link a question to its translations)")
                seen_ids.add(qid)
                answers = qa.get("answers")
                if not isinstance(answers, list) or not answers or not isinstance(answers[0], dict):
                    raise BatchmixError(f"{source}: question {_id(qid)} has no 'answers' list; {_NOT_LAREQA}")
                start = answers[0].get("answer_start")
                if not isinstance(start, int) or isinstance(start, bool):
                    raise BatchmixError(
                        f"{source}: question {_id(qid)} has answer_start={reprlib.repr(start)}, not an integer character "
                        "offset into its context; the file is corrupt, re-download it"
                    )
                if not 0 <= start < len(context):
                    raise BatchmixError(f"{source}: question {_id(qid)} has answer_start={start} outside its context "
                                        f"(length {len(context)}); the file is corrupt, re-download it")
                answer_sentence = next((k for k, (b, e) in enumerate(spans) if b <= start < e), None)
                if answer_sentence is None:
                    raise BatchmixError(f"{source}: question {_id(qid)} has answer_start={start} outside every sentence_breaks "
                                        f"span of its paragraph; the file is corrupt, re-download it")
                if not sentences[answer_sentence].strip():
                    raise BatchmixError(
                        f"{where}: question {_id(qid)} has an empty answer sentence (sentences[{answer_sentence}]); "
                        "the file is corrupt, re-download it"
                    )
                ls.question_ids.append(qid)
                ls.questions.append(question)
                ls.answer_index.append(first_candidate + answer_sentence)
                ls.question_group.append(a_idx)
    if not ls.question_ids:
        raise BatchmixError(f"{source}: language {lang!r} has no questions; drop it from data.languages")
    return ls


def _assign_article_groups(sets: dict[str, LanguageSet]) -> None:
    """Replace file-local article indices with language-independent article groups, in place.

    Written by hand because it is a dozen lines of union-find; scipy's connected_components
    would add a runtime dependency for it. Components are numbered by their smallest question id
    (then by (language, article) for question-less articles) so numbering is deterministic.
    """
    Node = tuple[str, int]
    parent: dict[Node, Node] = {}

    def find(node: Node) -> Node:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def link(node: Node, key: Any, first_node_of: dict[Any, Node]) -> None:
        parent.setdefault(node, node)
        other = first_node_of.setdefault(key, node)
        a, b = find(node), find(other)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first_by_id: dict[Any, Node] = {}
    first_by_paragraph: dict[Any, Node] = {}
    for lang, ls in sets.items():
        for qid, article in zip(ls.question_ids, ls.question_group):
            link((lang, article), qid, first_by_id)
        for context, article in zip(ls.candidate_contexts, ls.candidate_group):
            link((lang, article), (lang, context), first_by_paragraph)

    order_key: dict[Node, tuple] = {}
    for lang, ls in sets.items():
        for qid, article in zip(ls.question_ids, ls.question_group):
            root = find((lang, article))
            order_key[root] = min(order_key.get(root, (1,)), (0, qid))
        for article in ls.candidate_group:
            root = find((lang, article))
            order_key[root] = min(order_key.get(root, (2,)), (1, lang, article))
    number = {root: g for g, root in enumerate(sorted(order_key, key=order_key.__getitem__))}
    for lang, ls in sets.items():
        ls.question_group = [number[find((lang, a))] for a in ls.question_group]
        ls.candidate_group = [number[find((lang, a))] for a in ls.candidate_group]


def corpus_from_language_sets(name: str, sets: dict[str, LanguageSet]) -> LAReQACorpus:
    """Assemble per-language sets (from `language_set_from_squad`) into a corpus with article groups."""
    if not sets:
        raise BatchmixError(f"corpus {name!r} has no languages; set data.languages to at least one language")
    ordered = {lang: sets[lang] for lang in sorted(sets)}
    _assign_article_groups(ordered)
    return LAReQACorpus(name=name, languages=ordered)


def lareqa_files(
    root: str | os.PathLike | None,
    languages: list[str] | str | None = None,
    name: str | None = None,
) -> dict[str, Path]:
    """`{language: <root>/<lang>.json}` for the requested languages (None: every language file in
    `root`), without reading any file: the CLI calls it before the heavy imports, so a wrong root or
    language code costs a second. `root=None` resolves the folder with `resolve_data_root`."""
    root_path = resolve_data_root(None, name or "xquad-r") if root is None else Path(str(root)).expanduser()
    if not root_path.is_dir():
        raise BatchmixError(f"data root {root_path} does not exist; set data.root=/path/to/xquad-r "
                            "(the folder holding <lang>.json) or export BATCHMIX_DATA=/path/to/xquad-r")
    available = available_languages(root_path)
    languages = [languages] if isinstance(languages, str) else languages
    if languages is None:
        if not available:
            raise BatchmixError(f"data root {root_path} holds no <lang>.json files; point data.root at the LAReQA folder")
        languages = available
    elif not isinstance(languages, Sequence):
        raise BatchmixError(f"data.languages={languages!r} must be a list of language codes, e.g. data.languages=[en,de]")
    requested = sorted(set(str(lang) for lang in languages))
    unknown = [lang for lang in requested if lang not in available]
    if unknown:
        raise BatchmixError(f"unknown language code(s) {', '.join(unknown)}: no such <lang>.json in {root_path}; "
                            f"available there: {', '.join(available) or 'none'}")
    if not requested:
        raise BatchmixError("data.languages is empty; list at least one language (e.g. data.languages=[en,de]) or leave it unset for all")
    return {lang: root_path / f"{lang}.json" for lang in requested}


def load_lareqa(
    root: str | os.PathLike | None,
    languages: list[str] | None = None,
    name: str | None = None,
) -> LAReQACorpus:
    """Load `<root>/<lang>.json` for each language (None: every language file in `root`).

    `root=None` resolves the data folder with `resolve_data_root` (for dataset `name`, default
    xquad-r). The corpus is named `name`, else after the folder.
    """
    files = lareqa_files(root, languages, name)
    sets = {lang: language_set_from_squad(read_squad_json(path), lang, source=str(path)) for lang, path in files.items()}
    return corpus_from_language_sets(name or next(iter(files.values())).parent.resolve().name, sets)
