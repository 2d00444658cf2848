"""Fuzzing the input paths added since tests/test_loader_fuzz.py (issue #26): JSONL `negatives` and
`answers`, Hugging Face datasets (`data.source=hf`: files, layouts, column mappings, options) and the
miner's options. Every example either loads / runs with a consistent result, or raises a one-line
`BatchmixError` that names the bad value, having written nothing: no output file, no entry under
$BATCHMIX_CACHE, no temp file. Any other exception fails. Derandomized, so CI sees the same examples.

Reuses test_loader_fuzz.py's mutations (`jsonl_bytes` over its `_mutate`, `json_values`) and invariants.
"""

from __future__ import annotations

import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from batchmix.data.corpus import TrainingGroups
from batchmix.data.jsonl import load_training_jsonl, write_training_jsonl
from batchmix.data.load import load_splits
from batchmix.data.negatives import NEGATIVES_LANG, check_hard_negatives, check_negatives_options, pick_negatives
from batchmix.core.errors import BatchmixError
from test_loader_fuzz import (
    SPLIT,
    assert_clear_error,
    assert_consistent_groups,
    json_values,
    jsonl_bytes,
    lareqa_document,
    training_rows,
)

QUICK = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (relative, sorted): what a failed load must not have added."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def lareqa_root(tmp_path_factory) -> Path:
    """A tiny valid LAReQA folder (en, de): `load_splits` reads its evaluation splits from here."""
    root = tmp_path_factory.mktemp("lareqa")
    for lang in ("en", "de"):
        (root / f"{lang}.json").write_text(json.dumps(lareqa_document(lang)), encoding="utf-8")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """$BATCHMIX_CACHE in the test's folder, so what a load caches can be checked (and nothing leaks)."""
    folder = tmp_path / "batchmix-cache"
    monkeypatch.setenv("BATCHMIX_CACHE", str(folder))
    return folder


@pytest.fixture
def quiet_datasets(datasets_offline):
    """`datasets` offline (tests/conftest.py) and without its progress bars (hundreds of tiny writes)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yield
    if was:
        datasets.enable_progress_bars()


def consume(groups: TrainingGroups, n: int, rule: str) -> str:
    """What training does with the groups before the model loads (run/train.py), and then what a
    batch reads: every pair, its `n` hard negatives under `rule`, the answers they carry."""
    n, rule = check_negatives_options(n, rule)
    check_hard_negatives(groups, n, rule)
    shared = groups.shared_answers
    assert len(shared) == len(groups) and all(g not in s for g, s in enumerate(shared))
    for g, pairs in enumerate(groups.pairs):
        for lang, pair in pairs.items():
            assert groups.ids[g] in groups.positive_answers(g, lang)
            negatives = pick_negatives(groups, g, lang, n, rule) if n else []  # as the collator: none asked, none read
            assert len(negatives) == n and len({x.text for x in negatives}) == n
            for negative in negatives:
                assert set(negative.answers) <= groups.negative_answers(negative)
                assert negative.id is None or negative.id in negative.answers
    return "consumed"


# ------------------------------------------------------------------------------------- 1. JSONL negatives / answers


def negative_rows() -> list[dict]:
    """`training_rows()` with every accepted shape of `negatives` (texts; objects with and without
    lang / id / answers; integer ids) and of `answers` (string and integer ids), 1-3 negatives a row."""
    rows = training_rows()
    for k, row in enumerate(rows):
        i, lang = int(row["id"][1:]), row["lang"]
        shapes = [f"wrong {k} {lang}",
                  {"text": f"other {k}", "lang": "en", "id": f"p{(i + 1) % 3}", "answers": [f"p{(i + 2) % 3}", 7]},
                  {"text": f"plain {k} ünï", "id": 7}]
        row["negatives"] = shapes[: 1 + k % 3]
        if k % 2:
            row["answers"] = [f"p{(i + 1) % 3}", 11]
    return rows


NEGATIVE_KEYS = frozenset({"negatives", "answers", "text", "lang", "id"})


def expected_rows(path: Path) -> dict[tuple[str, str], dict]:
    """Oracle, for a file the loader accepted: (id, lang) -> its row, read as the loader reads lines."""
    rows = [json.loads(line) for line in path.open(encoding="utf-8-sig") if line.strip()]
    return {(str(r["id"]), str(r["lang"])): r for r in rows}  # ids and codes may be integers


def assert_as_written(groups: TrainingGroups, path: Path) -> None:
    """Every pair holds exactly its row's texts, negatives (order, language, ids) and answers."""
    rows = expected_rows(path)
    assert sum(len(p) for p in groups.pairs) == len(rows), "a row was dropped or counted twice"
    for qid, pairs in zip(groups.ids, groups.pairs):
        for lang, pair in pairs.items():
            row = rows[(qid, lang)]
            assert (pair.query, pair.positive) == (str(row["query"]), str(row["positive"]))
            assert pair.answers == tuple(sorted({str(v) for v in row.get("answers") or []}))
            given_negatives = [{"text": x} if isinstance(x, str) else x for x in row.get("negatives") or []]
            # a negative's lang: absent or null means the row's; anything else must be a code
            assert [(n.text, n.lang) for n in pair.negatives] == [(x["text"], lang if x.get("lang") is None else x["lang"])
                                                                  for x in given_negatives]
            assert all(isinstance(n.lang, str) and n.lang.strip() and (n.id is None or n.id.strip()) for n in pair.negatives)
            for n, x in zip(pair.negatives, given_negatives):
                assert n.id == (None if x.get("id") is None else str(x["id"]))
                assert set(n.answers) == {str(v) for v in x.get("answers") or []} | ({n.id} if n.id else set())


