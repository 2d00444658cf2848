"""Fuzzing the data loaders (issue #7, item 4): random and mutated LAReQA JSON files and JSONL training
rows, written to disk and read through the public loaders (`load_lareqa`, `load_corpus`,
`load_splits`, `load_training_jsonl`). Each either loads a consistent result or raises `BatchmixError`
with one line that names the file; any other exception fails the test.

Mutations start from a small valid document: drop a key or list item, replace a value by random JSON
of any type, retype it, set numbers negative / huge / off by one, empty lists and strings, unicode
text, duplicated items; then, on the bytes, truncation, random bytes, a byte-order mark. Derandomized,
so CI sees the same examples every run.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from batchmix.data.corpus import LAReQACorpus, TrainingGroups
from batchmix.data.jsonl import load_training_jsonl
from batchmix.data.lareqa import load_lareqa
from batchmix.data.load import load_corpus, load_splits
from batchmix.core.errors import BatchmixError

FUZZ = settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}
TEXT = {"en": ("Sentence {k} of article {a}.", "What is said in {a}-{k}?"),
        "de": ("Satz {k} über die Straße {a}, größer.", "Was steht in {a}-{k}? 数据")}


def lareqa_document(lang: str, n_articles: int = 4, n_sentences: int = 2) -> dict:
    """A valid LAReQA file: one paragraph per article, one question per sentence, ids shared by language."""
    sentence, question = TEXT[lang]
    articles = []
    for a in range(n_articles):
        sentences = [sentence.format(a=a, k=k) for k in range(n_sentences)]
        starts = [sum(len(s) + 1 for s in sentences[:k]) for k in range(n_sentences)]
        qas = [{"id": f"q{a}-{k}", "question": question.format(a=a, k=k),
                "answers": [{"text": sentences[k][:5], "answer_start": starts[k] + 1}]} for k in range(n_sentences)]
        articles.append({"title": f"T{a}", "paragraphs": [{
            "context": " ".join(sentences), "sentences": sentences,
            "sentence_breaks": [[b, b + len(s)] for b, s in zip(starts, sentences)], "qas": qas}]})
    return {"version": "fuzz", "data": articles}


def training_rows() -> list[dict]:
    return [{"id": f"p{i}", "lang": lang, "query": f"query {i} {lang} ½", "positive": f"passage {i} {lang}",
             **({"context": f"context {i}"} if i % 2 else {})} for i in range(3) for lang in ("de", "en")]


# ------------------------------------------------------------------------------------- strategies

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON tree (keys and list indices), the root's children first."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out = []
    for key, child in children:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


# Keys the loaders interpret: half of the mutations aim at one of these (or an item of its list),
# so the fuzzer spends its examples on the format rather than on free text.
SCHEMA_KEYS = {"data", "paragraphs", "context", "sentences", "sentence_breaks", "qas", "id", "question", "answers",
               "answer_start", "title", "lang", "query", "positive"}


def _mutate(draw, tree: Any, max_steps: int = 4, aim: frozenset[str] | set[str] = SCHEMA_KEYS) -> Any:
    """Apply up to `max_steps` random structural mutations to a copy of `tree`; half of them hit a
    path through one of the `aim` keys (tests/test_input_fuzz.py aims at `negatives` and `answers`)."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, max_steps]))):  # mostly one mutation: many still load
        paths = _paths(tree)
        aimed = [p for p in paths if any(k in aim for k in p[-2:] if isinstance(k, str))]
        if not paths:
            break
        *parent_path, key = draw(st.sampled_from(aimed if aimed and draw(st.booleans()) else paths))
        parent = tree
        for step in parent_path:
            parent = parent[step]
        value = parent[key]
        kind = draw(st.sampled_from(["drop", "random", "retype", "number", "empty", "unicode", "duplicate"]))
        if kind == "drop":
            del parent[key]
        elif kind == "random":
            parent[key] = draw(json_values)
        elif kind == "retype":
            parent[key] = draw(st.sampled_from([str(value), [value], {"value": value}, None, 0, True, 1.5]))
        elif kind == "number":
            parent[key] = draw(st.sampled_from([-1, 0, 1, 10**12, -(10**12), 2**63, 10**30])) if not isinstance(value, int) \
                else value + draw(st.sampled_from([-1, 1, -(10**6), 10**6, 2**64]))
        elif kind == "empty":
            parent[key] = draw(st.sampled_from([[], {}, "", " "]))
        elif kind == "unicode":
            parent[key] = draw(st.text(st.characters(codec="utf-8") | st.integers(0xD800, 0xDFFF).map(chr), max_size=10))
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
    return tree


