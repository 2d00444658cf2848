"""Extra evaluation sets (`eval.sets`): score a run on more than its own held-out articles.

A study wants the held-out split of the training data *and* corpora the model never trained on,
scored zero-shot: MLQA-R after training on XQuAD-R, or XQuAD-R's held-out articles in languages
left out of training. Each entry of `eval.sets` names one LAReQA corpus (defaults: config/schema.py's EvalSetConfig):

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
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from omegaconf import OmegaConf, ValidationError

from batchmix.config.schema import EvalSetConfig
from batchmix.data.load import load_corpus
from batchmix.data.root import resolve_data_root
from batchmix.data.split import split_by_article
from batchmix.data.corpus import LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.eval.settings import BASELINE_FIT, HEADLINE_ORDER

log = logging.getLogger("batchmix")

SPLITS = ("all", "train", "val", "test")


@dataclass(frozen=True)
class EvalSet:
    """One extra evaluation corpus; `key` prefixes its metrics (`<key>/map/multi`)."""

    key: str
    dataset: str
    split: str = "all"
    required: bool = True
    data: dict[str, Any] = field(default_factory=dict)  # a data config for `load_corpus`


def eval_sets(sets: Mapping[str, Any], data: Mapping[str, Any], warn: bool = True, trained_on_data: bool = True) -> list[EvalSet]:
    """Parse and check `eval.sets` (each entry read onto `EvalSetConfig`'s defaults) against the
    run's `data` node; the pre-flight does it once and the recipe loads what it returns.

    `trained_on_data`: the model was trained on `data` (a training run, or eval.py with a
    batchmix checkpoint), so scoring that dataset's training articles would leak.

    Refuses unknown keys, bad splits, a set that re-scores training questions, and a required
    set whose data root cannot be found. Optional sets whose root is missing are dropped here
    (with a warning each if `warn`), so nothing downstream has to know they were configured.
    """
    out = []
    for key, entry in sets.items():
        spec = _entry(key, entry or {})
        if str(key) == BASELINE_FIT:
            raise BatchmixError(f"eval.sets.{key}: {BASELINE_FIT!r} is the name of the baselines' fit text in a round; name the set otherwise")
        dataset = spec.dataset or str(key)
        if spec.split not in SPLITS:
            raise BatchmixError(f"eval.sets.{key}.split={spec.split!r} is not one of {list(SPLITS)}")
        own_pairs = data["train_file"] or data["source"] == "hf"  # then no LAReQA article is trained on
        if trained_on_data and dataset == data["name"] and not own_pairs and spec.split in ("all", "train"):
            raise BatchmixError(
                f"eval.sets.{key} scores {dataset} split={spec.split}, which holds the articles this run trains on; "
                f"use eval.sets.{key}.split=test (held-out articles) or another dataset"
            )
        if spec.source == "local":
            try:
                resolve_data_root(spec.root, dataset)
            except BatchmixError as err:
                err = str(err).replace("data.root=", f"eval.sets.{key}.root=")
                if spec.required:
                    raise BatchmixError(f"eval.sets.{key}: {err} (or eval.sets.{key}.required=false to skip it while missing)") from None
                if warn:
                    log.warning("eval.sets.%s skipped: %s", key, err)
                continue
        set_data = {
            "name": dataset, "root": spec.root, "languages": spec.languages, "source": spec.source,
            "split": dict(data["split"]), "split_seed": int(data["split_seed"]),
        }
        out.append(EvalSet(key=str(key), dataset=dataset, split=spec.split, required=spec.required, data=set_data))
    return out


def _entry(key: Any, entry: Any) -> EvalSetConfig:
    """One `eval.sets` entry typed; an unknown key or a wrong type as one line."""
    unknown = sorted(set(entry) - {f.name for f in fields(EvalSetConfig)}) if isinstance(entry, Mapping) else []
    if unknown:
        raise BatchmixError(f"eval.sets.{key} has unknown keys {unknown}; valid keys: {', '.join(f.name for f in fields(EvalSetConfig))}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(EvalSetConfig, entry))
    except ValidationError as err:
        raise BatchmixError(f"eval.sets.{key}.{err.key}={err.value!r}: {str(err).splitlines()[0]}") from None


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
