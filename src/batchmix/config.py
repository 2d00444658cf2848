"""Config plumbing: the `bm_complement` resolver and the checks that run before any heavy work.

Everything here is cheap: it runs before data or models load, so a typo costs a second.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from batchmix.errors import BatchmixError
from batchmix.eval.sets import eval_sets
from batchmix.losses import LOSSES
from batchmix.models.grad_cache import check_cache_chunk
from batchmix.models.pooling import check_pooling
from batchmix.ratio import Ratio, complement

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CANDIDATE_MODES = ("sentence", "context")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("bm_complement"):
        OmegaConf.register_new_resolver("bm_complement", complement)
    from batchmix.sweep import register_resolvers as register_sweep_resolvers

    register_sweep_resolvers()


register_resolvers()


def _get(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise BatchmixError(f"config value {key} cannot be resolved: {str(err).splitlines()[0]}") from None


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BatchmixError(f"{key}={value!r} must be a positive integer")
    return value


def validate(cfg: DictConfig) -> Ratio:
    """Fail fast on impossible settings. Returns the validated ratio."""
    ratio_cfg = _get(cfg, "ratio")
    if not isinstance(ratio_cfg, DictConfig):
        raise BatchmixError(f"ratio={ratio_cfg!r} must be a mapping such as ratio.mono=0.5 ratio.multi=0.0")
    ratio = Ratio.from_mapping(OmegaConf.to_container(ratio_cfg, resolve=True))
    _positive_int(cfg, "data.batch_size")
    if _get(cfg, "data.batches_per_epoch") is not None:
        _positive_int(cfg, "data.batches_per_epoch")
    loss = _get(cfg, "loss.name")
    if loss not in LOSSES:
        raise BatchmixError(f"unknown loss {loss!r}; valid names: {', '.join(sorted(LOSSES))} (set e.g. loss=infonce)")
    temperature = _get(cfg, "loss.temperature")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
        raise BatchmixError(f"loss.temperature={temperature!r} must be a number > 0 (e.g. 0.05)")
    check_cache_chunk(OmegaConf.select(cfg, "loss.cache_chunk", default=None), distill=loss == "distill_mse")
    check_world_size(cfg)
    check_switches(cfg)
    check_pooling(_get(cfg, "model.pooling"))
    check_candidates(_get(cfg, "eval.candidates"))
    eval_sets(cfg, warn=False)  # eval.sets: keys, splits, no training questions, data roots
    check_objective(_get(cfg, "objective"))
    lr = _get(cfg, "optim.lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise BatchmixError(f"optim.lr={lr!r} must be a number > 0 (e.g. 3e-5)")
    return ratio


_SWITCHES = ("loss.gather", "model.gradient_checkpointing", "model.compile", "data.pretokenize", "resume")


def check_switches(cfg: DictConfig) -> None:
    """The scale switches: a typo such as `model.compile=ture` would otherwise count as true."""
    for key in _SWITCHES:
        value = OmegaConf.select(cfg, key, default=False)
        if not isinstance(value, bool):
            raise BatchmixError(f"{key}={value!r} must be true or false")
    check_num_workers(OmegaConf.select(cfg, "data.num_workers", default=0))
    check_every_n_steps(OmegaConf.select(cfg, "checkpoint.every_n_steps", default=50))
    backend = OmegaConf.select(cfg, "model.compile_backend", default="inductor")
    if OmegaConf.select(cfg, "model.compile", default=False):
        import torch._dynamo  # only when compiling: the import costs ~1 s

        if backend not in torch._dynamo.list_backends(exclude_tags=()):
            raise BatchmixError(
                f"model.compile_backend={backend!r} is not a torch.compile backend; "
                f"use one of {torch._dynamo.list_backends()} (e.g. model.compile_backend=inductor)"
            )


def check_every_n_steps(value: Any) -> int:
    """`checkpoint.every_n_steps`: how often `checkpoints/last.ckpt` is saved during training."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BatchmixError(
            f"checkpoint.every_n_steps={value!r} must be a non-negative integer (0: only at the end of training and on SIGTERM)"
        )
    return value


def check_num_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise BatchmixError(
            f"data.num_workers={workers!r} must be a non-negative integer "
            f"(0: collate batches in the training process; N: in N worker processes)"
        )