@st.composite
def file_bytes(draw, tree: Any) -> bytes:
    """A mutated (or wholly random) JSON document as bytes, sometimes damaged at the byte level."""
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values | st.fixed_dictionaries({"data": json_values}))
    else:
        document = _mutate(draw, tree)
    raw = json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    return _damage(draw, raw, ["none"] * 6 + ["truncate", "bytes", "bom"])


def _damage(draw, raw: bytes, kinds: list[str]) -> bytes:
    """Byte-level damage a file can suffer: cut short, stray bytes, a byte-order mark, CRLF lines."""
    damage = draw(st.sampled_from(kinds))
    if damage == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "crlf":
        raw = raw.replace(b"\n", b"\r\n")
    return raw


@st.composite
def jsonl_bytes(draw, rows: list[dict] | None = None, aim: frozenset[str] | set[str] = SCHEMA_KEYS) -> bytes:
    """Mutated training rows (default `training_rows()`), one JSON object per line, plus line-level damage."""
    rows = _mutate(draw, training_rows() if rows is None else rows, aim=aim)
    rows = rows if isinstance(rows, list) else [rows]
    lines = [json.dumps(row, ensure_ascii=draw(st.booleans())) for row in rows]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(["", "   ", "{", "[1, 2]", "null", '{"id": "p0"}', "\t", "not json"])))
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    raw = _damage(draw, raw, ["none"] * 5 + ["truncate", "bytes", "bom", "crlf"])
    return raw


# ------------------------------------------------------------------------------------- invariants


def assert_clear_error(err: BatchmixError, names: str | None = None) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)
    if names is not None:
        assert names in message, f"the error does not name {names}: {message}"


def assert_encodable(*texts: str) -> None:
    """What a loader returns must reach a tokenizer: no lone surrogates (a JSON escape can make one)."""
    for text in texts:
        text.encode("utf-8")


def assert_consistent_corpus(corpus: LAReQACorpus, source: dict[str, Any]) -> None:
    """Every list lines up, ids are unique per language, every answer index points at a sentence of
    the question's own paragraph (the one whose span holds answer_start), translations share a group."""
    assert corpus.langs == sorted(corpus.langs)
    group_of: dict[str, int] = {}
    for lang, ls in corpus.languages.items():
        n_q, n_c = len(ls.question_ids), len(ls.candidates)
        assert n_q > 0 and len(ls.questions) == len(ls.answer_index) == len(ls.question_group) == n_q
        assert len(ls.candidate_contexts) == len(ls.candidate_group) == n_c
        assert len(set(ls.question_ids)) == n_q
        expected = _answers_in(source[lang])
        for qid, question, a, g in zip(ls.question_ids, ls.questions, ls.answer_index, ls.question_group):
            assert isinstance(qid, str) and isinstance(question, str) and question.strip()
            assert_encodable(qid, question, ls.candidates[a])
            assert 0 <= a < n_c and ls.candidate_group[a] == g
            assert (ls.candidate_contexts[a], ls.candidates[a]) == expected[qid]
            assert group_of.setdefault(qid, g) == g, "one question id in two article groups"


def _answers_in(document: Any) -> dict[str, tuple[str, str]]:
    """Oracle, for a document the loader accepted: question id -> (its paragraph, its answer sentence)."""
    out = {}
    for article in document["data"]:
        for para in article["paragraphs"]:
            for qa in para.get("qas") or []:
                start = qa["answers"][0]["answer_start"]
                k = next(k for k, (b, e) in enumerate(para["sentence_breaks"]) if b <= start < e)
                out[str(qa["id"])] = (para["context"], para["sentences"][k])
    return out