@settings(max_examples=300, **QUICK)
@given(raw=jsonl_bytes(negative_rows(), aim=NEGATIVE_KEYS), n=st.sampled_from([0, 1, 2, 3]),
       rule=st.sampled_from(NEGATIVES_LANG), through_splits=st.booleans())
def test_mutated_negatives_and_answers_load_or_fail_clearly(raw: bytes, n: int, rule: str, through_splits: bool,
                                                           lareqa_root: Path, cache: Path):
    """JSONL rows with `negatives` and `answers` through `load_training_jsonl` (or `load_splits` with
    data.train_file), then consumed with data.hard_negatives=n: consistent, or one line naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(raw)
        data = {"root": str(lareqa_root), "languages": None, "name": "fuzz", "source": "local", "split": SPLIT, "split_seed": 0,
                "train_file": str(path), "hard_negatives": n, "negatives_lang": rule}
        try:
            groups = load_splits(data)[0] if through_splits else load_training_jsonl(path)
        except BatchmixError as err:
            assert_clear_error(err, names=str(path))
            event(f"jsonl error: {str(err).replace(str(path), '<file>')[:60]}")
        else:
            assert_consistent_groups(groups)
            assert_as_written(groups, path)
            # what loads can be written back (the miner's writer) and reads back equal
            assert load_training_jsonl(write_training_jsonl(groups, Path(tmp) / "out" / "again.jsonl")) == groups
            (Path(tmp) / "out" / "again.jsonl").unlink()
            (Path(tmp) / "out").rmdir()
            try:
                event(consume(groups, n, rule))
            except BatchmixError as err:  # too few hard negatives for n under rule
                assert_clear_error(err, names=f"data.hard_negatives={n}")
                event("too few hard negatives")
        assert files_under(Path(tmp)) == ["pairs.jsonl"] and not cache.exists()


# ------------------------------------------------------------------------------------- 2. Hugging Face datasets

LANGS = ("de", "en")


def long_columns(objects: bool) -> dict[str, list]:
    """`data.hf.layout=long` source columns: ids q0..q3 in de and en (q3: en only), negatives as
    texts or `{text, lang, id, answers}` structs, `links` an answers column (named, never guessed)."""
    rows = [(i, lang) for i in range(4) for lang in LANGS if not (i == 3 and lang == "de")]
    negs = [[{"text": f"{lang} wrong {i}", "lang": None, "id": None, "answers": None},
             {"text": f"en other {i}", "lang": "en", "id": f"q{(i + 1) % 4}", "answers": [f"q{(i + 2) % 4}"]}]
            if objects else [f"{lang} wrong {i}", f"{lang} other {i}"] for i, lang in rows]
    return {"id": [f"q{i}" for i, _ in rows], "lang": [lang for _, lang in rows],
            "query": [f"{lang} question {i} ½" for i, lang in rows], "positive": [f"{lang} answer {i}" for i, lang in rows],
            "negatives": negs, "links": [[f"q{(i + 1) % 4}"] for i, _ in rows]}


def wide_columns(objects: bool) -> dict[str, list]:
    """`data.hf.layout=wide` source columns, both forms: templated (`query_{lang}`, `passage_{lang}`,
    `negatives_{lang}`) and `{lang: text}` structs (`translation`, `answer`, `negs`); q3 lacks de."""
    def text(kind: str, i: int, lang: str) -> str | None:
        return None if (i == 3 and lang == "de") else f"{lang} {kind} {i}"

    def negatives(i: int, lang: str) -> list | None:
        if i == 3 and lang == "de":
            return None
        return [{"text": f"{lang} wrong {i}", "lang": lang, "id": f"q{(i + 1) % 4}"}] if objects else [f"{lang} wrong {i}"]

    out: dict[str, list] = {"id": [f"q{i}" for i in range(4)]}
    for lang in LANGS:
        out[f"query_{lang}"] = [text("question", i, lang) for i in range(4)]
        out[f"passage_{lang}"] = [text("answer", i, lang) for i in range(4)]
        out[f"negatives_{lang}"] = [negatives(i, lang) for i in range(4)]
    out["translation"] = [{lang: text("question", i, lang) for lang in LANGS} for i in range(4)]
    out["answer"] = [{lang: text("answer", i, lang) for lang in LANGS} for i in range(4)]
    out["negs"] = [{lang: negatives(i, lang) for lang in LANGS} for i in range(4)]
    out["links"] = [[f"q{(i + 1) % 4}", f"q{(i + 2) % 4}"] for i in range(4)]
    return out


# A whole column retyped (Arrow columns are of one type; one odd cell is the `cell` mutations' job).
RETYPES = {
    "int": lambda k, v: k, "float": lambda k, v: k + 0.5, "bool": lambda k, v: bool(k % 2), "null": lambda k, v: None,
    "str": lambda k, v: json.dumps(v, ensure_ascii=False), "list_of_int": lambda k, v: [k, k + 1],
    "list_of_str": lambda k, v: [str(v)], "list_of_list": lambda k, v: [[str(v)]], "struct": lambda k, v: {"en": str(v), "de": None},
    "struct_of_int": lambda k, v: {"en": k, "de": k}, "objects_bad_text": lambda k, v: [{"text": k}],
    "objects_no_text": lambda k, v: [{"lang": "en", "id": "q1"}], "struct_of_lists_of_int": lambda k, v: {"en": [k], "de": [k]},
}
CELLS = [None, "", " ", "\t\n", "ünï 数据", "q0", "en", "de", [], [None], [""], ["  "], [None, "x"], {"en": None, "de": None},
         {"text": " "}, [{"text": None}], [{"text": "x", "lang": ""}], [{"text": "x", "answers": [""]}]]
COLUMN_CHOICES = [None, "", "nope", 5, ["query"], "id", "lang", "query", "positive", "negatives", "links", "query_{lang}",
                  "passage_{lang}", "negatives_{lang}", "negs_{lang}", "{lang}", "translation", "answer", "negs", "query_en"]


@st.composite
def hf_sources(draw) -> tuple[dict[str, list], str, str]:
    """(mutated source columns, layout they are in, file format)."""
    layout = draw(st.sampled_from(["long", "wide"]))
    columns = (long_columns if layout == "long" else wide_columns)(draw(st.booleans()))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(sorted(columns)))
        n = len(columns[name])
        kind = draw(st.sampled_from(["drop", "retype", "cell", "cell", "cell_random", "rows", "duplicate_row", "duplicate_id"]))
        if kind == "drop" and len(columns) > 1:
            del columns[name]
        elif kind == "retype":
            retype = RETYPES[draw(st.sampled_from(sorted(RETYPES)))]
            columns[name] = [retype(k, v) for k, v in enumerate(columns[name])]
        elif kind in ("cell", "cell_random") and n:
            columns[name][draw(st.integers(0, n - 1))] = draw(st.sampled_from(CELLS) if kind == "cell" else json_values)
        elif kind == "rows":
            keep = draw(st.integers(0, n))  # 0: an empty dataset
            columns = {c: v[:keep] for c, v in columns.items()}
        elif kind == "duplicate_row" and n:
            k = draw(st.integers(0, n - 1))
            columns = {c: v + [v[k]] for c, v in columns.items()}
        elif kind == "duplicate_id" and n > 1 and "id" in columns:
            columns["id"][draw(st.integers(1, n - 1))] = columns["id"][0]
    return columns, layout, draw(st.sampled_from(["parquet", "parquet", "saved", "json"]))


@st.composite
def hf_options(draw, layout: str) -> dict[str, Any]:
    """A `data.hf` block for a source in `layout`: three in four are valid (so the data's mutations
    are what is tested), the rest have one to three options off (wrong types, names, templates)."""
    columns = {} if layout == "long" else draw(st.sampled_from([{"query": "query_{lang}", "positive": "passage_{lang}"},
                                                                 {"query": "translation", "positive": "answer"}]))
    if draw(st.booleans()):
        columns["negatives"] = ("negatives" if layout == "long" else
                                "negatives_{lang}" if columns["query"] == "query_{lang}" else "negs")
    if draw(st.booleans()):
        columns["answers"] = "links"
    options: dict[str, Any] = {"layout": layout, "columns": columns,
                               "languages": draw(st.sampled_from([None, None, "en", ["en"], ["de", "en"]])),
                               "max_rows": draw(st.sampled_from([None, None, 1, 3, 100])),
                               "streaming": draw(st.booleans())}
    if draw(st.integers(0, 3)):
        return options
    off = {"layout": st.sampled_from(["long" if layout == "wide" else "wide", "tall", None, 1]),
           "columns": st.sampled_from([None, [], "query"]),
           "column": st.sampled_from(["id", "lang", "query", "positive", "negatives", "answers", "text"]),
           "languages": st.sampled_from([["en", "en"], ["xx"], [], [""], [1], ""]),
           "max_rows": st.sampled_from([0, -1, True, "2", 2.5]),
           "streaming": st.sampled_from(["yes", None]),
           "split": st.sampled_from(["test", "", None, 3]),
           "name": st.sampled_from(["default", 5]),
           "colums": st.just({})}
    for key in draw(st.lists(st.sampled_from(sorted(off)), min_size=1, max_size=3, unique=True)):
        if key == "column":
            options["columns"] = {**columns, draw(off[key]): draw(st.sampled_from(COLUMN_CHOICES))}
        else:
            options[key] = draw(off[key])
    return options


def write_source(columns: dict[str, list], fmt: str, folder: Path) -> tuple[dict[str, Any], str]:
    """The `data.hf` keys naming the written data, and the format it was written in: parquet and
    save_to_disk need one Arrow type per column; what Arrow refuses is written as JSON lines (the
    `json` builder then has to make sense of the mixed types)."""
    import datasets

    if fmt != "json":
        try:
            ds = datasets.Dataset.from_dict(columns)
        except (ValueError, TypeError, OverflowError, UnicodeError, ArithmeticError) as err:  # pyarrow's errors are ValueErrors/TypeErrors
            event(f"source: Arrow refused {type(err).__name__}, written as json")
            fmt = "json"
        else:
            if fmt == "saved":
                ds.save_to_disk(str(folder / "saved"))
                return {"path": str(folder / "saved")}, fmt
            ds.to_parquet(str(folder / "data.parquet"))
            return {"path": "parquet", "data_files": str(folder / "data.parquet")}, fmt
    n = max((len(v) for v in columns.values()), default=0)
    lines = [json.dumps({c: v[k] for c, v in columns.items() if k < len(v)}) for k in range(n)]
    (folder / "data.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogatepass")
    return {"path": "json", "data_files": str(folder / "data.jsonl")}, fmt


def source_strings(value: Any) -> set[str]:
    """Every text in the source, and every scalar as text (ids may be numbers)."""
    if isinstance(value, dict):
        return {s for v in value.values() for s in source_strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in source_strings(v)}
    return {value if isinstance(value, str) else str(value)} if value is not None else set()


def assert_from_source(groups: TrainingGroups, columns: dict[str, list], options: dict[str, Any]) -> None:
    """Oracle, for data the loader accepted: every text is one of the source's, every language one
    asked for; with layout=long, one pair per kept source row."""
    texts = source_strings(columns)
    languages = options.get("languages")
    languages = [languages] if isinstance(languages, str) else languages
    n_rows = max((len(v) for v in columns.values()), default=0)
    for qid, pairs in zip(groups.ids, groups.pairs):
        assert qid in texts or (qid.isdigit() and int(qid) < n_rows), qid
        for lang, pair in pairs.items():
            assert pair.query in texts and pair.positive in texts and all(x.text in texts for x in pair.negatives)
            assert languages is None or lang in languages
    if options.get("layout") == "long":
        lang_column = (options.get("columns") or {}).get("lang", "lang")
        kept = columns[lang_column][: options.get("max_rows") or n_rows]
        assert sum(len(p) for p in groups.pairs) == sum(1 for lang in kept if languages is None or lang in languages)


@pytest.mark.slow  # 2-4 s: `make test`, not `make test-fast`
@settings(max_examples=200, **QUICK)
@given(source=hf_sources(), data=st.data(), n=st.sampled_from([0, 1, 2]), rule=st.sampled_from(NEGATIVES_LANG))
def test_hf_sources_and_options_load_or_fail_clearly(source, data, n: int, rule: str, quiet_datasets, monkeypatch):
    """A mutated dataset (parquet, save_to_disk folder or JSON lines) read with a mutated `data.hf`
    block, then consumed with data.hard_negatives=n. A loader error leaves $BATCHMIX_CACHE empty; a
    consumer error can only be too few hard negatives (anything else was the loader's to refuse)."""
    import datasets

    from batchmix.data.hf import load_hf_training

    columns, layout, fmt = source
    options = data.draw(hf_options(layout), label="options")
    with tempfile.TemporaryDirectory() as tmp, monkeypatch.context() as patch:
        folder, cache = Path(tmp) / "source", Path(tmp) / "batchmix-cache"
        folder.mkdir()
        patch.setenv("BATCHMIX_CACHE", str(cache))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(tmp) / "hf-cache")
        named, fmt = write_source(columns, fmt, folder)
        written = files_under(folder)
        options = {**named, **options}
        try:
            groups = load_hf_training(options)
        except BatchmixError as err:
            assert_clear_error(err, names="data.hf")
            assert files_under(folder) == written and not files_under(cache), "a failed load left files"
            event(f"{fmt} {layout}: {str(err).replace(tmp, '<tmp>')[:70]}")
            return
        assert_consistent_groups(groups)
        assert_from_source(groups, columns, options)
        assert files_under(folder) == written
        assert all(Path(f).suffix == ".arrow" and not Path(f).name.startswith(".") for f in files_under(cache))  # a streamed copy, no temp
        try:
            event(f"{fmt} {layout}: loaded, {consume(groups, n, rule)}")
        except BatchmixError as err:
            assert_clear_error(err, names=f"data.hard_negatives={n}")
            event(f"{fmt} {layout}: loaded, too few hard negatives")


