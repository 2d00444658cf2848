"""The typed shape of every config (Hydra structured configs): each YAML in conf/ names its schema in
its defaults list, so Hydra refuses a wrong type or an unknown key when it composes, before any
batchmix code runs. A default lives here only where no YAML gives the value. `legacy` in a field's
metadata: the value a run written before the key existed had (batchmix.config.legacy)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import Field, dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf, ValidationError

from batchmix.core.errors import BatchmixError


def legacy(default: Any, value: Any) -> Any:
    return field(default=default, metadata={"legacy": value})


def leaves(schema: type, prefix: str = "") -> Iterator[tuple[str, Any, Field]]:
    """Every leaf key of `schema` (dotted; nested schemas walked), with its type and its field."""
    hints = get_type_hints(schema)
    for f in fields(schema):
        if is_dataclass(hints[f.name]):
            yield from leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, hints[f.name], f


@dataclass
class ModelConfig:
    name_or_path: str = MISSING
    architecture: Optional[Dict[str, Any]] = None  # a dict of HF config fields builds a random-init model (tests)
    pooling: str = MISSING
    normalize: bool = True
    shared: bool = True  # one encoder for queries and passages
    query_prefix: str = MISSING
    passage_prefix: str = MISSING
    query_max_length: int = MISSING
    passage_max_length: int = MISSING
    freeze_embeddings: bool = MISSING
    # K: train only the top K layers; the frozen trunk's states are cached (models/trunk_cache.py)
    train_top_layers: Optional[int] = legacy(None, None)
    trunk_cache: str = legacy("disk", "disk")  # disk | memory | off
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    compile: bool = False  # torch.compile the encoder (opt-in)
    compile_backend: str = "inductor"


@dataclass
class HfConfig:
    path: Optional[str] = MISSING
    name: Optional[str] = MISSING
    split: str = MISSING
    data_files: Any = MISSING
    streaming: bool = MISSING
    layout: str = MISSING
    columns: Dict[str, Any] = MISSING
    languages: Any = MISSING  # null: every language; a list, or one code (data.languages=en)
    max_rows: Optional[int] = MISSING


@dataclass
class SamplerConfig:
    mono_mode: str = MISSING
    avoid_shared_answers: bool = legacy(MISSING, False)


@dataclass
class DataConfig:
    name: str = MISSING
    source: str = MISSING
    root: Optional[str] = MISSING
    languages: Any = MISSING  # null: every language; a list, or one code (data.hf.languages=en)
    train_file: Optional[str] = MISSING
    hf: HfConfig = field(default_factory=HfConfig)
    hard_negatives: int = MISSING
    negatives_lang: str = MISSING
    split: Dict[str, float] = MISSING  # shares by article: train, val, test
    split_seed: int = MISSING
    batch_size: int = MISSING
    batches_per_epoch: Optional[int] = MISSING
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    num_workers: int = MISSING
    pretokenize: bool = MISSING


@dataclass
class OptimConfig:
    lr: float = MISSING
    weight_decay: float = MISSING
    warmup_ratio: float = MISSING


@dataclass
class EvalSetConfig:
    """One entry of `eval.sets` (batchmix/eval/sets.py), read with these defaults where it leaves a key out;
    `eval.sets` itself stays an open mapping, so a composed (and saved) config holds what the user wrote."""
    dataset: Optional[str] = None  # null: the entry's key
    root: Optional[str] = None  # null: $BATCHMIX_DATA/<dataset> or ../shared/data/<dataset>
    languages: Any = None  # null: every <lang>.json at the root
    source: str = "local"  # local | hub
    split: str = "all"  # all | train | val | test (article split with data.split / data.split_seed)
    required: bool = True  # false: a missing corpus is skipped with a warning


@dataclass
class BaselinesConfig:
    """`eval.baselines`: training-free fixes for language bias scored beside the model (batchmix/eval/baselines)."""
    methods: List[str] = legacy(MISSING, [])  # shift | lir | centring; []: none (runs made before #28 had none)
    fit_ids: int = legacy(MISSING, 200)  # training question ids (seed 0) whose questions + answers fit them
    lir_rank: int = legacy(MISSING, 1)  # directions LIR removes per language
    shift_source: str = legacy(MISSING, "en")  # the language Shift moves every candidate towards


@dataclass
class EvalSettings:
    """What eval.py and train.py's evaluation share."""
    batch_size: int = MISSING
    candidates: str = MISSING
    trec: bool = MISSING
    trec_depth: Optional[int] = MISSING  # 0 or null: the full ranking
    sets: Dict[str, Any] = MISSING  # name -> {dataset, root, languages, split, required} (batchmix/eval/sets.py)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)


