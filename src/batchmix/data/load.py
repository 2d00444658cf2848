"""From the `data` config to what training needs: training pairs and held-out evaluation corpora."""

from __future__ import annotations

from typing import Any, Mapping

from batchmix.data.corpus import LAReQACorpus, TrainingGroups
from batchmix.data.jsonl import load_training_jsonl
from batchmix.data.lareqa import load_lareqa
from batchmix.data.split import split_by_article
from batchmix.core.errors import BatchmixError

SOURCES = ("local", "hub", "hf")


def check_source(source: Any) -> str:
    """`data.source`: where the LAReQA corpus comes from (`hf`: training pairs from `data.hf`, the
    evaluation corpus from the local files, as `local`)."""
    if source not in SOURCES:
        raise BatchmixError(f"data.source={source!r} is not one of {list(SOURCES)}: use data.source=local (files), "
                            f"data.source=hub, or data.source=hf (training pairs from a Hugging Face dataset, data.hf)")
    return source


def check_hf_source(data: Mapping[str, Any]) -> None:
    """`data.source=hf` takes its training pairs from `data.hf`: a `data.train_file` as well is ambiguous."""
    if data["train_file"]:
        raise BatchmixError(f"data.train_file={str(data['train_file'])!r} and data.source=hf both give training pairs; "
                            f"drop one (data.train_file=null, or data.source=local)")


def load_corpus(data: Mapping[str, Any]) -> LAReQACorpus:
    """The whole LAReQA corpus named by the config (local folder or the hub; `hf`: the local folder)."""
    source = check_source(data["source"])
    langs = data["languages"]
    languages = None if langs is None else [langs] if isinstance(langs, str) else list(langs)  # data.languages=en: one
    if source == "hub":
        from batchmix.data.hub import load_lareqa_hub

        return load_lareqa_hub(data["name"], languages)
    return load_lareqa(data["root"], languages, name=data["name"])


def load_splits(data: Mapping[str, Any]) -> tuple[TrainingGroups, dict[str, LAReQACorpus]]:
    """(training groups, {split name: corpus}) with the article split of `data.split`.

    Training pairs come from the `train` split, from `data.train_file` (JSONL) when set, or from
    `data.hf` with `data.source=hf`; the evaluation corpora are always the held-out article splits
    of the LAReQA corpus.
    """
    source = check_source(data["source"])
    if source == "hf":
        check_hf_source(data)
        from batchmix.data.hf import check_hf_options

        check_hf_options(data["hf"])  # before the corpus is read: a bad option costs nothing
    corpus = load_corpus(data)
    splits = split_by_article(corpus, dict(data["split"]), seed=int(data["split_seed"]))
    if source == "hf":
        from batchmix.data.hf import load_hf_training

        groups = load_hf_training(data["hf"])
    elif data["train_file"]:
        groups = load_training_jsonl(data["train_file"])
    else:
        if "train" not in splits:
            raise BatchmixError("data.split has no 'train' share: add data.split.train=0.8 or give data.train_file=<pairs.jsonl>")
        groups = splits["train"].training_groups()
    if len(groups) == 0:
        raise BatchmixError("the training split is empty: raise data.split.train or check data.languages / data.train_file / data.hf")
    return groups, splits