# ------------------------------------------------------------------------------------- 3. the miner's options

NAN, INF = float("nan"), float("inf")
MINE_VALUES: dict[str, list] = {
    "num_negatives": [1, 2, 3, 50, 0, -1, True, 2.5, "3", None],
    "range_min": [0, 1, 5, 49, 50, -1, True, 1.5, None],
    "range_max": [1, 2, 50, 10**6, 0, -5, False, "50"],
    "margin": [None, 0, 0.05, -0.2, 1e9, NAN, INF, -INF, "big", True],
    "relative_margin": [None, 0, 0.1, 1.5, -1, NAN, "x"],
    "pool": ["language", "all", "lang", None, 1],
    "search": ["auto", "torch", "faiss", "annoy", None],
    "batch_size": [1, 64, 0, -1, "8", True],
    "out": ["new", "nested", None, "", "folder", "under_file", "train_file", "stats", ["x"], True],
}
VALID_MINE: dict[str, list] = {
    "num_negatives": [1, 2, 3, 50], "range_min": [0, 1, 5], "range_max": [2, 3, 50, 10**6],
    "margin": [None, 0, 0.05, -0.2, 1e9], "relative_margin": [None, 0, 0.1, 1.5, -1], "pool": ["language", "all"],
    "search": ["auto", "torch", "faiss"], "batch_size": [1, 64], "out": ["new", "nested", None, ""],
}
OTHER_VALUES: dict[str, list] = {
    "device": ["cpu", "auto", "cuda", "tpu", None],
    "data.languages": [None, ["en"], ["de", "en"], "en", ["xx"], []],
    "data.train_file": ["pairs", "missing", "folder", "empty"],
    "mine.top_k": [5],  # `+mine.top_k=5`: not an option
}


