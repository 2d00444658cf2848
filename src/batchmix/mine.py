"""`python -m batchmix.mine [overrides]`: mine hard negatives for the training pairs of `data` with
`model` and write them as a training JSONL (conf/mine.yaml; the method in batchmix/mining.py)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from batchmix.config import CONF_DIR
from batchmix.errors import BatchmixError

log = logging.getLogger("batchmix.mine")


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Mine and write; returns the statistics (also written as mine_stats.json beside the JSONL)."""
    from batchmix.data.checks import check_data_files
    from batchmix.mining import MiningOptions
    from batchmix.options import positive_int
    from batchmix.preflight import check_device

    options = MiningOptions(**{k: v for k, v in OmegaConf.to_container(cfg.mine, resolve=True).items() if k not in ("out", "batch_size")})
    check_data_files(cfg)
    batch_size = positive_int("mine.batch_size", cfg.mine.batch_size)
    device = cfg.get("device", "auto")
    check_device(device, "32-true")  # eval.py's check: one of auto|cpu|cuda, and cuda only with a GPU
    out = Path(str(cfg.mine.out)) if cfg.mine.out else Path(run_dir) / "train_negatives.jsonl"

    import torch

    from batchmix.data.jsonl import write_training_jsonl
    from batchmix.data.load import load_splits
    from batchmix.mining import build_pool, mine
    from batchmix.models.factory import build_dual_encoder

    groups, splits = load_splits(cfg.data)
    # A LAReQA train split: every sentence of the training articles is a candidate; own pairs: their positives.
    pool = build_pool(groups, None if cfg.data.get("train_file") or cfg.data.get("source") == "hf" else splits.get("train"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    module = build_dual_encoder(cfg.model).to(device)
    log.info("mining %d pairs against a pool of %d passages (%s pools) with %s on %s",
             sum(len(p) for p in groups.pairs), len(pool), options.pool, cfg.model.name_or_path, device)
    mined, stats = mine(
        groups, pool,
        lambda texts: module.encode_texts(texts, "query", batch_size, desc="encode queries"),
        lambda texts: module.encode_texts(texts, "passage", batch_size, desc="encode pool"),
        options,
    )
    write_training_jsonl(mined, out)
    stats = {**stats, "out": str(out), "model": str(cfg.model.name_or_path), "device": device, "options": OmegaConf.to_container(cfg.mine, resolve=True)}
    (out.parent / "mine_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    log.info(
        "%d negatives for %d pairs (%d with fewer than %d) -> %s; %d texts encoded at %.0f texts/s (search %.1f s)",
        stats["negatives"], stats["pairs"], stats["pairs_short"], options.num_negatives, out,
        stats["texts_encoded"], stats["texts_encoded"] / max(stats["encode_seconds"], 1e-9), stats["search_seconds"],
    )
    return stats


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="mine")
def _main(cfg: DictConfig) -> None:
    try:
        from batchmix.preflight import offline_defaults

        offline_defaults()
        run(cfg, HydraConfig.get().runtime.output_dir)
    except BatchmixError as err:
        print(f"batchmix: error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
