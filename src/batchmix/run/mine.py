"""`batchmix mine [overrides]`: mine hard negatives for the training pairs of `data` with
`model` and write them as a training JSONL (conf/mine.yaml; the method in batchmix/data/mining.py)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError, exit_on_error

log = logging.getLogger("batchmix.run.mine")


STATS = "mine_stats.json"  # written beside the JSONL


def check_out(out: Any, run_dir: str | Path, train_file: Any) -> Path:
    """`mine.out`: where the JSONL goes (null: <run dir>/train_negatives.jsonl). Refused before any work
    if it cannot be written there, or would overwrite the input or the statistics; creates nothing."""
    if out is None or out == "":
        path = Path(run_dir) / "train_negatives.jsonl"
    elif isinstance(out, bool) or not isinstance(out, (str, int, float, os.PathLike)):
        raise BatchmixError(f"mine.out={out!r} must be the path of the JSONL to write (or null: <run dir>/train_negatives.jsonl)")
    else:
        path = Path(str(out)).expanduser()
    if path.is_dir() or path.name in ("", ".", ".."):
        raise BatchmixError(f"mine.out={str(out)!r} is a folder; name the file to write, e.g. mine.out={path / 'train_negatives.jsonl'}")
    if path.name == STATS or (path.parent / STATS).is_dir():
        clash = "is the JSONL itself" if path.name == STATS else "is a folder"
        raise BatchmixError(f"mine.out={str(out)!r}: the statistics go to {path.parent / STATS}, which {clash}; "
                            f"write the JSONL elsewhere (mine.out=<folder>/train_negatives.jsonl)")
    if train_file and path.resolve() == Path(str(train_file)).expanduser().resolve():
        raise BatchmixError(f"mine.out={str(out)!r} is data.train_file: mining would overwrite its own input; write elsewhere, "
                            f"e.g. mine.out={path.with_name(path.stem + '_negatives.jsonl')}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the folders write_training_jsonl would create
        parent = parent.parent
    if not parent.is_dir():
        raise BatchmixError(f"mine.out={str(out)!r} cannot be created: {parent} is a file, not a folder; choose another mine.out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BatchmixError(f"mine.out={str(out)!r} cannot be written: {parent} is not writable; choose another mine.out")
    return path


def check_mine(cfg: DictConfig, run_dir: str | Path) -> tuple[Any, int, str, Path]:
    """The pre-flight: every `mine.*` option, `device` and the data options that need no file read,
    before any data or model loads; writes nothing. Returns (MiningOptions, batch size, device, out)."""
    from batchmix.data.checks import check_data_files
    from batchmix.data.mining import MiningOptions
    from batchmix.core.options import positive_int
    from batchmix.run.preflight import check_device

    mine = OmegaConf.to_container(cfg.mine, resolve=True)
    names = [f.name for f in fields(MiningOptions)] + ["out", "batch_size"]
    unknown = sorted(str(k) for k in set(mine) - set(names))
    if unknown:  # a `+mine.<key>=` the schema let in; MiningOptions(**mine) would raise a TypeError
        raise BatchmixError(f"mine has unknown option(s) {unknown}; the options are {names}")
    options = MiningOptions(**{k: v for k, v in mine.items() if k not in ("out", "batch_size")})
    check_data_files(cfg.data)
    batch_size = positive_int("mine.batch_size", mine["batch_size"])
    device = cfg.device
    check_device(device, "32-true")  # eval.py's check: one of auto|cpu|cuda, and cuda only with a GPU
    out = check_out(mine["out"], run_dir, cfg.data.train_file)
    return options, batch_size, device, out


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Mine and write; returns the statistics (also written as mine_stats.json beside the JSONL)."""
    options, batch_size, device, out = check_mine(cfg, run_dir)

    import torch

    from batchmix.data.jsonl import write_training_jsonl
    from batchmix.data.load import load_splits
    from batchmix.data.mining import build_pool, mine
    from batchmix.models.factory import build_dual_encoder

    groups, splits = load_splits(cfg.data)
    # A LAReQA train split: every sentence of the training articles is a candidate; own pairs: their positives.
    pool = build_pool(groups, None if cfg.data.train_file or cfg.data.source == "hf" else splits.get("train"))
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
    (out.parent / STATS).write_text(json.dumps(stats, indent=2) + "\n")
    log.info(
        "%d negatives for %d pairs (%d with fewer than %d) -> %s; %d texts encoded at %.0f texts/s (search %.1f s)",
        stats["negatives"], stats["pairs"], stats["pairs_short"], options.num_negatives, out,
        stats["texts_encoded"], stats["texts_encoded"] / max(stats["encode_seconds"], 1e-9), stats["search_seconds"],
    )
    return stats


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="mine")
def _main(cfg: DictConfig) -> None:
    with exit_on_error():
        from batchmix.run.preflight import offline_defaults

        offline_defaults()
        run(cfg, HydraConfig.get().runtime.output_dir)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
