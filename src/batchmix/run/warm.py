"""`batchmix warm [train.py overrides]`: fill the frozen-trunk cache of a sweep before it starts.

With `model.train_top_layers=K` every run reads the trunk states of its texts from
`$BATCHMIX_CACHE/trunk` (models/trunk_cache.py), but the first runs compute them: parallel sweep
workers would each compute the same texts, with one thread each. This computes, once, with every
core, what the runs of the same overrides will read: every training query, positive (and hard
negative) in every language, and every question and candidate of the val and reported splits and
of `eval.sets`. Give it the overrides of the sweep (the sweep's own `-m` lists may be left out:
the ratio and seed change which texts a run reads, not their states):

    batchmix warm experiment=paper_cpu model.train_top_layers=2 trainer.precision=bf16-mixed
    python train.py -m experiment=paper_cpu model.train_top_layers=2 trainer.precision=bf16-mixed hydra/launcher=local_parallel
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError, exit_on_error

log = logging.getLogger("batchmix.run.warm")


def warm(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Encode every text the runs of `cfg` read through the trunk cache; returns the cache report."""
    from batchmix.run.preflight import validate

    sets = validate(cfg, warn=True).sets
    if cfg.model.train_top_layers is None or cfg.model.trunk_cache != "disk":
        raise BatchmixError("batchmix.run.warm fills the disk cache of model.train_top_layers: give model.train_top_layers=K "
                            "(and model.trunk_cache=disk)")
    import torch

    from batchmix.data.load import load_splits
    from batchmix.eval.scoring import candidate_texts
    from batchmix.eval.sets import load_eval_set
    from batchmix.eval.validation import VAL
    from batchmix.models.factory import build_dual_encoder
    from batchmix.core.run_dir import TRUNK_CACHE

    groups, splits = load_splits(cfg.data)
    corpora = [splits[name] for name in dict.fromkeys([VAL, cfg.eval.split]) if name in splits]
    corpora += [load_eval_set(spec) for spec in sets]
    queries = {p.query for group in groups.pairs for p in group.values()}
    passages = {t for group in groups.pairs for p in group.values() for t in (p.positive, *(n.text for n in p.negatives))}
    for corpus in corpora:
        for ls in corpus.languages.values():
            queries.update(ls.questions)
            passages.update(candidate_texts(ls, cfg.eval.candidates))
    device = "cuda" if str(cfg.trainer.accelerator) in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)  # as train.py builds it: a random-init model (model.architecture) is then the same
    module = build_dual_encoder(cfg.model).to(device)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    start = time.perf_counter()
    log.info("warming the trunk cache: %d queries, %d passages (%s, %s)", len(queries), len(passages), device, "bf16" if bf16 else "fp32")
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        module.fill_trunk_cache(sorted(queries), "query", cfg.eval.batch_size, desc="warm queries")
        module.fill_trunk_cache(sorted(passages), "passage", cfg.eval.batch_size, desc="warm passages")
    report = module.trunk_store.write_report(Path(run_dir) / TRUNK_CACHE)
    log.info("warm: %.0f s in all", time.perf_counter() - start)
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _main(cfg: DictConfig) -> None:
    with exit_on_error():
        from batchmix.core.console import quiet_console

        quiet_console()
        warm(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    _main()
