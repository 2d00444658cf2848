"""Which hard negatives join a query in a batch: `data.hard_negatives=N`, `data.negatives_lang`.

A pair (id, lang) may carry hard negatives (JSONL `negatives`, a Hugging Face column, the miner's
output). A batch pairs a query with a positive in `positive_lang` (= the query's language in a
`mono` batch, another one in a `cross` batch); its N hard negatives are taken, best first, from
the negatives of that id: first those given with its `positive_lang` row, then those of its other
language rows, no text twice, keeping only the languages `data.negatives_lang` allows:

- `any`: every language;
- `same`: the positive's language, so a `mono` batch stays monolingual, negatives included;
- `other`: any language but the positive's, so the negatives cannot be told apart by language.

The choice depends only on the data, not on the epoch, so a batch is the same after a resume. Every
query gets exactly N (the loss then sees B x N hard negatives, an equal share per DDP rank); a pair
with fewer is refused when the data loads (`check_hard_negatives`), before any model does.
"""

from __future__ import annotations

from typing import Any

from batchmix.data.corpus import Negative, TrainingGroups
from batchmix.core.errors import BatchmixError

NEGATIVES_LANG = ("any", "same", "other")


def check_negatives_options(hard_negatives: Any, negatives_lang: Any) -> tuple[int, str]:
    """`data.hard_negatives` (>= 0) and `data.negatives_lang`; reads no data."""
    if isinstance(hard_negatives, bool) or not isinstance(hard_negatives, int) or hard_negatives < 0:
        raise BatchmixError(f"data.hard_negatives={hard_negatives!r} must be an integer >= 0 (0: in-batch negatives only; e.g. 3)")
    if negatives_lang not in NEGATIVES_LANG:
        raise BatchmixError(f"data.negatives_lang={negatives_lang!r} is not one of {list(NEGATIVES_LANG)}: use data.negatives_lang=any")
    return hard_negatives, negatives_lang


def _allowed(negative: Negative, positive_lang: str, rule: str) -> bool:
    return rule == "any" or (negative.lang == positive_lang) == (rule == "same")


def pick_negatives(groups: TrainingGroups, group: int, positive_lang: str, n: int, rule: str = "any") -> list[Negative]:
    """Up to `n` hard negatives of `groups.pairs[group]` for a positive in `positive_lang` (module docstring)."""
    pairs = groups.pairs[group]
    order = [positive_lang] + [lang for lang in sorted(pairs) if lang != positive_lang]
    out: list[Negative] = []
    seen: set[str] = set()
    for lang in order:
        for negative in pairs[lang].negatives if lang in pairs else ():
            if negative.text not in seen and _allowed(negative, positive_lang, rule):
                seen.add(negative.text)
                out.append(negative)
                if len(out) == n:
                    return out
    return out


def check_hard_negatives(groups: TrainingGroups, n: int, rule: str) -> None:
    """Every (id, language) a batch can pair a query with must offer `n` hard negatives under `rule`."""
    if n == 0:
        return
    short = [(groups.ids[g], lang) for g, pairs in enumerate(groups.pairs) for lang in pairs
             if len(pick_negatives(groups, g, lang, n, rule)) < n]
    if short:
        total = sum(len(p) for p in groups.pairs)
        qid, lang = short[0]
        raise BatchmixError(
            f"data.hard_negatives={n} (data.negatives_lang={rule}): {len(short)} of {total} pairs have fewer, first "
            f"id {qid!r} in {lang!r}; lower data.hard_negatives, use data.negatives_lang=any, or mine more "
            f"(batchmix mine mine.num_negatives={n})"
        )
