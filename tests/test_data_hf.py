"""`data.source=hf`: Hugging Face datasets (parquet, save_to_disk folders; long and wide layouts;
streamed or not) load into the same `TrainingGroups` as the JSONL format. All local: no network."""

from __future__ import annotations

import pickle

import pytest

datasets = pytest.importorskip("datasets")

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from batchmix.config import CONF_DIR  # noqa: E402
from batchmix.data.checks import check_data, check_data_files  # noqa: E402
from batchmix.data.corpus import Negative, Pair, TrainingGroups  # noqa: E402
from batchmix.data.hf import check_hf_options, load_hf_training  # noqa: E402
from batchmix.data.hf.views import HFPairs  # noqa: E402
from batchmix.data.jsonl import load_training_jsonl, write_training_jsonl  # noqa: E402
from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.data.load import load_splits  # noqa: E402
from batchmix.data.negatives import check_hard_negatives, pick_negatives  # noqa: E402
from batchmix.data.split import split_by_article  # noqa: E402
from batchmix.core.errors import BatchmixError  # noqa: E402

LANGS = ("de", "en", "es")


@pytest.fixture(autouse=True)
def offline(datasets_offline, monkeypatch, tmp_path):
    """No network (tests/conftest.py), and batchmix's cache under the test's folder too."""
    monkeypatch.setenv("BATCHMIX_CACHE", str(tmp_path / "batchmix-cache"))


def expected_groups(negatives: bool = True, languages=LANGS, n: int = 12) -> TrainingGroups:
    """12 ids (sorted as strings: q00..q11); every third lacks 'es'; q05 is English only."""
    ids, pairs = [], []
    for i in range(n):
        qid = f"q{i:02d}"
        langs = [lang for lang in LANGS if not (lang == "es" and i % 3 == 0) and not (i == 5 and lang != "en")]
        group = {}
        for lang in langs:
            negs = (Negative(f"{lang} wrong {i}", lang), Negative(f"en other {i}", "en", f"q{(i + 1) % n:02d}")) if negatives else ()
            group[lang] = Pair(f"{lang} question {i} ünï", f"{lang} answer {i}", negs)
        group = {lang: p for lang, p in group.items() if lang in languages}
        if group:
            ids.append(qid)
            pairs.append(group)
    return TrainingGroups(ids=ids, pairs=pairs)


def neg_rows(pair: Pair) -> list[dict]:
    return [{"text": n.text, "lang": n.lang, "id": n.id} for n in pair.negatives]


def long_rows(groups: TrainingGroups, negatives: bool) -> list[dict]:
    """Long layout rows, shuffled out of id order (the loader sorts)."""
    rows = [{"id": qid, "lang": lang, "query": p.query, "positive": p.positive, **({"negatives": neg_rows(p)} if negatives else {})}
            for qid, group in zip(groups.ids, groups.pairs) for lang, p in group.items()]
    return rows[1::2] + rows[::2]


def wide_templated_rows(groups: TrainingGroups, negatives: bool) -> list[dict]:
    rows = []
    for qid, group in zip(groups.ids, groups.pairs):
        row = {"qid": qid}
        for lang in LANGS:
            p = group.get(lang)
            row[f"query_{lang}"] = p and p.query
            row[f"passage_{lang}"] = p and p.positive
            if negatives:
                row[f"negatives_{lang}"] = neg_rows(p) if p else None
        rows.append(row)
    return rows[::-1]