@st.composite
def mine_settings(draw, invalid_share: int = 1) -> dict[str, Any]:
    """`mine.*`, `device` and data overrides: valid values, and in `invalid_share` of 4 examples one
    to three keys from the full range (wrong types, out of range, NaN, paths that cannot be written)."""
    settings_ = {f"mine.{k}": draw(st.sampled_from(v)) for k, v in VALID_MINE.items() if draw(st.booleans())}
    settings_["device"] = "cpu"
    if draw(st.integers(0, 3)) < invalid_share:
        everything = {**{f"mine.{k}": v for k, v in MINE_VALUES.items()}, **OTHER_VALUES}
        for key in draw(st.lists(st.sampled_from(sorted(everything)), min_size=1, max_size=3, unique=True)):
            settings_[key] = draw(st.sampled_from(everything[key]))
    return settings_


def mine_config(base, settings_: dict[str, Any], tmp: Path):
    """`base` (conf/mine.yaml composed) with the settings; path kinds resolved under `tmp`."""
    from omegaconf import OmegaConf

    train = tmp / "pairs.jsonl"
    paths = {"new": tmp / "out" / "neg.jsonl", "nested": tmp / "a" / "b" / "neg.jsonl", "folder": tmp,
             "under_file": train / "neg.jsonl", "train_file": train, "stats": tmp / "out" / "mine_stats.json",
             "pairs": train, "missing": tmp / "missing.jsonl", "empty": tmp / "empty.jsonl"}
    cfg = OmegaConf.create(OmegaConf.to_container(base))  # not struct: `+mine.top_k` as a merge
    cfg.data.train_file = str(train)
    for key, value in settings_.items():
        value = str(paths[value]) if isinstance(value, str) and value in paths else value
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.fixture(scope="module")
def mine_base(lareqa_root):
    """conf/mine.yaml with the tiny model and the tiny LAReQA root, composed once."""
    from hydra import compose, initialize_config_dir

    from batchmix.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("mine", overrides=["model=tiny", f"data.root={lareqa_root}", "device=cpu"])