@dataclass
class TrainEvalConfig(EvalSettings):
    before: bool = MISSING
    split: str = MISSING
    val_every_n_steps: int = MISSING
    final_from: str = MISSING


@dataclass
class CheckpointConfig:
    every_n_steps: int = MISSING
    best: bool = MISSING
    keep: str = MISSING


@dataclass
class PruningConfig:
    """The `pruning` node of hparams_search=ratio_optuna; a config without one does not prune."""
    enabled: bool = False
    metric: Optional[str] = None  # null: the objective


def pruning_of(cfg: Any) -> PruningConfig:
    """`cfg.pruning` typed (its defaults where the config has none); a wrong type as one line."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(PruningConfig, cfg.pruning if "pruning" in cfg else {}))
    except ValidationError as err:
        raise BatchmixError(f"pruning.{err.key}={err.value!r}: {str(err).splitlines()[0]}") from None


@dataclass
class TrainConfig:
    """conf/train.yaml. Open at the top level only: a sweep adds its own nodes (`pruning`, `sweep`)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: Any = MISSING  # a `_target_` node (conf/loss/): each loss takes its own options
    ratio: Any = MISSING  # batch type -> share; a sweep may give the whole node as an interpolation
    trainer: Dict[str, Any] = MISSING  # lightning.Trainer's own options
    logger: Any = MISSING  # a `_target_` node (conf/logger/)
    seed: int = MISSING
    objective: Any = MISSING  # a metrics.json key, or a list of them (a multi-objective search)
    allow_test_selection: bool = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    save_model: bool = MISSING
    export_full: bool = legacy(MISSING, False)
    resume: bool = MISSING
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


@dataclass
class EvalConfig:
    """conf/eval.yaml."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: Optional[str] = MISSING
    split: str = MISSING
    device: str = MISSING
    precision: str = MISSING
    eval: EvalSettings = field(default_factory=EvalSettings)


@dataclass
class MineOptions:
    out: Optional[str] = MISSING
    num_negatives: int = MISSING
    range_min: int = MISSING
    range_max: int = MISSING
    margin: Optional[float] = MISSING
    relative_margin: Optional[float] = MISSING
    pool: str = MISSING
    search: str = MISSING
    batch_size: int = MISSING


@dataclass
class MineConfig:
    """conf/mine.yaml."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: str = MISSING
    mine: MineOptions = field(default_factory=MineOptions)


SCHEMAS = {"train_schema": TrainConfig, "eval_schema": EvalConfig, "mine_schema": MineConfig}
GROUP_SCHEMAS = {"model": ModelConfig, "data": DataConfig}


def schema_node(schema: type) -> Any:
    """`schema` as a config node; the train root stays open to the nodes a sweep adds (`pruning`, `sweep`),
    its typed nodes do not (`model.pooling_typo=1` is refused; `+key=...` adds a key on purpose)."""
    node = OmegaConf.structured(schema)
    if schema is TrainConfig:
        OmegaConf.set_struct(node, False)
    return node


def register() -> None:
    """Store the schemas under the names the YAML defaults lists use (`base_model` in group `model`, ...)."""
    cs = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        cs.store(name=name, node=schema_node(schema))
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema_node(schema))