def check_world_size(cfg: DictConfig) -> None:
    """Under DDP data.batch_size is the global batch: it must split evenly over the processes."""
    devices, nodes = OmegaConf.select(cfg, "trainer.devices", default=1), OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if not (isinstance(devices, int) and isinstance(nodes, int)) or devices < 1 or nodes < 1:
        return  # "auto", -1, a device list: Lightning resolves them; the sampler checks again at setup
    world, batch = devices * nodes, _get(cfg, "data.batch_size")
    if batch % world:
        raise BatchmixError(
            f"data.batch_size={batch} (the global batch) is not divisible by the {world} processes "
            f"(trainer.devices={devices} x trainer.num_nodes={nodes}); use a multiple of {world}"
        )


def check_candidates(mode: Any) -> None:
    if mode not in CANDIDATE_MODES:
        raise BatchmixError(f"eval.candidates={mode!r} is not one of {list(CANDIDATE_MODES)}: use eval.candidates=sentence (LAReQA) or context")


def check_data(cfg: DictConfig) -> None:
    """The data settings that need no file read: the sampler mode, the split shares, the data root
    and language files, the JSONL path. The CLI runs this before the heavy imports, so a typo in a
    path or a language costs a second; the loaders repeat the same checks (same functions)."""
    from batchmix.data.split import check_fractions
    from batchmix.sampling.hybrid_batch_sampler import MONO_MODES

    mono_mode = OmegaConf.select(cfg, "data.sampler.mono_mode", default="batch")
    if mono_mode not in MONO_MODES:
        raise BatchmixError(f"data.sampler.mono_mode={mono_mode!r} is not one of {list(MONO_MODES)}: use data.sampler.mono_mode=batch or pair")
    split = _get(cfg, "data.split")
    fractions = check_fractions(OmegaConf.to_container(split, resolve=True) if isinstance(split, DictConfig) else split)
    shares = ", ".join(f"{k}={v:g}" for k, v in fractions.items())
    eval_split, train_file = OmegaConf.select(cfg, "eval.split", default="test"), _get(cfg, "data.train_file")
    if fractions.get(str(eval_split), 0.0) <= 0:
        raise BatchmixError(
            f"eval.split={eval_split!r} would be empty: data.split has {shares}; give it a share "
            f"(e.g. data.split.{eval_split}=0.1) or evaluate on a split that has one (eval.split=val)"
        )
    if not train_file and fractions.get("train", 0.0) <= 0:
        raise BatchmixError(f"the training split would be empty: data.split has {shares}; set data.split.train=0.8 or give data.train_file=<pairs.jsonl>")
    if train_file and not Path(str(train_file)).expanduser().is_file():
        raise BatchmixError(f"data.train_file={str(train_file)!r} is not a file; give the path of a JSONL file of {{id, lang, query, positive}} rows")
    check_data_files(cfg)


def check_data_files(cfg: DictConfig) -> None:
    """`data.source`, `data.root` and one `<lang>.json` per language of `data.languages`; reads no file."""
    from batchmix.data.lareqa import lareqa_files
    from batchmix.data.load import SOURCES

    source = OmegaConf.select(cfg, "data.source", default="local")
    if source not in SOURCES:
        raise BatchmixError(f"data.source={source!r} is not one of {list(SOURCES)}: use data.source=local (files) or data.source=hub")
    if source == "local":
        lareqa_files(_get(cfg, "data.root"), _get(cfg, "data.languages"), _get(cfg, "data.name"))


_OBJECTIVE = re.compile(
    r"^(map|map@20|mrr|recall@(1|5|10|100)|ndcg@10)/(multi|mono|cross)(/[a-z]{2,3}(-[a-z]{2,3})?)?$"
    r"|^bias/(rank_distance|own_lang_first)(/[a-z]{2,3})?$|^train/.+$"
)


def check_objective(objective: Any) -> None:
    """A misspelt objective would otherwise only fail after training, when metrics.json is read."""
    from batchmix.sweep.objectives import objective_names

    for name in objective_names(objective):
        if not _OBJECTIVE.match(name):
            raise BatchmixError(
                f"objective {name!r} is not a batchmix metric: use e.g. map/multi, map/cross/de-en, "
                f"ndcg@10/mono, bias/rank_distance (or a list of them)"
            )


def check_writable(path: Path, key: str = "hydra.run.dir") -> Path:
    """The run dir must be writable before hours of training, not after (`key`: the setting to fix)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe file of its own: DDP ranks check the same dir at once, and a shared probe name
        # let one rank delete the file another was about to delete (seen as a rank dying at start).
        with tempfile.TemporaryFile(dir=path, prefix=".batchmix_write_test."):
            pass
    except OSError as err:
        raise BatchmixError(f"output dir {path} is not writable ({err.strerror}); set {key}=<a writable folder>") from None
    return path


def offline_defaults() -> None:
    """No network here is the normal case: never let an unreachable hub stall a run for minutes."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