def mine_inputs(tmp: Path) -> None:
    """The miner's input in `tmp`: pairs.jsonl (negatives and answers), an empty file, a folder."""
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in negative_rows()), encoding="utf-8")
    (tmp / "empty.jsonl").write_text("")


def names_a_setting(message: str, cfg, settings_: dict[str, Any]) -> bool:
    """Whether an error names one of the settings changed (its key, or its value as the config holds it)."""
    from omegaconf import OmegaConf

    def shown(value: Any) -> list[str]:
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        items = value if isinstance(value, list) and value else [value]
        return [repr(value), str(value), *(str(x) for x in items)]

    return any(key.rsplit(".", 1)[-1] in message or any(v in message for v in shown(OmegaConf.select(cfg, key)))
               for key in [*settings_, "data.train_file"])


@pytest.mark.slow  # 2-4 s: `make test`, not `make test-fast`
@settings(max_examples=300, **QUICK)
@given(settings_=mine_settings(invalid_share=3))
def test_mine_preflight_passes_or_fails_clearly(settings_: dict[str, Any], mine_base, cache: Path):
    """`check_mine` (the CLI's pre-flight: every option, before data or a model loads) either returns
    the options as given or raises one line naming the key; it creates nothing, not even out's folder."""
    from batchmix.run.mine import check_mine

    with tempfile.TemporaryDirectory() as tmp:
        mine_inputs(Path(tmp))
        cfg = mine_config(mine_base, settings_, Path(tmp))
        before = files_under(Path(tmp))
        try:
            options, batch_size, device, out = check_mine(cfg, Path(tmp) / "run")
        except BatchmixError as err:
            assert_clear_error(err)
            assert names_a_setting(str(err), cfg, settings_), str(err)
            event(f"preflight error: {str(err).replace(tmp, '<tmp>')[:50]}")
        else:
            for key in ("num_negatives", "range_min", "range_max", "pool", "search"):
                assert getattr(options, key) == cfg.mine[key]
            assert batch_size == cfg.mine.batch_size and device == cfg.device
            assert out == (Path(cfg.mine.out) if cfg.mine.out else Path(tmp) / "run" / "train_negatives.jsonl")
            event("preflight passed")
        assert files_under(Path(tmp)) == before and not (Path(tmp) / "run").exists() and not cache.exists()


