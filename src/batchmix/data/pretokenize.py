"""Tokenise every training text once, cached on disk: batches then only look token ids up and pad.

Why: `PairCollator` otherwise tokenises each batch's texts on the fly, every epoch and in every
run of a sweep, on the process that feeds the model. With `data.pretokenize=true`, every
(group, language) query and positive of a `TrainingGroups` goes through `tokenize` once, via
Hugging Face `datasets` (`Dataset.map(batched=True)`), into an Arrow file under
`<cache root>/pretokenized/` (`$BATCHMIX_CACHE`, default ~/.cache/batchmix). Its name is a
fingerprint of the texts, the tokenizer's content, the prefixes and maximum lengths and the
tokenizer libraries' versions, so any later run on the same data and tokenizer memory-maps it.

Token ids are stored unpadded; `pad` pads a batch to its longest sequence with the tokenizer's
own `pad`, which gives exactly the tensors `tokenize` gives (same ids, mask and padded length).

Caching, as `datasets` 5.2 does it: a `Dataset.from_dict` lives in memory, and `map` only writes
and looks up an automatic cache file for datasets read from files; for an in-memory one it caches
only under an explicit `cache_file_name`, which it then loads if present (in any process). `map`
writes to a temporary file and renames it in, so concurrent sweep jobs never read a partial file.
Hence an explicit file name, keyed by our own fingerprint (also passed as `new_fingerprint`, so
`datasets` does not try to hash the tokenizer inside the map function).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from transformers import PreTrainedTokenizerBase

from batchmix.data.corpus import TrainingGroups
from batchmix.core.errors import BatchmixError
from batchmix.core.cache import cache_root
from batchmix.data.tokenize import tokenize

# Bump when the stored layout or the tokenisation recipe changes: older cache files are ignored.
FORMAT_VERSION = 1


def text_settings(query_prefix: str, passage_prefix: str, query_max_length: int, passage_max_length: int) -> dict[str, Any]:
    """What tokenisation depends on besides the texts: part of the cache key, and what a collator
    must share with the ids it is given."""
    return {"query_prefix": query_prefix, "passage_prefix": passage_prefix,
            "query_max_length": int(query_max_length), "passage_max_length": int(passage_max_length)}


def pad(tokenizer: PreTrainedTokenizerBase, ids: list[list[int]]) -> dict[str, torch.Tensor]:
    """Pad unpadded token ids to the longest in the batch, as `tokenize` pads (tested equal)."""
    enc = tokenizer.pad({"input_ids": ids}, padding=True, return_attention_mask=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what the tokenizer does (vocabulary, normaliser, special tokens), not its name.

    A fast tokenizer's `tokenizer.json` also records the truncation and padding that the last call
    left set on it, which are not part of the tokenizer; they are serialised before
    "added_tokens", so we hash from there on.
    """
    from datasets.fingerprint import Hasher

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer: datasets' Hasher pickles it
        return Hasher.hash([type(tokenizer).__name__, tokenizer])
    spec = backend.to_str()
    start = spec.find(',"added_tokens":')
    return Hasher.hash([type(tokenizer).__name__, spec[start:] if start >= 0 else spec])


class RaggedIds:
    """Variable-length rows of token ids stored flat (values + offsets): a row is a slice, and the
    whole table travels to DataLoader worker processes as two numpy arrays."""

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        offsets = column.offsets.to_numpy()
        self.values: np.ndarray = column.flatten().to_numpy()  # flatten() honours a sliced array's offset
        self.offsets: np.ndarray = offsets - offsets[0]

    def __getitem__(self, row: int) -> list[int]:
        return self.values[self.offsets[row] : self.offsets[row + 1]].tolist()


