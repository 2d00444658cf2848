"""How many false negatives each batch type puts in front of the loss: masked (query, candidate)
entries per batch under `loss.mask=ids` and `answers`, with and without
`data.sampler.avoid_shared_answers`, at batch 16 and 128 on the XQuAD-R training articles.

No model: batches are drawn by the training sampler, collated by the training collator (the
embedded me5-small tokenizer) and masked by the loss's own code (`false_negatives.mask_keys` and
`shared_key_mask`), so the numbers are what a training run with those settings would log as
`train/<type>/masked`, over more batches than a run draws.

    .venv/bin/python experiments/false_negatives/rates.py <out.csv> [--batches 600 --large-batches 150]

Also writes shared.csv beside <out.csv>: per language, how many training ids share their answer
sentence with another id (and in any language: the ids `data.sampler.avoid_shared_answers` keeps apart).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.data.datamodule import PairCollator
from batchmix.data.load import load_splits
from batchmix.losses.false_negatives import mask_keys, shared_key_mask, stack_rows
from batchmix.models.loading import load_tokenizer
from batchmix.mixing.ratio import Ratio
from batchmix.mixing.sampler import HybridBatchSampler

TYPES = {"mono": Ratio(1, 0, 0), "cross": Ratio(0, 1, 0), "multi": Ratio(0, 0, 1)}
SETTINGS = [("ids", False), ("answers", False), ("answers", True)]  # (loss.mask, avoid_shared_answers)
FIELDS = ["batch_size", "batch_type", "mask", "avoid_shared_answers", "batches", "masked_per_batch", "batches_hit",
          "masked_per_query", "queries_hit"]


def training_data():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train")
    groups, _ = load_splits(cfg.data)
    return cfg, groups


def shared(groups) -> list[dict]:
    """Per language (and `any`): training ids whose answer sentence is another id's too."""
    rows = [{"lang": lang, "ids": len(groups), "sharing": sum(len(groups.positive_answers(g, lang)) > 1 for g in range(len(groups))),
             "distinct_answers": len({groups.pairs[g][lang].positive for g in range(len(groups))})} for lang in groups.languages]
    rows.append({"lang": "any", "ids": len(groups), "sharing": sum(1 for other in groups.shared_answers if other), "distinct_answers": ""})
    return rows


def rates(batch_sizes: dict[int, int]) -> list[dict]:
    cfg, groups = training_data()
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    collate = PairCollator(groups, tokenizer, query_prefix=cfg.model.query_prefix, passage_prefix=cfg.model.passage_prefix,
                           query_max_length=cfg.model.query_max_length, passage_max_length=cfg.model.passage_max_length)
    out = []
    for size, n in batch_sizes.items():
        for btype, ratio in TYPES.items():
            for avoid in (False, True):
                sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], size, ratio, batches_per_epoch=n,
                                             seed=0, exclusive=groups.shared_answers if avoid else None)
                counts = {mode: [] for mode, a in SETTINGS if a == avoid}
                hit_queries = {mode: 0 for mode in counts}
                for refs in sampler.plan_epoch(0):
                    batch = collate(refs)
                    for mode in counts:
                        query, candidates = mask_keys(batch, mode)
                        masked = shared_key_mask(query, stack_rows(candidates))
                        counts[mode].append(int(masked.sum()))
                        hit_queries[mode] += int(masked.any(1).sum())
                for mode, c in counts.items():
                    out.append({"batch_size": size, "batch_type": btype, "mask": mode, "avoid_shared_answers": avoid, "batches": n,
                                "masked_per_batch": sum(c) / n, "batches_hit": sum(x > 0 for x in c) / n,
                                "masked_per_query": sum(c) / (n * size), "queries_hit": hit_queries[mode] / (n * size)})
                    print(f"batch {size} {btype:5s} mask={mode:7s} avoid={avoid!s:5s}: {out[-1]['masked_per_batch']:.2f} masked "
                          f"per batch, {out[-1]['batches_hit']:.1%} of batches hit", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--batches", type=int, default=600, help="batches per type and setting at batch 16")
    parser.add_argument("--large-batches", type=int, default=150, help="batches per type and setting at batch 128")
    args = parser.parse_args()
    t0 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_shared(args.out.with_name("shared.csv"))
    rows = rates({16: args.batches, 128: args.large_batches})
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    print(f"{args.out}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s")


def write_shared(path: Path) -> None:
    rows = shared(training_data()[1])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
