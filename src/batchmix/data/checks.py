"""The `data` options checked before anything is read: batch size, the sampler mode, the split
shares, the data root and language files, the JSONL path, the loader switches. The pre-flight runs
these before the heavy imports, so a typo in a path or a language costs a second; the loaders
repeat the same checks (same functions). Kept apart from data/datamodule.py because that module
imports Lightning and transformers (seconds) and this one must not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from batchmix.data.lareqa import lareqa_files
from batchmix.data.hf import check_hf_options
from batchmix.data.load import check_hf_source, check_source
from batchmix.data.negatives import check_negatives_options
from batchmix.data.split import check_fractions
from batchmix.config.schema import DataConfig
from batchmix.core.errors import BatchmixError
from batchmix.core.options import positive_int, select
from batchmix.mixing.sampler import MONO_MODES


def check_batches(data: DataConfig) -> None:
    """`data.batch_size` and `data.batches_per_epoch` (null: one pass over the training ids)."""
    positive_int("data.batch_size", data.batch_size)
    if data.batches_per_epoch is not None:
        positive_int("data.batches_per_epoch", data.batches_per_epoch)


def check_num_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise BatchmixError(f"data.num_workers={workers!r} must be a non-negative integer "
                            f"(0: collate batches in the training process; N: in N worker processes)")


def check_loader(data: DataConfig) -> int:
    """How batches are made: `data.num_workers` and the hard negatives; returns how many join each
    query (the pre-flight checks that the loss can use them)."""
    check_num_workers(data.num_workers)
    return check_negatives_options(data.hard_negatives, data.negatives_lang)[0]


def check_data(data: DataConfig, eval_split: str) -> None:
    """The data settings that need no file read (see the module docstring); `eval_split`: the reported split."""
    mono_mode = data.sampler.mono_mode
    if mono_mode not in MONO_MODES:
        raise BatchmixError(f"data.sampler.mono_mode={mono_mode!r} is not one of {list(MONO_MODES)}: use data.sampler.mono_mode=batch or pair")
    split = select(data, "split")
    fractions = check_fractions(OmegaConf.to_container(split, resolve=True) if isinstance(split, DictConfig) else split)
    shares = ", ".join(f"{k}={v:g}" for k, v in fractions.items())
    train_file, from_hf = data.train_file, data.source == "hf"
    if from_hf:
        check_hf_source({"train_file": train_file})
    if fractions.get(str(eval_split), 0.0) <= 0:
        raise BatchmixError(f"eval.split={eval_split!r} would be empty: data.split has {shares}; give it a share "
                            f"(e.g. data.split.{eval_split}=0.1) or evaluate on a split that has one (eval.split=val)")
    if not train_file and not from_hf and fractions.get("train", 0.0) <= 0:
        raise BatchmixError(f"the training split would be empty: data.split has {shares}; set data.split.train=0.8 or give data.train_file=<pairs.jsonl>")
    if train_file and not Path(str(train_file)).expanduser().is_file():
        raise BatchmixError(f"data.train_file={str(train_file)!r} is not a file; give the path of a JSONL file of {{id, lang, query, positive}} rows")
    check_data_files(data)


def check_data_files(data: DataConfig) -> None:
    """`data.source`, `data.root` and one `<lang>.json` per language of `data.languages`, and with
    `data.source=hf` the `data.hf` options; reads no file."""
    source = check_source(data.source)
    if source == "hf":  # training pairs from data.hf; evaluation still reads the local LAReQA files
        check_hf_source({"train_file": data.train_file})
        check_hf_options(data.hf)
    if source in ("local", "hf"):
        lareqa_files(data.root, data.languages, data.name)