def wide_dict_dataset(groups: TrainingGroups, negatives: bool):
    """`translation` is an HF `Translation` feature (query), `answers` a plain struct (positive)."""
    from datasets import Dataset, Features, List, Translation, Value

    neg = List({"text": Value("string"), "lang": Value("string"), "id": Value("string")})
    features = {"id": Value("string"), "translation": Translation(languages=list(LANGS)),
                "answers": {lang: Value("string") for lang in LANGS}}
    if negatives:
        features["negs"] = {lang: neg for lang in LANGS}
    rows = []
    for qid, group in zip(groups.ids, groups.pairs):
        row = {"id": qid, "translation": {lang: group[lang].query if lang in group else None for lang in LANGS},
               "answers": {lang: group[lang].positive if lang in group else None for lang in LANGS}}
        if negatives:
            row["negs"] = {lang: neg_rows(group[lang]) if lang in group else None for lang in LANGS}
        rows.append(row)
    return Dataset.from_list(rows, features=Features(features))


def write(tmp_path, rows_or_dataset, name: str, saved: bool = False) -> dict:
    """Write a parquet file (or a save_to_disk folder): the `data.hf` keys that name it."""
    ds = rows_or_dataset if isinstance(rows_or_dataset, datasets.Dataset) else datasets.Dataset.from_list(rows_or_dataset)
    if saved:
        ds.save_to_disk(str(tmp_path / name))
        return {"path": str(tmp_path / name)}
    ds.to_parquet(str(tmp_path / f"{name}.parquet"))
    return {"path": "parquet", "data_files": str(tmp_path / f"{name}.parquet")}


WIDE_TEMPLATED = {"id": "qid", "query": "query_{lang}", "positive": "passage_{lang}"}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("negatives", [True, False])
def test_long_parquet_equals_the_jsonl_groups(tmp_path, streaming, negatives):
    expected = expected_groups(negatives)
    source = write(tmp_path, long_rows(expected, negatives), "long")
    groups = load_hf_training({**source, "streaming": streaming})
    assert isinstance(groups.pairs, HFPairs)  # lazy: texts stay in the Arrow file
    assert groups == expected
    assert load_training_jsonl(write_training_jsonl(expected, tmp_path / "same.jsonl")) == groups


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("negatives", [True, False])
def test_wide_templated_columns(tmp_path, streaming, negatives):
    expected = expected_groups(negatives)
    source = write(tmp_path, wide_templated_rows(expected, negatives), "wide")
    columns = {**WIDE_TEMPLATED, **({"negatives": "negatives_{lang}"} if negatives else {})}
    groups = load_hf_training({**source, "layout": "wide", "streaming": streaming, "columns": columns})
    assert groups == expected and groups.languages == list(LANGS)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("negatives", [True, False])
def test_wide_dict_columns(tmp_path, streaming, negatives):
    expected = expected_groups(negatives)
    source = write(tmp_path, wide_dict_dataset(expected, negatives), "wide-dict")
    columns = {"query": "translation", "positive": "answers", **({"negatives": "negs"} if negatives else {})}
    groups = load_hf_training({**source, "layout": "wide", "streaming": streaming, "columns": columns})
    assert groups == expected


@pytest.mark.parametrize("streaming", [False, True])
def test_save_to_disk_folders_go_through_load_from_disk(tmp_path, streaming):
    expected = expected_groups()
    long = write(tmp_path, long_rows(expected, True), "long-saved", saved=True)
    assert load_hf_training({**long, "streaming": streaming}) == expected
    wide = write(tmp_path, wide_dict_dataset(expected, True), "wide-saved", saved=True)
    columns = {"query": "translation", "positive": "answers", "negatives": "negs"}
    assert load_hf_training({**wide, "layout": "wide", "streaming": streaming, "columns": columns}) == expected
    datasets.DatasetDict({"train": datasets.Dataset.from_list(long_rows(expected, True))}).save_to_disk(str(tmp_path / "dict"))
    assert load_hf_training({"path": str(tmp_path / "dict"), "split": "train"}) == expected
    with pytest.raises(BatchmixError, match=r"data.hf.split='dev' is not in the saved dataset .*\['train'\]"):
        load_hf_training({"path": str(tmp_path / "dict"), "split": "dev"})