def stand_in_encoder(monkeypatch, build) -> None:
    """`batchmix.models.factory` (what `run` imports the encoder from) as a stand-in module whose
    `build_dual_encoder` is `build`: the real module's transformers import alone costs seconds."""
    monkeypatch.setitem(sys.modules, "batchmix.models.factory", types.SimpleNamespace(build_dual_encoder=build))


class HashEncoder:
    """A stand-in for the dual encoder (`build_dual_encoder`): a fixed random unit vector per text, so
    a mining run costs milliseconds and the fuzzer can afford whole runs."""

    def to(self, device: str) -> "HashEncoder":
        return self

    def encode_texts(self, texts: list[str], kind: str, batch_size: int, desc: str = "") -> Any:
        import hashlib

        import torch

        rows = [torch.randn(8, generator=torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(f"{kind}{t}".encode()).digest()[:6], "little")))
                for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def assert_mined(out: Path, options: dict[str, Any], stats: dict[str, Any], pairs: Path) -> None:
    """The written JSONL reads back as training pairs: the input's pairs, at most num_negatives
    negatives each, none of them an answer of its own id, each within the margins (scored by the
    same stand-in encoder); the statistics beside it agree."""
    given_groups, mined = load_training_jsonl(pairs), load_training_jsonl(out)
    encoder = HashEncoder()

    def score(query: str, passage: str) -> float:
        return float(encoder.encode_texts([query], "query", 1)[0] @ encoder.encode_texts([passage], "passage", 1)[0])
    assert mined.ids == given_groups.ids and [sorted(p) for p in mined.pairs] == [sorted(p) for p in given_groups.pairs]
    assert json.loads((out.parent / "mine_stats.json").read_text())["pairs"] == stats["pairs"] == sum(len(p) for p in mined.pairs)
    for g, (qid, group) in enumerate(zip(mined.ids, mined.pairs)):
        for lang, pair in group.items():
            assert (pair.query, pair.positive) == (given_groups.pairs[g][lang].query, given_groups.pairs[g][lang].positive)
            assert len(pair.negatives) <= options.get("mine.num_negatives", 3)
            assert all(qid not in n.answers and (n.lang, n.text) != (lang, pair.positive) for n in pair.negatives)
            assert options.get("mine.pool", "language") == "all" or all(n.lang == lang for n in pair.negatives)
            positive = score(pair.query, pair.positive)
            margin, relative = options.get("mine.margin"), options.get("mine.relative_margin")
            for n in pair.negatives:  # ST's absolute and relative margins (mining.py)
                assert margin is None or score(pair.query, n.text) <= positive - margin + 1e-5, (margin, n)
                assert relative is None or score(pair.query, n.text) <= positive * (1 - relative) + 1e-5, (relative, n)


