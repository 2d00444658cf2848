"""Extra evaluation sets (`eval.sets`): score a run on more than its own held-out articles.

A study wants the held-out split of the training data *and* corpora the model never trained on,
scored zero-shot: MLQA-R after training on XQuAD-R, or XQuAD-R's held-out articles in languages
left out of training. Each entry of `eval.sets` names one LAReQA corpus:

    eval:
      sets:
        mlqa-r:                 # the key prefixes every metric: mlqa-r/map/multi, ...
          dataset: mlqa-r       # default: the key
          root: null            # null: $BATCHMIX_DATA/<dataset> or ../shared/data/<dataset>
          languages: null       # null: every <lang>.json at the root
          source: local         # local | hub
          split: all            # all | train | val | test (article split with data.split / data.split_seed)
          required: true        # false: a missing corpus is skipped with a warning (e.g. not downloaded yet)

The checks here run before any model or data loads; a set that would score training questions
(the training dataset with split all/train) is refused rather than silently leaking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from batchmix.data.load import load_corpus
from batchmix.data.root import resolve_data_root
from batchmix.data.split import split_by_article
from batchmix.data.corpus import LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.eval.settings import HEADLINE_ORDER

log = logging.getLogger("batchmix")

SPLITS = ("all", "train", "val", "test")
KEYS = ("dataset", "root", "languages", "source", "split", "required")


@dataclass(frozen=True)
class EvalSet:
    """One extra evaluation corpus; `key` prefixes its metrics (`<key>/map/multi`)."""

    key: str
    dataset: str
    split: str = "all"
    required: bool = True
    data: dict[str, Any] = field(default_factory=dict)  # a data config for `load_corpus`


def eval_sets(cfg: Mapping[str, Any], warn: bool = True, trained_on_data: bool = True) -> list[EvalSet]:
    """Parse and check `eval.sets` of a train or eval config (a plain dict or DictConfig).

    `trained_on_data`: the model was trained on `cfg.data` (a training run, or eval.py with a
    batchmix checkpoint), so scoring that dataset's training articles would leak.

    Refuses unknown keys, bad splits, a set that re-scores training questions, and a required
    set whose data root cannot be found. Optional sets whose root is missing are dropped here
    (with a warning each if `warn`), so nothing downstream has to know they were configured.
    """
    sets = (cfg.get("eval") or {}).get("sets") or {}
    if not isinstance(sets, Mapping):
        raise BatchmixError(f"eval.sets={sets!r} must be a mapping of name -> {{dataset, root, split, ...}}, e.g. eval.sets.mlqa-r.split=all")
    data = cfg.get("data") or {}
    out = []
    for key, spec in sets.items():
        spec = dict(spec or {})
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise BatchmixError(f"eval.sets.{key} has unknown keys {unknown}; valid keys: {', '.join(KEYS)}")
        dataset = str(spec.get("dataset") or key)
        split = str(spec.get("split", "all"))
        if split not in SPLITS:
            raise BatchmixError(f"eval.sets.{key}.split={split!r} is not one of {list(SPLITS)}")
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise BatchmixError(f"eval.sets.{key}.required={required!r} must be true or false")
        own_pairs = data.get("train_file") or data.get("source") == "hf"  # then no LAReQA article is trained on
        if trained_on_data and dataset == data.get("name") and not own_pairs and split in ("all", "train"):
            raise BatchmixError(
                f"eval.sets.{key} scores {dataset} split={split}, which holds the articles this run trains on; "
                f"use eval.sets.{key}.split=test (held-out articles) or another dataset"
            )
        source = spec.get("source", "local")
        if source == "local":
            try:
                resolve_data_root(spec.get("root"), dataset)
            except BatchmixError as err:
                err = str(err).replace("data.root=", f"eval.sets.{key}.root=")
                if required:
                    raise BatchmixError(f"eval.sets.{key}: {err} (or eval.sets.{key}.required=false to skip it while missing)") from None
                if warn:
                    log.warning("eval.sets.%s skipped: %s", key, err)
                continue
        set_data = {
            "name": dataset, "root": spec.get("root"), "languages": spec.get("languages"), "source": source,
            "split": dict(data.get("split") or {}), "split_seed": int(data.get("split_seed", 0)),
        }
        out.append(EvalSet(key=str(key), dataset=dataset, split=split, required=required, data=set_data))
    return out


def load_eval_set(spec: EvalSet) -> LAReQACorpus:
    """The corpus of one set: the whole LAReQA corpus, or one of its article splits."""
    corpus = load_corpus(spec.data)
    if spec.split == "all":
        return corpus
    splits = split_by_article(corpus, spec.data["split"], seed=spec.data["split_seed"])
    if spec.split not in splits or not any(ls.question_ids for ls in splits[spec.split].languages.values()):
        raise BatchmixError(f"eval.sets.{spec.key}: the {spec.split} split of {spec.dataset} is empty; check data.split or use split=all")
    return splits[spec.split]


def headline_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The rows each set adds to a run's printed metrics table: its mAP per setting."""
    return tuple(f"{key}/map/{setting}" for key in keys for setting in HEADLINE_ORDER)


def prefixed(key: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """`map/multi` -> `<key>/map/multi`: one flat metrics.json holds every set."""
    return {f"{key}/{name}": value for name, value in metrics.items()}
