"""`source=hub`: tested up to the `datasets.load_dataset` call boundary (no network in tests)."""

from __future__ import annotations

import json
import pytest

datasets = pytest.importorskip("datasets")

from batchmix.data import hub  # noqa: E402
from batchmix.data.hub import hub_url, load_lareqa_hub  # noqa: E402
from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.core.errors import BatchmixError  # noqa: E402


pytestmark = pytest.mark.usefixtures("datasets_offline")  # tests/conftest.py


def test_urls():
    assert hub_url("xquad-r", "th") == (
        "https://raw.githubusercontent.com/google-research-datasets/lareqa/master/xquad-r/th.json"
    )
    assert hub_url("mlqa-r", "de", revision="abc123").endswith("/lareqa/abc123/mlqa-dev-r/de.json")


def test_hub_corpus_equals_local_corpus(monkeypatch, xquad_root):
    calls = []

    def fake_load_dataset(path, data_files=None, field=None, split=None, **kwargs):
        calls.append((path, data_files, field, split))
        ((lang, url),) = data_files.items()
        assert url == hub_url("xquad-r", lang)
        data = json.loads((xquad_root / f"{lang}.json").read_text(encoding="utf-8"))["data"]
        return datasets.Dataset.from_list(data)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = load_lareqa_hub("xquad-r", languages=["zh", "en", "ar"])
    assert [c[0] for c in calls] == ["json"] * 3 and all(c[2] == "data" for c in calls)
    assert [c[3] for c in calls] == ["ar", "en", "zh"]
    assert corpus == load_lareqa(xquad_root, ["ar", "en", "zh"])
    assert corpus.name == "xquad-r" and len(corpus.groups) == 48


def test_real_json_loader_on_a_local_file(monkeypatch, xquad_root):
    """The real `datasets` JSON builder (Arrow round trip) gives the same corpus as json.load."""
    monkeypatch.setattr(hub, "hub_url", lambda dataset, lang, revision="master": str(xquad_root / f"{lang}.json"))
    assert load_lareqa_hub("xquad-r", ["th"]) == load_lareqa(xquad_root, ["th"])


@pytest.mark.parametrize("error", [ConnectionError("down"), FileNotFoundError("Unable to find"), TimeoutError()])
def test_network_failure_says_use_local(monkeypatch, error):
    def unreachable(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(BatchmixError, match=r"hub is unreachable \(https://.*xquad-r/en.json.*data.source=local data.root="):
        load_lareqa_hub("xquad-r", ["en"])


def test_hub_file_that_is_not_lareqa(monkeypatch):
    plain_squad = [{"title": "t", "paragraphs": [{"context": "c", "qas": []}]}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(plain_squad))
    with pytest.raises(BatchmixError, match=r"https://.*xquad-r/de.json: article 0 .* has no 'sentences'"):
        load_lareqa_hub("xquad-r", ["de"])


def test_unknown_dataset_and_language():
    with pytest.raises(BatchmixError, match=r"unknown hub dataset 'tydi'; set data.name to one of xquad-r, mlqa-r"):
        load_lareqa_hub("tydi")
    with pytest.raises(BatchmixError, match=r"unknown language code\(s\) th for hub dataset 'mlqa-r'; available: ar, de"):
        load_lareqa_hub("mlqa-r", ["en", "th"])