@settings(max_examples=60, **QUICK)
@given(settings_=mine_settings(), out=st.sampled_from(MINE_VALUES["out"]), margin=st.sampled_from(MINE_VALUES["margin"]))
def test_mine_runs_or_fails_clearly_writing_nothing(settings_: dict[str, Any], out: Any, margin: Any, mine_base, cache: Path,
                                                    monkeypatch):
    """Whole `batchmix.run.mine.run`s (data, pool, search, writing) with a stand-in encoder: a run writes a
    JSONL that training reads; a failed one is one line and leaves no file, not even out's folder.
    `mine.out` and `mine.margin` are drawn over their whole range: only a whole run shows what they do."""
    from batchmix.run.mine import run

    settings_ = {**settings_, "mine.out": out, "mine.margin": margin}
    stand_in_encoder(monkeypatch, lambda *a, **k: HashEncoder())
    with tempfile.TemporaryDirectory() as tmp:
        mine_inputs(Path(tmp))
        cfg = mine_config(mine_base, settings_, Path(tmp))
        before = files_under(Path(tmp))
        try:
            stats = run(cfg, Path(tmp) / "run")
        except BatchmixError as err:
            assert_clear_error(err)
            assert names_a_setting(str(err), cfg, settings_), str(err)
            assert files_under(Path(tmp)) == before and not (Path(tmp) / "run").exists(), "a failed run left files"
            event(f"run error: {str(err).replace(tmp, '<tmp>')[:50]}")
        else:
            out = Path(stats["out"])
            assert sorted(set(files_under(Path(tmp))) - set(before)) == sorted(str(p.relative_to(tmp)) for p in (out, out.parent / "mine_stats.json"))
            assert_mined(out, settings_, stats, Path(tmp) / "pairs.jsonl")
            event(f"mined, {'short' if stats['pairs_short'] else 'full'}")
        assert not cache.exists()


# ------------------------------------------------------------------------------------- the bugs found, as explicit cases
# Each failed before its fix (an exception other than BatchmixError, a late error, a wrong result, or a
# file left behind); `git log -p` of this file's commit shows the fix next to it.


def jsonl_error(path: Path, rows: list[dict]) -> BatchmixError:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8", errors="surrogatepass")
    with pytest.raises(BatchmixError) as err:
        load_training_jsonl(path)
    assert_clear_error(err.value, names=f"{path}:1")
    return err.value


@pytest.mark.parametrize("lang", [0, "", [], False, " "])
def test_known_nasty_negative_lang_that_is_no_code(tmp_path, lang):
    """Was: `item.get("lang") or row_lang` took a 0, "" or [] for the row's language, silently."""
    row = {**negative_rows()[0], "negatives": [{"text": "wrong", "lang": lang}]}
    assert "negatives[0] has lang=" in str(jsonl_error(tmp_path / "pairs.jsonl", [row]))


@pytest.mark.parametrize("where", ["negative_lang", "negative_id", "negative_answers", "answers"])
def test_known_nasty_lone_surrogate_in_an_id_or_code(tmp_path, where):
    """Was: loaded (only texts were checked), then the miner's writer raised UnicodeEncodeError writing
    the pairs back, and left its `.tmp` file."""
    negative = {"text": "wrong", **{"negative_lang": {"lang": "\ud800"}, "negative_id": {"id": "q\udc00"},
                                     "negative_answers": {"answers": ["\ud800"]}}.get(where, {})}
    row = {**negative_rows()[0], "negatives": [negative], **({"answers": ["p1", "\udfff"]} if where == "answers" else {})}
    assert "unpaired surrogate" in str(jsonl_error(tmp_path / "pairs.jsonl", [row]))


NASTY_HF: dict[str, tuple[dict[str, list], dict[str, Any], str]] = {
    # Was: loaded; the BatchmixError came at the first read of the pair (the answers index, a batch).
    "null_answer_id": ({**long_columns(False), "links": [[None]] * 7}, {"columns": {"answers": "links"}},
                       r"row 0 \(column 'links'\): field 'answers' must be a list of ids"),
    "negatives_of_ints": ({**long_columns(False), "negatives": [[1, 2]] * 7}, {},
                          r"row \d \(\w\w, column 'negatives'\): negatives\[0\] must be a non-empty text"),
    "blank_negative_in_a_struct": ({**wide_columns(True), "negs": [{"en": [{"text": " "}], "de": None}] * 4},
                                   {"layout": "wide", "columns": {"query": "translation", "positive": "answer", "negatives": "negs"}},
                                   r"row 0 \(en, column 'negs'\): negatives\[0\] must be a non-empty text"),
    # Was: pyarrow's ArrowNotImplementedError / ArrowTypeError from the streamed language filter.
    "int_langs_streamed_and_filtered": ({**long_columns(False), "lang": list(range(7))}, {"streaming": True, "languages": ["en"]},
                                        r"lang column 'lang' holds int64; it must be language codes"),
    # Was: the error, but the streamed copy stayed in $BATCHMIX_CACHE/hf.
    "duplicate_streamed": ({c: v + v[:1] for c, v in long_columns(False).items()}, {"streaming": True},
                           r"duplicate \(id, lang\) = \('q0', 'de'\)"),
    # Was: StopIteration from the json builder (IndexError from load_from_disk below).
    "empty_json": ({"id": []}, {"format": "json"}, r"has no rows"),
    "empty_json_streamed": ({"id": []}, {"format": "json", "streaming": True}, r"has no rows"),
    "empty_saved": ({"id": [], "lang": []}, {"format": "saved"}, r"has no rows"),
}