def assert_consistent_splits(groups: TrainingGroups, splits: dict[str, LAReQACorpus]) -> None:
    assert list(splits) == list(SPLIT)
    ids = {name: {q for ls in split.languages.values() for q in ls.question_ids} for name, split in splits.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert groups.ids == sorted(set(groups.ids)) and set(groups.ids) == ids["train"]
    assert_consistent_groups(groups)


def assert_consistent_groups(groups: TrainingGroups) -> None:
    assert len(groups) > 0 and groups.ids == sorted(set(groups.ids)) and len(groups.pairs) == len(groups.ids)
    for pairs in groups.pairs:
        assert pairs and list(pairs) == sorted(pairs)
        for pair in pairs.values():
            assert isinstance(pair.query, str) and pair.query.strip() and isinstance(pair.positive, str) and pair.positive.strip()
            assert all(isinstance(n.text, str) and n.text.strip() for n in pair.negatives)
            assert_encodable(pair.query, pair.positive, *(n.text for n in pair.negatives))


# ------------------------------------------------------------------------------------- properties


def _load_all(root: Path, bad_file: Path) -> str:
    """The mutated file through every LAReQA entry point: load_lareqa, load_corpus, load_splits.
    Returns what happened, for hypothesis' statistics (`pytest --hypothesis-show-statistics`)."""
    try:
        corpus = load_lareqa(root)
    except BatchmixError as err:
        assert_clear_error(err, names=str(bad_file))
        return f"lareqa error: {str(err).replace(str(bad_file), '<file>')[:50]}"
    source = {lang: json.loads((root / f"{lang}.json").read_text(encoding="utf-8-sig")) for lang in corpus.langs}
    assert_consistent_corpus(corpus, source)
    assert_consistent_corpus(load_corpus({"root": str(root), "languages": None, "name": "fuzz", "source": "local"}), source)
    try:
        groups, splits = load_splits({"root": str(root), "languages": None, "name": "fuzz", "source": "local", "train_file": None, "split": SPLIT, "split_seed": 0})
    except BatchmixError as err:  # e.g. too few article groups left for three splits
        assert_clear_error(err)
        return "lareqa loaded, split error"
    assert_consistent_splits(groups, splits)
    return "lareqa loaded and split"


@pytest.mark.slow
@FUZZ
@given(raw=file_bytes(lareqa_document("de")))
def test_mutated_lareqa_loads_or_fails_clearly(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "en.json").write_text(json.dumps(lareqa_document("en")), encoding="utf-8")
        (root / "de.json").write_bytes(raw)
        event(_load_all(root, root / "de.json"))


@pytest.mark.slow
@FUZZ
@given(raw=jsonl_bytes())
def test_mutated_jsonl_loads_or_fails_clearly(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(raw)
        try:
            groups = load_training_jsonl(path)
        except BatchmixError as err:
            assert_clear_error(err, names=str(path))
            event(f"jsonl error: {str(err).replace(str(path), '<file>')[:50]}")
            return
        event("jsonl loaded")
        assert_consistent_groups(groups)
        rows = [line for line in path.open(encoding="utf-8-sig") if line.strip()]
        assert sum(len(p) for p in groups.pairs) == len(rows), "a row was dropped or counted twice"


NASTY = {
    "number_of_5000_digits": '{"data": [' + "9" * 5000 + "]}",
    "nested_100000_deep": "[" * 100_000 + "]" * 100_000,
    "byte_order_mark": "\ufeff" + json.dumps(lareqa_document("de")),
    "lone_surrogate_in_question": json.dumps(lareqa_document("de")).replace("Was steht", "\\ud800 steht", 1),
    "nan_answer_start": json.dumps(lareqa_document("de")).replace('"answer_start": 1', '"answer_start": NaN', 1),
    "qas_is_a_number": json.dumps(lareqa_document("de")).replace('"qas": [', '"qas": 5, "x": [', 1),
    "empty_file": "",
}


@pytest.mark.parametrize("name", NASTY)
def test_known_nasty_lareqa_files(tmp_path: Path, name: str):
    (tmp_path / "en.json").write_text(json.dumps(lareqa_document("en")), encoding="utf-8")
    (tmp_path / "de.json").write_text(NASTY[name], encoding="utf-8", errors="surrogatepass")
    _load_all(tmp_path, tmp_path / "de.json")


@pytest.mark.parametrize("name", NASTY)
def test_known_nasty_jsonl_lines(tmp_path: Path, name: str):
    good = json.dumps(training_rows()[0])
    line = {"byte_order_mark": "\ufeff" + good, "lone_surrogate_in_question": good.replace("\"query 0", "\"\\udfff 0", 1)}.get(name, NASTY[name])
    path = tmp_path / "pairs.jsonl"
    path.write_text(line + "\n" + json.dumps(training_rows()[1]) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        groups = load_training_jsonl(path)
    except BatchmixError as err:
        assert_clear_error(err, names=str(path))
    else:
        assert_consistent_groups(groups)