@pytest.mark.parametrize("streaming", [False, True])
def test_languages_filter(tmp_path, streaming):
    expected = expected_groups(languages=("de", "es"))
    assert "q05" not in expected.ids  # English-only: no pair left
    long = write(tmp_path, long_rows(expected_groups(), True), "long")
    assert load_hf_training({**long, "streaming": streaming, "languages": ["es", "de"]}) == expected
    wide = write(tmp_path, wide_templated_rows(expected_groups(), True), "wide")
    columns = {**WIDE_TEMPLATED, "negatives": "negatives_{lang}"}
    assert load_hf_training({**wide, "layout": "wide", "streaming": streaming, "columns": columns, "languages": ["de", "es"]}) == expected
    only = load_hf_training({**long, "streaming": streaming, "languages": "en"})  # one code, as data.languages=en
    assert only.languages == ["en"] and len(only) == 12


@pytest.mark.parametrize("streaming", [False, True])
def test_max_rows_takes_the_first_source_rows(tmp_path, streaming):
    full = expected_groups()
    rows = long_rows(full, True)
    source = write(tmp_path, rows, "long")
    first = rows[:7]
    want = TrainingGroups(ids=sorted({r["id"] for r in first}), pairs=[])
    want.pairs = [{r["lang"]: full.pairs[full.ids.index(qid)][r["lang"]] for r in sorted(first, key=lambda r: r["lang"]) if r["id"] == qid}
                  for qid in want.ids]
    assert load_hf_training({**source, "streaming": streaming, "max_rows": 7}) == want
    wide = write(tmp_path, wide_templated_rows(full, False), "wide")  # rows in reverse id order
    got = load_hf_training({**wide, "layout": "wide", "streaming": streaming, "columns": WIDE_TEMPLATED, "max_rows": 3})
    assert got.ids == ["q09", "q10", "q11"]


def test_lazy_pairs_behave_like_a_list_of_dicts(tmp_path):
    expected = expected_groups()
    groups = load_hf_training(write(tmp_path, long_rows(expected, True), "long"))
    pairs = groups.pairs
    assert len(pairs) == len(expected.pairs) and pairs[-1] == expected.pairs[-1] and pairs[2:4] == expected.pairs[2:4]
    g = expected.ids.index("q03")
    assert sorted(pairs[g]) == groups.langs_of(g) == ["de", "en"] and "es" not in pairs[g] and "en" in pairs[g]
    assert list(pairs[g].values()) == list(expected.pairs[g].values()) and dict(pairs[g]) == expected.pairs[g]
    with pytest.raises(KeyError):
        pairs[g]["es"]
    with pytest.raises(IndexError):
        pairs[len(pairs)]
    assert pickle.loads(pickle.dumps(groups)) == expected  # DataLoader workers get the mapped file, not the texts
    # the consumers: hard negatives, as for the same pairs in memory
    assert pick_negatives(groups, g, "de", 3) == pick_negatives(expected, g, "de", 3)
    check_hard_negatives(groups, 2, "any")


def test_xquad_train_split_through_parquet(tmp_path, xquad_root):
    train = split_by_article(load_lareqa(xquad_root, ["de", "en"]), seed=0)["train"].training_groups()
    few = TrainingGroups(ids=train.ids[:50], pairs=train.pairs[:50])
    rows = [{"id": qid, "lang": lang, "query": p.query, "positive": p.positive} for qid, g in zip(few.ids, few.pairs) for lang, p in g.items()]
    assert load_hf_training(write(tmp_path, rows, "xquad")) == few


def hf_error(tmp_path, rows, match, **options):
    source = write(tmp_path, rows, "bad") if rows is not None else {}
    with pytest.raises(BatchmixError, match=match) as err:
        load_hf_training({**source, **options})
    assert "\n" not in str(err.value)


