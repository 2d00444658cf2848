"""The generic JSONL training format: grouping, errors with file:line, and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonl_rows import write_training_jsonl

from batchmix.data.corpus import Negative, Pair, TrainingGroups
from batchmix.data.jsonl import load_training_jsonl
from batchmix.data.lareqa import load_lareqa
from batchmix.data.split import split_by_article
from batchmix.core.errors import BatchmixError


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


def row(qid, lang, **extra):
    return {"id": qid, "lang": lang, "query": f"{lang} query {qid}", "positive": f"{lang} answer {qid}", **extra}


def test_groups_by_sorted_id_with_variable_languages(tmp_path):
    path = write_rows(tmp_path / "train.jsonl", [
        row("b", "en"), row("a", "en", context="ctx"), "", row("b", "zh"), row("a", "de"), row("c", "th"), row(7, "en"),
    ])  # fmt: skip
    groups = load_training_jsonl(path)
    assert groups.ids == ["7", "a", "b", "c"]
    assert [groups.langs_of(i) for i in range(len(groups))] == [["en"], ["de", "en"], ["en", "zh"], ["th"]]
    assert groups.pairs[1]["en"] == Pair(query="en query a", positive="en answer a")  # `context` is not read
    assert groups.languages == ["de", "en", "th", "zh"]


def test_round_trip(tmp_path):
    groups = TrainingGroups(
        ids=["q1", "q2"],
        pairs=[
            {"en": Pair("Who?", "Him.", (Negative("She.", "en"), Negative("Elle.", "fr", "q9"))), "zh": Pair("谁？", "他。")},
            {"ar": Pair("متى؟", "أمس.\nline two")},
        ],
    )
    path = write_training_jsonl(groups, tmp_path / "out" / "train.jsonl")
    assert path.read_text(encoding="utf-8").count("\n") == 3
    assert "谁" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert load_training_jsonl(path) == groups


def test_answers_of_rows_and_negatives_are_read_and_written_back(tmp_path):
    path = write_rows(tmp_path / "train.jsonl", [
        row("a", "en", answers=["b", 7]),
        row("b", "en", negatives=["plain", {"text": "t1", "id": "a"}, {"text": "t2", "lang": "de", "id": "c", "answers": ["a", "b"]}]),
    ])  # fmt: skip
    groups = load_training_jsonl(path)
    assert groups.pairs[0]["en"].answers == ("7", "b")
    assert [n.answers for n in groups.pairs[1]["en"].negatives] == [(), ("a",), ("a", "b", "c")]
    assert [n.id for n in groups.pairs[1]["en"].negatives] == [None, "a", "c"]
    # What a candidate row answers: its own id, its `answers`, and every id whose positive it is.
    assert groups.positive_answers(0, "en") == {"a", "b", "7"}
    assert groups.negative_answers(groups.pairs[1]["en"].negatives[0]) == set()
    assert groups.negative_answers(Negative("en answer a", "en")) == {"a", "b", "7"}  # a's positive: a and its answers
    assert load_training_jsonl(write_training_jsonl(groups, tmp_path / "again.jsonl")) == groups


def test_xquad_train_split_round_trip(tmp_path, xquad_root):
    train = split_by_article(load_lareqa(xquad_root, ["de", "en", "zh"]), seed=0)["train"]
    groups = train.training_groups()
    path = write_training_jsonl(groups, tmp_path / "xquad-train.jsonl")
    loaded = load_training_jsonl(path)
    assert loaded == groups
    assert len(loaded) == len(train.languages["en"].question_ids) and loaded.languages == ["de", "en", "zh"]


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([row("a", "en"), '{"id": "b", "lang": '], r"train.jsonl:2: not a JSON object \(column \d+"),
        ([row("a", "en"), "[1, 2]"], r"train.jsonl:2: a JSON list, not an object"),
        ([row("a", "en"), {"id": "b", "lang": "en", "query": "q?"}], r"train.jsonl:2: field 'positive' is missing"),
        ([{"id": "a", "lang": "en", "query": "  ", "positive": "p"}], r"train.jsonl:1: field 'query' is empty"),
        ([{"id": "a", "lang": None, "query": "q", "positive": "p"}], r"train.jsonl:1: field 'lang' is empty or not a string"),
        ([row("a", "en", negatives="x")], r"train.jsonl:1: field 'negatives' must be a list"),
        ([row("a", "en", negatives=["ok", {"lang": "de"}])], r"train.jsonl:1: negatives\[1\] must be a non-empty text"),
        ([row("a", "en", negatives=[{"text": "t", "id": [1]}])], r"train.jsonl:1: negatives\[0\] has lang='en' id=\[1\]"),
        ([row("a", "en", answers="b")], r"train.jsonl:1: field 'answers' must be a list of ids \(strings or integers\), got 'b'"),
        ([row("a", "en", answers=["b", None])], r"train.jsonl:1: field 'answers' must be a list of ids"),
        ([row("a", "en", negatives=[{"text": "t", "answers": [True]}])], r"train.jsonl:1: field 'negatives\[0\].answers' must be a list"),
        ([row("a", "en"), row("b", "en"), "", row("a", "en")], r"train.jsonl:4: duplicate \(id, lang\) = \('a', 'en'\), first on line 1"),
        (["", "  "], r"train.jsonl has no rows"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, rows, pattern):
    path = write_rows(tmp_path / "train.jsonl", rows)
    with pytest.raises(BatchmixError, match=pattern):
        load_training_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(BatchmixError, match=r"cannot read training file .*nope.jsonl"):
        load_training_jsonl(tmp_path / "nope.jsonl")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(row("a", "de")).replace("query", "Fr\u00e4ge").encode("latin-1") + b"\n")
    with pytest.raises(BatchmixError, match="latin1.jsonl is not UTF-8"):
        load_training_jsonl(path)