@pytest.mark.parametrize("name", NASTY_HF)
def test_known_nasty_hf_sources(tmp_path, name, quiet_datasets, cache):
    columns, options, match = NASTY_HF[name]
    options = dict(options)
    named, _ = write_source(columns, options.pop("format", "parquet"), tmp_path)
    from batchmix.data.hf import load_hf_training

    with pytest.raises(BatchmixError, match=match) as err:
        load_hf_training({**named, **options})
    assert_clear_error(err.value)
    assert not files_under(cache)


NASTY_MINE: dict[str, tuple[dict[str, Any], str]] = {
    "unknown_option": ({"mine.top_k": 5}, r"mine has unknown option\(s\) \['top_k'\]"),  # was: TypeError from MiningOptions
    "nan_margin": ({"mine.margin": NAN}, r"mine.margin=nan must be null or a number, finite"),  # was: no margin at all
    # was: IsADirectoryError after encoding, and a stray .tmp file beside the folder
    "out_is_a_folder": ({"mine.out": "folder"}, r"mine.out='.*' is a folder; name the file to write"),
    "out_under_a_file": ({"mine.out": "under_file"}, r"cannot be created: .*pairs.jsonl is a file"),  # was: FileExistsError after encoding
    "out_is_the_input": ({"mine.out": "train_file"}, r"is data.train_file: mining would overwrite its own input"),  # was: overwritten
    "out_is_the_stats": ({"mine.out": "stats"}, r"the statistics go to .*mine_stats.json, which is the JSONL itself"),  # was: JSONL lost
    "out_is_a_list": ({"mine.out": ["x"]}, r"mine.out=\['x'\] must be the path of the JSONL"),  # was: a file "['x']" in the cwd
}


@pytest.mark.parametrize("name", NASTY_MINE)
def test_known_nasty_mine_options(tmp_path, name, mine_base, cache, monkeypatch):
    """Through the CLI's `run`: one line, before any model is built, and no file written."""
    from batchmix.run.mine import run

    stand_in_encoder(monkeypatch, lambda *a, **k: pytest.fail("a model was built"))
    settings_, match = NASTY_MINE[name]
    mine_inputs(tmp_path)
    before = files_under(tmp_path)
    with pytest.raises(BatchmixError, match=match) as err:
        run(mine_config(mine_base, {"device": "cpu", **settings_}, tmp_path), tmp_path / "run")
    assert_clear_error(err.value)
    assert files_under(tmp_path) == before


# ------------------------------------------------------------------------------------- the real CLI, tiny model


@pytest.mark.slow
@pytest.mark.parametrize("overrides, error", [
    (["mine.num_negatives=2", "mine.out={tmp}/out/neg.jsonl"], None),
    (["mine.pool=all", "mine.range_min=1", "mine.range_max=3", "mine.margin=-0.5", "mine.search=torch",
      "mine.out={tmp}/a/b/neg.jsonl"], None),
    (["+mine.top_k=5"], "mine has unknown option(s) ['top_k']"),
    (["mine.out={tmp}/pairs.jsonl"], "is data.train_file"),
    (["mine.out={tmp}"], "is a folder"),
])  # fmt: skip
def test_mine_cli_in_process(tmp_path, lareqa_root, cache, overrides, error, monkeypatch, capsys):
    """`python -m batchmix.run.mine` in this process (its Hydra entry, sys.argv) with the tiny model: the
    good options write a JSONL training reads; a bad one prints one `batchmix: error:` line, exits 2,
    and writes neither the JSONL nor the statistics (Hydra's own .hydra/ and mine.log aside)."""
    from batchmix.run import mine

    mine_inputs(tmp_path)
    argv = ["batchmix.run.mine", "model=tiny", f"data.root={lareqa_root}", f"data.train_file={tmp_path / 'pairs.jsonl'}", "device=cpu",
            f"hydra.run.dir={tmp_path / 'run'}", *(o.format(tmp=tmp_path) for o in overrides)]
    monkeypatch.setattr("sys.argv", argv)
    before = files_under(tmp_path)
    if error is None:
        mine.main()
        out = Path(next(o for o in argv if o.startswith("mine.out=")).split("=", 1)[1])
        mined, stats = load_training_jsonl(out), json.loads((out.parent / "mine_stats.json").read_text())
        assert mined.ids == load_training_jsonl(tmp_path / "pairs.jsonl").ids and stats["pairs"] == sum(len(p) for p in mined.pairs)
        assert all(qid not in n.answers for qid, group in zip(mined.ids, mined.pairs) for p in group.values() for n in p.negatives)
        return
    with pytest.raises(SystemExit) as exit_:
        mine.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1].startswith("batchmix: error: ") and error in err[-1]
    new = [f for f in files_under(tmp_path) if f not in before and not f.startswith("run/")]
    assert new == [] and all(f.startswith(".hydra/") or f.endswith(".log") for f in files_under(tmp_path / "run"))