def test_errors_name_the_value_and_the_fix(tmp_path):
    good = long_rows(expected_groups(False), False)
    hf_error(tmp_path, good, r"no column 'question' for query .*data.hf.columns.query=<column>", columns={"query": "question"})
    hf_error(tmp_path, good, r"no column 'negs' for negatives", columns={"negatives": "negs"})
    empty = [dict(r) for r in good]
    empty[4]["positive"] = "  "
    hf_error(tmp_path, empty, r"row 4 \(id 'q..', lang '..'\) has an empty positive \(column 'positive'\); drop or fill")
    dup = good + [dict(good[0])]
    hf_error(tmp_path, dup, rf"duplicate \(id, lang\) = \('{good[0]['id']}', '{good[0]['lang']}'\) in rows .*one row per id and language")
    hf_error(tmp_path, good, r"has no rows for data.hf.languages=\['xx'\]", languages=["xx"])
    hf_error(tmp_path, good, r"streamed no rows \(data.hf.max_rows=None, data.hf.languages=\['xx'\]\)", languages=["xx"], streaming=True)
    hf_error(tmp_path, [{**r, "id": None if k == 3 else r["id"]} for k, r in enumerate(good)], r"row 3 has no id \(column 'id' is null\)")
    hf_error(tmp_path, [{**r, "id": 1.5} for r in good], r"id column 'id' holds double; ids must be strings or integers")
    bad_negs = [{**r, "negatives": 3} for r in good]
    hf_error(tmp_path, bad_negs, r"negatives column 'negatives' holds int64, not a list")
    hf_error(tmp_path, [{**r, "links": "q01"} for r in good], r"answers column 'links' holds string, not a list of ids; fix data.hf.columns.answers",
             columns={"answers": "links"})
    hf_error(tmp_path, good, r"no column 'links' for answers", columns={"answers": "links"})


def test_wide_errors(tmp_path):
    wide = wide_templated_rows(expected_groups(False), False)
    hf_error(tmp_path, wide, r"data.hf.languages has \['fr'\], which .* lacks \(it has \['de', 'en', 'es'\]\)",
             layout="wide", columns=WIDE_TEMPLATED, languages=["en", "fr"])
    half = [dict(r) for r in wide]
    half[0]["passage_de"] = None
    hf_error(tmp_path, half, r"row 0 \(id 'q11'\) has a query in 'de' but no positive; give both or neither",
             layout="wide", columns=WIDE_TEMPLATED)
    blank = [dict(r) for r in wide]
    blank[1]["query_en"] = ""
    hf_error(tmp_path, blank, r"row 1 \(id 'q10'\) has an empty query in 'en'; use null for a missing translation",
             layout="wide", columns=WIDE_TEMPLATED)
    hf_error(tmp_path, wide + [wide[0]], r"id 'q11' is in rows .*layout=wide needs one row per id", layout="wide", columns=WIDE_TEMPLATED)
    hf_error(tmp_path, wide, r"column 'qid' \(query\) is not a \{lang: text\} struct", layout="wide", columns={**WIDE_TEMPLATED, "query": "qid"})
    hf_error(tmp_path, wide, r"no language has both a query \('q_\{lang\}'\)", layout="wide", columns={**WIDE_TEMPLATED, "query": "q_{lang}"})
    hf_error(tmp_path, wide, r"no negatives column 'negs_de'", layout="wide", columns={**WIDE_TEMPLATED, "negatives": "negs_{lang}"})


def test_numbered_ids_for_a_translation_set_without_ids(tmp_path):
    rows = [{"translation": {"de": "Hallo", "en": "Hello"}}, {"translation": {"de": "Welt", "en": "World"}}]
    columns = {"id": None, "query": "translation", "positive": "translation"}  # one text as query and positive
    groups = load_hf_training({**write(tmp_path, rows, "pairs"), "layout": "wide", "columns": columns})
    assert groups.ids == ["0", "1"] and groups.pairs[1]["en"] == Pair("World", "World")


