"""Split a LAReQA corpus into train / val / test by whole article groups.

XQuAD-R and MLQA-R ship as one evaluation set; training on part of it is only honest if no
article is on both sides: questions of one article share context, and every question exists in
several languages, so splitting by question or by language would leak. Article groups are
language-independent (see `lareqa.py`), so one split of the groups is the same in every language.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from batchmix.data.corpus import LAReQACorpus
from batchmix.core.errors import BatchmixError

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """`{split: fraction}` as floats, or one line naming the bad `data.split` value: each a finite
    number >= 0, together summing to 1. Cheap, so the CLI runs it before any data loads."""
    if not isinstance(fractions, Mapping) or not fractions:
        raise BatchmixError(f"split fractions are empty or not a mapping ({fractions!r}); give e.g. data.split={{train:0.8,val:0.1,test:0.1}}")
    shown = ", ".join(f"{k}={v}" for k, v in fractions.items())
    values = {}
    for key, value in fractions.items():
        try:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
        except (TypeError, ValueError):
            raise BatchmixError(f"split fraction {key}={value!r} is not a number ({shown}); set data.split.{key} to a fraction in [0, 1]") from None
        if not math.isfinite(value) or value < 0:
            raise BatchmixError(f"split fraction {key}={value} must be a finite number >= 0 ({shown}); set data.split.{key} to a fraction in [0, 1]")
        values[str(key)] = value
    total = sum(values.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise BatchmixError(f"split fractions {shown} sum to {total:g}; they must sum to 1 (e.g. data.split.train=0.8 "
                            "data.split.val=0.1 data.split.test=0.1)")
    return values


def allocate_group_counts(n_groups: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many groups each split gets: largest-remainder (Hamilton) rounding of `fraction * n`.

    Floors first, then the leftover groups go to the largest fractional parts (ties: the order of
    `fractions`). A split with a positive fraction that rounded to 0 then takes one group from the
    currently largest split, so every requested split is non-empty.
    """
    values = check_fractions(fractions)
    positive = [k for k, v in values.items() if v > 0]
    if n_groups < len(positive):
        raise BatchmixError(f"cannot split {n_groups} article group(s) into {len(positive)} non-empty splits "
                            f"({', '.join(positive)}); use fewer splits (set the unwanted fraction to 0, e.g. data.split.val=0) "
                            "or more data (more articles, or more of data.languages)")
    quotas = {k: v * n_groups for k, v in values.items()}
    counts = {k: math.floor(q) for k, q in quotas.items()}
    leftover = n_groups - sum(counts.values())
    by_remainder = sorted(values, key=lambda k: -(quotas[k] - counts[k]))  # stable: ties keep order
    for k in by_remainder[:leftover]:
        counts[k] += 1
    for k in positive:
        if counts[k] == 0:
            donor = max(counts, key=lambda d: counts[d])  # has >= 2 since n_groups >= len(positive)
            counts[donor] -= 1
            counts[k] = 1
    return counts


def split_by_article(
    corpus: LAReQACorpus,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, LAReQACorpus]:
    """Shuffle the article groups with `seed` and cut them into splits of the given fractions.

    Returns one corpus per key of `fractions` (same order), named `<corpus>/<split>`; a split with
    fraction 0 is an empty corpus. Deterministic for a given corpus, fractions and seed; no
    question id, paragraph or candidate sentence is ever in two splits.
    """
    groups = corpus.groups
    if not groups:
        raise BatchmixError(f"corpus {corpus.name!r} has no article groups to split; load some data first")
    counts = allocate_group_counts(len(groups), fractions)
    shuffled = np.random.default_rng(seed).permutation(np.asarray(groups, dtype=np.int64)).tolist()
    splits: dict[str, LAReQACorpus] = {}
    start = 0
    for key, count in counts.items():
        splits[key] = split = corpus.subset(shuffled[start : start + count], name=f"{corpus.name}/{key}")
        start += count
        if count > 0 and not any(ls.question_ids for ls in split.languages.values()):
            raise BatchmixError(f"split {key!r} of {corpus.name!r} has no questions (its article groups hold only "
                                "candidates); change the seed or the split fractions")
    return splits