class PretokenizedPairs:
    """Unpadded token ids of every (group, language) query (with its prefix) and positive."""

    def __init__(self, rows: dict[tuple[int, str], int], query: RaggedIds, positive: RaggedIds,
                 settings: dict[str, Any], fingerprint: str, cache_file: Path) -> None:
        self.rows, self.query, self.positive = rows, query, positive
        self.settings, self.fingerprint, self.cache_file = settings, fingerprint, cache_file

    def query_ids(self, group: int, lang: str) -> list[int]:
        return self.query[self.rows[group, lang]]

    def positive_ids(self, group: int, lang: str) -> list[int]:
        return self.positive[self.rows[group, lang]]

    def check_compatible(self, groups: TrainingGroups, settings: dict[str, Any]) -> None:
        """Refuse ids built for other pairs or other prefixes / lengths than the collator's."""
        n_pairs = sum(len(p) for p in groups.pairs)
        if settings != self.settings or n_pairs != len(self.rows):
            raise BatchmixError(
                f"pretokenized ids were built for {len(self.rows)} pairs with {self.settings}, but the collator has "
                f"{n_pairs} pairs with {settings}; build them with pretokenize() from the same groups and model settings"
            )


def _unpadded(enc: dict[str, torch.Tensor]) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]


def _tokenize_rows(rows: dict[str, list[str]], tokenizer: PreTrainedTokenizerBase, settings: dict[str, Any]) -> dict[str, list[list[int]]]:
    # Through `tokenize` itself (then unpadded), so truncation and special tokens cannot drift from it.
    s = settings
    return {
        "query_input_ids": _unpadded(tokenize(tokenizer, rows["query"], s["query_prefix"], s["query_max_length"])),
        "positive_input_ids": _unpadded(tokenize(tokenizer, rows["positive"], s["passage_prefix"], s["passage_max_length"])),
    }


def pretokenize(
    groups: TrainingGroups,
    tokenizer: PreTrainedTokenizerBase,
    *,
    query_prefix: str = "",
    passage_prefix: str = "",
    query_max_length: int = 64,
    passage_max_length: int = 128,
    cache_dir: str | Path | None = None,
) -> PretokenizedPairs:
    """Token ids of every pair in `groups`, from `<cache root>/pretokenized/` or built and cached there.

    `cache_dir` overrides the cache root ($BATCHMIX_CACHE, else ~/.cache/batchmix). `datasets`'
    global `disable_caching()` makes it rebuild (and rewrite) the file every time.
    """
    # Imported here: `datasets` adds ~0.5 s to every start-up, and only this path needs it.
    from datasets import Dataset, Features, List, Value
    from datasets.fingerprint import Hasher

    settings = text_settings(query_prefix, passage_prefix, query_max_length, passage_max_length)
    keys = [(g, lang) for g, pairs in enumerate(groups.pairs) for lang in sorted(pairs)]
    texts = {
        "query": [groups.pairs[g][lang].query for g, lang in keys],
        "positive": [groups.pairs[g][lang].positive for g, lang in keys],
    }
    versions = [importlib.metadata.version(p) for p in ("tokenizers", "transformers")]
    fingerprint = Hasher.hash([FORMAT_VERSION, versions, tokenizer_fingerprint(tokenizer), settings, texts])
    cache_file = cache_root(cache_dir) / "pretokenized" / f"pairs-{fingerprint}.arrow"
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        ids = Dataset.from_dict(texts).map(
            _tokenize_rows,
            batched=True,
            batch_size=1000,
            fn_kwargs={"tokenizer": tokenizer, "settings": settings},
            remove_columns=["query", "positive"],
            features=Features({name: List(Value("int32")) for name in ("query_input_ids", "positive_input_ids")}),
            cache_file_name=str(cache_file),
            new_fingerprint=fingerprint,
            desc="pretokenising training pairs",
        )
    except OSError as error:
        raise BatchmixError(f"cannot write pretokenized ids under {cache_file.parent} ({error.strerror or error}); "
                            f"set BATCHMIX_CACHE to a writable directory, or data.pretokenize=false") from None
    if len(ids) != len(keys):  # pragma: no cover - the fingerprint covers every text
        raise BatchmixError(f"the pretokenized cache file {cache_file} has {len(ids)} rows, expected {len(keys)}; delete it")
    table = ids.data.table
    return PretokenizedPairs(
        rows={key: i for i, key in enumerate(keys)},
        query=RaggedIds(table.column("query_input_ids")),
        positive=RaggedIds(table.column("positive_input_ids")),
        settings=settings,
        fingerprint=fingerprint,
        cache_file=cache_file,
    )