@pytest.mark.parametrize("options, match", [
    ({"path": "parquet", "layout": "tall"}, r"data.hf.layout='tall' is not one of \['long', 'wide'\]"),
    ({"path": None}, r"data.hf.path=None must name the data: .*data.hf.path=parquet data.hf.data_files=pairs.parquet"),
    ({"path": "parquet", "streaming": "yes"}, r"data.hf.streaming='yes' must be true or false"),
    ({"path": "parquet", "max_rows": 0}, r"data.hf.max_rows=0 must be a positive integer"),
    ({"path": "parquet", "max_rows": True}, r"data.hf.max_rows=True must be a positive integer"),
    ({"path": "parquet", "columns": {"text": "q"}}, r"data.hf.columns has \['text'\]"),
    ({"path": "parquet", "columns": {"query": "q_{lang}"}}, r"data.hf.columns.query='q_\{lang\}': a \{lang\} column name is for data.hf.layout=wide"),
    ({"path": "parquet", "languages": []}, r"data.hf.languages=\[\] must be null"),
    ({"path": "parquet", "colums": {}}, r"data.hf has unknown option\(s\) \['colums'\]"),
])  # fmt: skip
def test_option_errors_read_nothing(options, match):
    with pytest.raises(BatchmixError, match=match):
        check_hf_options(options)


def test_opening_errors_are_one_line(tmp_path):
    hf_error(tmp_path, None, r"the hub is unreachable \(data.hf.path='nobody/no-such-set'.*data.hf.path=parquet data.hf.data_files=",
             path="nobody/no-such-set")
    hf_error(tmp_path, None, r"data_files='.*missing.parquet' was not found .*check the path", path="parquet",
             data_files=str(tmp_path / "missing.parquet"))
    hf_error(tmp_path, long_rows(expected_groups(False), False), r"Unknown split \"dev\".*fix data.hf.name / data.hf.split", split="dev")
    (tmp_path / "x.json").write_text("not json\n")
    hf_error(tmp_path, None, r"could not be read .*check the builder", path="json", data_files=str(tmp_path / "x.json"))


def compose_train(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_config_trains_on_hf_and_evaluates_on_the_local_files(tmp_path, xquad_root):
    expected = expected_groups()
    source = write(tmp_path, long_rows(expected, True), "train")
    cfg = compose_train([f"data.root={xquad_root}", "data.languages=[de,en]", "data.source=hf", "data.hf.path=parquet",
                         f"data.hf.data_files={source['data_files']}", "data.split.train=0", "data.split.val=0.5", "data.split.test=0.5"])
    check_data(cfg.data, cfg.eval.split)  # no train share needed: the pairs come from data.hf
    groups, splits = load_splits(cfg.data)
    assert groups == expected
    assert splits["test"].langs == ["de", "en"] and splits["test"].languages["en"].question_ids and splits["val"].languages["de"].questions

    with pytest.raises(BatchmixError, match=r"data.train_file=.* and data.source=hf both give training pairs"):
        check_data(OmegaConf.merge(cfg.data, {"train_file": source["data_files"]}), cfg.eval.split)
    with pytest.raises(BatchmixError, match=r"data.train_file=.* and data.source=hf"):
        load_splits(OmegaConf.merge(cfg, {"data": {"train_file": source["data_files"]}}).data)
    with pytest.raises(BatchmixError, match=r"data.hf.layout='tall'"):
        check_data_files(OmegaConf.merge(cfg.data, {"hf": {"layout": "tall"}}))
    wide = compose_train([f"data.root={xquad_root}", "data.source=hf", "data.hf.path=parquet", "data.hf.layout=wide",
                          'data.hf.columns.query="query_{lang}"'])
    assert wide.data.hf.columns.query == "query_{lang}"
    with pytest.raises(BatchmixError, match=r"data.hf.path=None must name the data"):
        check_data_files(OmegaConf.merge(cfg.data, {"hf": {"path": None}}))
