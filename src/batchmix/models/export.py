"""A run's `model/` folder: what training changed, or (export_full=true) a standalone HF model.

Why a delta: a me5-small run that freezes its word embeddings, or trains its top K layers
(`model.train_top_layers`), changes a fraction of the weights, and a sweep point that copies the
rest (449 MB) costs a 45-run study 20 GB of identical bytes. The delta export holds

    model/batchmix.json       how to pool and prefix, the base model (`base`), and the content hash
                              of every frozen weight it left out (`frozen`)
    model/trained.safetensors the encoder weights that trained

and loading rebuilds the base model, checks every frozen hash (one line if the base weights are not
the ones it was trained from), and loads the trained weights over it. A model without frozen weights,
or `export_full=true`, is exported whole (`save_pretrained` + the tokenizer), loadable by any HF tool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from batchmix.core.errors import BatchmixError
from batchmix.core.io import write_json
from batchmix.models.frozen_weights import content_hash, frozen_parameters
from batchmix.core.run_dir import MODEL_INFO, read_json

TRAINED_WEIGHTS = "trained.safetensors"
BASE, FROZEN_HASHES = "base", "frozen"  # the batchmix.json entries of a delta export
PRECISION = "precision"  # the batchmix.json entry with the run's trainer.precision (exports since issue #26)
# The batchmix.json entries that say how the model encodes (both export kinds); a delta adds train_top_layers.
ENCODING_FIELDS = ("pooling", "normalize", "query_prefix", "passage_prefix", "shared", "train_top_layers")


def export_model(module: Any, out: Path, base: str, full: bool = False, precision: str | None = None) -> None:
    """Write `module` (a DualEncoder) to `out`: a delta over `base` when it has frozen weights and `full` is false.

    `precision`: the trainer's, recorded so that eval.py scores a model/ folder copied away from its run
    under the precision the run validated in."""
    encoder = module.query_encoder
    info = {"pooling": module.pooling, "normalize": module.normalize, "query_prefix": module.query_prefix,
            "passage_prefix": module.passage_prefix, "shared": module.passage_encoder is module.query_encoder,
            **({PRECISION: precision} if precision else {})}
    frozen = {k for k in frozen_parameters(encoder) if not k.startswith("pooler.")}  # an unused pooler is frozen, not "trained"
    if full or not frozen or not info["shared"]:
        encoder.save_pretrained(out)
        module.tokenizer.save_pretrained(out)
        if not info["shared"]:
            module.passage_encoder.save_pretrained(out / "passage_encoder")
        write_json(out / MODEL_INFO, info)
        return
    state = encoder.state_dict()
    trained = {k: state[k].detach().cpu().contiguous() for k, p in encoder.named_parameters() if p.requires_grad}
    save_file(trained, str(out / TRAINED_WEIGHTS))
    hashes = {k: content_hash(v) for k, v in state.items() if k not in trained}  # frozen weights and buffers
    write_json(out / MODEL_INFO, {**info, "train_top_layers": module.train_top_layers, BASE: base, FROZEN_HASHES: hashes})


def trained_precision(path: Path) -> str | None:
    """The trainer precision a `model/` export records; None for a file, another folder, or an older export."""
    try:
        return read_json(path / MODEL_INFO).get(PRECISION)  # {} when there is no such file
    except BatchmixError:  # a torn batchmix.json: load_trained reports it; here it only means "not recorded"
        return None


def load_delta(module: Any, export: Path, info: dict[str, Any]) -> None:
    """Load a delta export into `module`, built from `info[BASE]`, after checking the frozen weights' hashes."""
    encoder = module.query_encoder
    state = encoder.state_dict()
    for key, expected in info[FROZEN_HASHES].items():
        if key not in state or content_hash(state[key]) != expected:
            raise BatchmixError(f"{export} was trained from other base weights than {info[BASE]!r} gives now ({key} differs); "
                                f"load it with the base model (and revision) it was trained from")
    path = export / TRAINED_WEIGHTS
    try:
        trained = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - a torn or missing file: one line
        raise BatchmixError(f"{path} cannot be read ({str(err).splitlines()[0]}): re-export the run or evaluate its checkpoint") from None
    unknown = sorted(set(trained) - set(state))
    if unknown or set(trained) | set(info[FROZEN_HASHES]) != set(state):
        raise BatchmixError(f"{path} does not match the base model {info[BASE]!r} (unknown keys {unknown[:3]})")
    with torch.no_grad():
        for key, value in trained.items():
            state[key].copy_(value)
