"""From the `data` config to what training needs: training pairs and held-out evaluation corpora."""

from __future__ import annotations

from typing import Any, Mapping

from batchmix.data.corpus import LAReQACorpus, TrainingGroups
from batchmix.data.jsonl import load_training_jsonl
from batchmix.data.lareqa import load_lareqa
from batchmix.data.split import split_by_article
from batchmix.errors import BatchmixError

SOURCES = ("local", "hub")


def check_source(source: Any) -> str:
    """`data.source`: where the LAReQA corpus comes from."""
    if source not in SOURCES:
        raise BatchmixError(f"data.source={source!r} is not one of {list(SOURCES)}: use data.source=local (files) or data.source=hub")
    return source


def load_corpus(data: Mapping[str, Any]) -> LAReQACorpus:
    """The whole LAReQA corpus named by the config (local folder or the hub)."""
    source = check_source(data.get("source", "local"))
    langs = data.get("languages")
    languages = None if langs is None else [langs] if isinstance(langs, str) else list(langs)  # data.languages=en: one
    if source == "hub":
        from batchmix.data.hub import load_lareqa_hub

        return load_lareqa_hub(data.get("name", "xquad-r"), languages)
    return load_lareqa(data.get("root"), languages, name=data.get("name", "xquad-r"))


def load_splits(data: Mapping[str, Any]) -> tuple[TrainingGroups, dict[str, LAReQACorpus]]:
    """(training groups, {split name: corpus}) with the article split of `data.split`.

    Training pairs come from the `train` split, or from `data.train_file` (JSONL) when set; the
    evaluation corpora are always the held-out article splits of the LAReQA corpus.
    """
    corpus = load_corpus(data)
    splits = split_by_article(corpus, dict(data.get("split") or {}), seed=int(data.get("split_seed", 0)))
    if data.get("train_file"):
        groups = load_training_jsonl(data["train_file"])
    else:
        if "train" not in splits:
            raise BatchmixError("data.split has no 'train' share: add data.split.train=0.8 or give data.train_file=<pairs.jsonl>")
        groups = splits["train"].training_groups()
    if len(groups) == 0:
        raise BatchmixError("the training split is empty: raise data.split.train or check data.languages / data.train_file")
    return groups, splits
