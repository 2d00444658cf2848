"""LAReQA JSON loading: real XQuAD-R, a synthetic MLQA-R-like directory, every validation error,
and data-root resolution."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from batchmix.data import root as root_module
from batchmix.data.lareqa import load_lareqa
from batchmix.data.root import resolve_data_root
from batchmix.core.errors import BatchmixError

XQUAD_LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
XQUAD_CANDIDATES = {
    "ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244,
    "ru": 1219, "th": 852, "tr": 1167, "vi": 1209, "zh": 1196,
}  # fmt: skip


@pytest.fixture(scope="module")
def xquad(xquad_root):
    """The real XQuAD-R corpus (`xquad_root` from conftest skips when the data is absent)."""
    return load_lareqa(xquad_root)


# ---------------------------------------------------------------- real XQuAD-R


def test_xquad_sizes(xquad):
    assert xquad.name == "xquad-r"
    assert xquad.langs == XQUAD_LANGS
    for lang, ls in xquad.languages.items():
        assert len(ls.questions) == len(ls.question_ids) == len(ls.answer_index) == len(ls.question_group) == 1190
        assert len(ls.candidates) == len(ls.candidate_contexts) == len(ls.candidate_group) == XQUAD_CANDIDATES[lang]
        assert len(set(ls.question_ids)) == 1190


def test_xquad_is_eleven_way_parallel_with_48_language_independent_groups(xquad):
    assert xquad.groups == list(range(48))
    en = xquad.languages["en"]
    group_of = dict(zip(en.question_ids, en.question_group))
    for lang, ls in xquad.languages.items():
        assert set(ls.question_ids) == set(group_of), lang
        assert all(group_of[q] == g for q, g in zip(ls.question_ids, ls.question_group)), lang
        assert set(ls.candidate_group) == set(range(48)), lang
        # a question's answer sentence is in the question's own article group
        assert all(ls.candidate_group[a] == g for a, g in zip(ls.answer_index, ls.question_group)), lang


def test_xquad_hand_checked_answer_sentences(xquad):
    en = xquad.languages["en"]
    assert en.question_ids[0] == "56beb4343aeaaa14008c925b"
    assert en.questions[0] == "How many points did the Panthers defense surrender?"
    assert en.candidates[en.answer_index[0]].startswith("The Panthers defense gave up just 308 points")
    assert en.questions[1] == "How many career sacks did Jared Allen have?"
    assert "active career sack leader with 136" in en.candidates[en.answer_index[1]]
    assert en.questions[2] == "How many tackles did Luke Kuechly register?"
    assert "Kuechly led the team in tackles (118)" in en.candidates[en.answer_index[2]]
    # the same question in three languages: each answer sentence names both streets
    qid = "5725f00938643c19005aced9"
    expected = {"en": ("Fresno Street", "Thorne Ave"), "de": ("Fresno Street", "Thorne Ave"), "zh": ("弗雷斯诺街", "索恩大街")}
    for lang, needles in expected.items():
        ls = xquad.languages[lang]
        sentence = ls.candidates[ls.answer_index[ls.question_ids.index(qid)]]
        assert all(n in sentence for n in needles), (lang, sentence)


def test_xquad_answer_text_is_in_answer_sentence(xquad, xquad_root):
    """Cross-check of the span lookup against the answer text (measured: 0.982 (tr) - 0.998 (ru))."""
    root = xquad_root
    fractions = {}
    for lang, ls in xquad.languages.items():
        answer_text = {
            qa["id"]: qa["answers"][0]["text"]
            for article in json.loads((root / f"{lang}.json").read_text(encoding="utf-8"))["data"]
            for para in article["paragraphs"]
            for qa in para["qas"]
        }
        hits = sum(answer_text[q] in ls.candidates[a] for q, a in zip(ls.question_ids, ls.answer_index))
        fractions[lang] = hits / len(ls.question_ids)
    assert min(fractions.values()) >= 0.97, fractions


def test_xquad_candidates_come_from_their_contexts(xquad):
    for lang, ls in xquad.languages.items():
        assert all(c.strip() for c in ls.candidates), lang
        outside = sum(c not in ctx for c, ctx in zip(ls.candidates, ls.candidate_contexts))
        assert outside <= 2, (lang, outside)  # tr has 2 sentences that differ from their slice


def test_xquad_training_groups(xquad):
    groups = xquad.training_groups()
    assert len(groups) == 1190
    assert groups.ids == sorted(groups.ids)
    assert groups.languages == XQUAD_LANGS
    assert all(len(p) == 11 for p in groups.pairs)
    first = groups.pairs[groups.ids.index("56beb4343aeaaa14008c925b")]["en"]
    assert first.query == "How many points did the Panthers defense surrender?"
    assert "308 points" in first.positive and first.negatives == ()


def test_xquad_subset_of_languages_and_speed(xquad_root):
    root = xquad_root
    start = time.perf_counter()
    load_lareqa(root)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"loading 11 XQuAD-R files took {elapsed:.2f}s"  # measured ~0.2 s
    two = load_lareqa(root, ["th", "en"], name="mine")
    assert two.name == "mine" and two.langs == ["en", "th"]
    assert two.groups == list(range(48))  # groups do not depend on which languages are loaded


# ---------------------------------------------------------------- synthetic LAReQA files


def paragraph(sentences: list[str], qas: list[tuple[str, str, int, str]]) -> dict:
    """A LAReQA paragraph; each qa is (id, question, answer sentence index, answer text)."""
    context = " ".join(sentences)
    breaks, start = [], 0
    for s in sentences:
        breaks.append([start, start + len(s)])
        start += len(s) + 1
    out = []
    for qid, question, k, text in qas:
        offset = breaks[k][0] + sentences[k].index(text)
        out.append({"id": qid, "question": question, "answers": [{"answer_start": offset, "text": text}]})
    return {"context": context, "sentences": sentences, "sentence_breaks": breaks, "qas": out}


def write_lang(root: Path, lang: str, articles: list[list[dict]]) -> Path:
    data = [{"title": f"{lang}-article-{i}", "paragraphs": paras} for i, paras in enumerate(articles)]
    path = root / f"{lang}.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


SHARED_EN_PARAGRAPH = ["Gamma one.", "Gamma two holds g4."]


def write_mlqa_like(root: Path) -> None:
    """3 languages, ids in 2-3 languages, articles not parallel.

    Expected components: {en A, en B, de X, ar P} (q1..q3) and {en C, en D, en F, de Y, ar Q}
    (q4, q5, q8; en F repeats en C's paragraph) and {en E, ar R} (q7).
    """
    write_lang(root, "en", [
        [paragraph(["Alpha one has a1.", "Alpha two has a2."], [("q1", "en q1?", 0, "a1"), ("q2", "en q2?", 1, "a2")])],
        [paragraph(["Beta has b3."], [("q3", "en q3?", 0, "b3")])],
        [paragraph(SHARED_EN_PARAGRAPH, [("q4", "en q4?", 1, "g4")])],
        [paragraph(["Delta d5."], [("q5", "en q5?", 0, "d5")])],
        [paragraph(["Eps e7."], [("q7", "en q7?", 0, "e7")])],
        [paragraph(SHARED_EN_PARAGRAPH, [("q8", "en q8?", 0, "Gamma")])],
    ])  # fmt: skip
    write_lang(root, "de", [
        [paragraph(["Eins a1.", "Zwei b3."], [("q1", "de q1?", 0, "a1"), ("q3", "de q3?", 1, "b3")])],
        [paragraph(["Drei g4 und g8."], [("q4", "de q4?", 0, "g4"), ("q8", "de q8?", 0, "g8")])],
    ])  # fmt: skip
    write_lang(root, "ar", [
        [paragraph(["Wahid e7."], [("q7", "ar q7?", 0, "e7")])],
        [paragraph(["Ithnan a2."], [("q2", "ar q2?", 0, "a2")])],
        [paragraph(["Thalatha g4.", "Arba d5."], [("q5", "ar q5?", 1, "d5"), ("q4", "ar q4?", 0, "g4")])],
    ])  # fmt: skip


def test_mlqa_like_variable_parallelism(tmp_path):
    write_mlqa_like(tmp_path)
    corpus = load_lareqa(tmp_path)
    assert corpus.name == tmp_path.name and corpus.langs == ["ar", "de", "en"]
    assert corpus.groups == [0, 1, 2]

    en, de, ar = (corpus.languages[lang] for lang in ("en", "de", "ar"))
    assert en.question_ids == ["q1", "q2", "q3", "q4", "q5", "q7", "q8"]
    assert en.question_group == [0, 0, 0, 1, 1, 2, 1]  # numbered by smallest id: q1, q4, q7
    assert en.candidate_group == [0, 0, 0, 1, 1, 1, 2, 1, 1]
    assert de.question_group == [0, 0, 1, 1] and de.candidate_group == [0, 0, 1]
    assert ar.question_ids == ["q7", "q2", "q5", "q4"]  # file order
    assert ar.question_group == [2, 0, 1, 1] and ar.candidate_group == [2, 0, 1, 1]

    # relevance: answer sentence by span, in file order of candidates
    assert [en.candidates[a] for a in en.answer_index] == [
        "Alpha one has a1.", "Alpha two has a2.", "Beta has b3.", "Gamma two holds g4.",
        "Delta d5.", "Eps e7.", "Gamma one.",
    ]  # fmt: skip
    assert ar.answer_index == [0, 1, 3, 2]
    assert de.candidate_contexts == ["Eins a1. Zwei b3.", "Eins a1. Zwei b3.", "Drei g4 und g8."]

    groups = corpus.training_groups()
    assert groups.ids == ["q1", "q2", "q3", "q4", "q5", "q7", "q8"]
    assert [groups.langs_of(i) for i in range(len(groups))] == [
        ["de", "en"], ["ar", "en"], ["de", "en"], ["ar", "de", "en"], ["ar", "en"], ["ar", "en"], ["de", "en"],
    ]  # fmt: skip
    q4 = groups.pairs[3]
    assert (q4["ar"].query, q4["ar"].positive) == ("ar q4?", "Thalatha g4.")
    assert q4["de"].positive == "Drei g4 und g8."


def test_mlqa_like_groups_do_not_depend_on_loaded_languages(tmp_path):
    write_mlqa_like(tmp_path)
    en_ar = load_lareqa(tmp_path, ["en", "ar"])
    # without de, en A and en B are no longer linked (q1/q3 link them only through de)
    assert en_ar.languages["en"].question_group == [0, 0, 1, 2, 2, 3, 2]
    only_de = load_lareqa(tmp_path, "de")
    assert only_de.langs == ["de"] and only_de.languages["de"].question_group == [0, 0, 1, 1]


# ---------------------------------------------------------------- validation errors


def one_language(tmp_path: Path, articles: list[list[dict]], lang: str = "en") -> Path:
    return write_lang(tmp_path, lang, articles)


def test_error_unknown_language_lists_available(tmp_path):
    write_mlqa_like(tmp_path)
    (tmp_path / "dataset_info.json").write_text("{}")  # not a language file: ignored
    with pytest.raises(BatchmixError, match=r"xx.*available there: ar, de, en$"):
        load_lareqa(tmp_path, ["en", "xx"])


def test_error_root_missing(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(BatchmixError, match=f"{missing}.*does not exist.*data.root="):
        load_lareqa(missing)


def test_error_empty_root(tmp_path):
    with pytest.raises(BatchmixError, match="holds no <lang>.json"):
        load_lareqa(tmp_path)


def test_error_truncated_json_names_file_line_and_column(tmp_path):
    path = one_language(tmp_path, [[paragraph(["S a."], [("q1", "Q?", 0, "a")])]])
    text = path.read_text()
    path.write_text(text[: len(text) // 2].replace(", ", ",\n"))
    with pytest.raises(BatchmixError, match=rf"{path} is not valid JSON \(line \d+, column \d+"):
        load_lareqa(tmp_path)


def test_error_malformed_json(tmp_path):
    path = tmp_path / "en.json"
    path.write_text('{"data": [\n  {"title": "x",, }\n]}')
    with pytest.raises(BatchmixError, match=r"en.json is not valid JSON \(line 2, column 17"):
        load_lareqa(tmp_path)


def test_error_no_data_list(tmp_path):
    (tmp_path / "en.json").write_text('{"version": "1.1"}')
    with pytest.raises(BatchmixError, match="en.json has no top-level 'data' list"):
        load_lareqa(tmp_path)


def test_error_plain_squad_without_sentences(tmp_path):
    para = paragraph(["S a."], [("q1", "Q?", 0, "a")])
    ok = paragraph(["T b."], [("q2", "Q?", 0, "b")])
    del para["sentences"], para["sentence_breaks"]
    path = one_language(tmp_path, [[ok], [ok | {"qas": []}, para]])
    with pytest.raises(BatchmixError) as info:
        load_lareqa(tmp_path)
    message = str(info.value)
    assert str(path) in message and "article 1" in message and "paragraph 1" in message
    assert "'sentences'/'sentence_breaks'" in message and "LAReQA format" in message and "not plain SQuAD" in message
    assert "\n" not in message


def test_error_sentence_breaks_length_mismatch(tmp_path):
    para = paragraph(["S a.", "T b."], [("q1", "Q?", 0, "a")])
    para["sentence_breaks"] = para["sentence_breaks"][:1]
    one_language(tmp_path, [[para]])
    with pytest.raises(BatchmixError, match=r"paragraph 0: 'sentence_breaks' has 1 entries but 'sentences' has 2"):
        load_lareqa(tmp_path)


def test_error_sentence_break_outside_context(tmp_path):
    para = paragraph(["S a."], [("q1", "Q?", 0, "a")])
    para["sentence_breaks"] = [[0, 99]]
    one_language(tmp_path, [[para]])
    with pytest.raises(BatchmixError, match=r"sentence_breaks\[0\]=\[0, 99\] .*length 4"):
        load_lareqa(tmp_path)


def test_error_answer_outside_every_sentence_span(tmp_path):
    para = paragraph(["S a.", "T b."], [("q1", "Q?", 1, "b")])
    para["sentence_breaks"][1] = [5, 6]  # answer 'b' at offset 7 is now in no span
    path = one_language(tmp_path, [[para]])
    with pytest.raises(BatchmixError, match=rf"{path}: question q1 has answer_start=7 outside every sentence_breaks"):
        load_lareqa(tmp_path)


def test_error_answer_outside_context(tmp_path):
    para = paragraph(["S a."], [("q1", "Q?", 0, "a")])
    para["qas"][0]["answers"][0]["answer_start"] = 50
    path = one_language(tmp_path, [[para]])
    with pytest.raises(BatchmixError, match=rf"{path}: question q1 has answer_start=50 outside its context"):
        load_lareqa(tmp_path)


def test_error_duplicate_question_id(tmp_path):
    one_language(
        tmp_path,
        [[paragraph(["S a."], [("q1", "Q?", 0, "a")])], [paragraph(["T b."], [("q1", "Q2?", 0, "b")])]],
        lang="de",
    )
    with pytest.raises(BatchmixError, match=r"de.json: question id q1 appears twice in language 'de'"):
        load_lareqa(tmp_path)


def test_error_language_without_questions(tmp_path):
    write_mlqa_like(tmp_path)
    one_language(tmp_path, [[paragraph(["S a."], [])]], lang="hi")
    with pytest.raises(BatchmixError, match=r"hi.json: language 'hi' has no questions"):
        load_lareqa(tmp_path)


def test_error_question_without_answers(tmp_path):
    para = paragraph(["S a."], [("q1", "Q?", 0, "a")])
    para["qas"][0]["answers"] = []
    one_language(tmp_path, [[para]])
    with pytest.raises(BatchmixError, match="question q1 has no 'answers'"):
        load_lareqa(tmp_path)


# ---------------------------------------------------------------- data root resolution


@pytest.fixture
def no_default_roots(tmp_path, monkeypatch):
    """Isolate resolution from the real checkout: empty cwd, no repo root, no env var."""
    work = tmp_path / "work" / "main"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv(root_module.ENV_VAR, raising=False)
    monkeypatch.setattr(root_module, "_repo_root", lambda: None)
    return tmp_path / "work"


def test_root_explicit_wins_over_env(tmp_path, monkeypatch, no_default_roots):
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    monkeypatch.setenv(root_module.ENV_VAR, str(tmp_path))
    assert resolve_data_root(explicit) == explicit.resolve()
    assert resolve_data_root(str(explicit)) == explicit.resolve()


def test_root_explicit_missing_is_an_error(tmp_path):
    with pytest.raises(BatchmixError, match=r"data.root=.*nope.* is not a directory; set data.root=/path/to/xquad-r"):
        resolve_data_root(tmp_path / "nope")


def test_root_env_as_dataset_dir_or_parent(tmp_path, monkeypatch, no_default_roots):
    parent = tmp_path / "data"
    (parent / "mlqa-r").mkdir(parents=True)
    monkeypatch.setenv(root_module.ENV_VAR, str(parent))
    assert resolve_data_root(None, "mlqa-r") == (parent / "mlqa-r").resolve()
    direct = tmp_path / "my-xquad"
    direct.mkdir()
    (direct / "en.json").write_text("{}")
    monkeypatch.setenv(root_module.ENV_VAR, str(direct))
    assert resolve_data_root(None) == direct.resolve()
    monkeypatch.setenv(root_module.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(BatchmixError, match=r"BATCHMIX_DATA=.*typo.*holds neither xquad-r/"):
        resolve_data_root(None)


def test_root_default_relative_to_cwd_then_repo(tmp_path, monkeypatch, no_default_roots):
    shared = no_default_roots / "shared" / "data" / "xquad-r"
    shared.mkdir(parents=True)
    assert resolve_data_root(None) == shared.resolve()
    # from elsewhere, the repository root is the fallback
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(root_module, "_repo_root", lambda: no_default_roots / "main")
    assert resolve_data_root(None) == shared.resolve()


def test_root_nothing_found_names_every_path_and_the_fix(tmp_path, monkeypatch, no_default_roots):
    repo = tmp_path / "repo" / "checkout"
    repo.mkdir(parents=True)
    monkeypatch.setattr(root_module, "_repo_root", lambda: repo)
    with pytest.raises(BatchmixError) as info:
        resolve_data_root(None, "mlqa-r")
    message = str(info.value)
    assert str((no_default_roots / "shared" / "data" / "mlqa-r").resolve()) in message
    assert str((tmp_path / "repo" / "shared" / "data" / "mlqa-r").resolve()) in message
    assert "data.root=/path/to/mlqa-r" in message and "export BATCHMIX_DATA=" in message


def test_repo_root_is_the_checkout():
    repo = root_module._repo_root()
    assert repo is not None and (repo / "pyproject.toml").is_file()
    assert Path(root_module.__file__).resolve().is_relative_to(repo)
    assert os.path.isdir(repo / "src" / "batchmix")
