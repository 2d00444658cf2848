"""A frozen trunk and its cache: train the top K layers, compute the layers below once per text.

Why: a ratio study is many runs of one model that differ only in how batches are mixed. With
`model.train_top_layers=K` the embeddings and the bottom L-K transformer layers do not train, and
they run without dropout, so the hidden states that enter layer L-K are a function of the token ids
alone. They are computed once per text and kept in memory and (`model.trunk_cache=disk`) on disk
under `$BATCHMIX_CACHE/trunk/<fingerprint>/`, where every run of a sweep or an Optuna study and
every evaluation (val, test, MLQA-R) reads them. A step then runs K layers instead of L.

The fingerprint hashes the model class, the config fields that change the computation, the first
trained layer, the autocast dtype and the bytes of every frozen trunk weight, so any change of
those starts its own cache. A text's key hashes its token ids, so its prefix and truncation are in
it. Shards are written atomically (a temporary file, then a rename) with a checksum; a shard that
does not load, or whose checksum or shapes are wrong, is reported, deleted and recomputed.

Hand-written because no maintained library caches intermediate encoder states across processes
(sentence-transformers caches nothing; Hugging Face's `Cache` is a decoder's key/value cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from batchmix.core.compat import attention_implementation
from batchmix.core.errors import BatchmixError
from batchmix.models.checks import TRUNK_CACHE_MODES
from batchmix.models.frozen_weights import content_hash

log = logging.getLogger("batchmix")

TRUNK_DIR = "trunk"           # under the cache root
SHARD_GLOB = "shard-*.safetensors"
CACHE_VERSION = 1             # bump when what a shard holds changes: older shards are not read
FLUSH_ROWS = 4096             # pending texts that trigger writing a shard
# The attention implementations whose layers take `additive_mask` (flex attention wants a block mask).
MASKED_ATTENTION = ("eager", "sdpa")
# Config fields that cannot change a frozen trunk's output (names, dropout: the trunk runs in eval mode).
_IGNORED_CONFIG = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype",
                   "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                   "id2label", "label2id", "_attn_implementation_autoset")


# --- the layers ------------------------------------------------------------------------------
def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer blocks (BERT / XLM-R / mE5 / LaBSE: `encoder.layer`)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(encoder, "embeddings"):
        raise BatchmixError(f"model.train_top_layers needs a BERT-style encoder (embeddings + encoder.layer); "
                            f"{type(encoder).__name__} is not one: set model.train_top_layers=null")
    check_attention(encoder)
    return layers


def check_attention(encoder: nn.Module) -> str:
    """The encoder's attention implementation, if `additive_mask` below builds the mask it wants."""
    impl = attention_implementation(encoder.config)
    if impl not in MASKED_ATTENTION:
        raise BatchmixError(f"model.train_top_layers supports attention implementations {'|'.join(MASKED_ATTENTION)}, "
                            f"not {impl!r} of {type(encoder).__name__}; load the model with attn_implementation='sdpa' "
                            f"or set model.train_top_layers=null")
    return impl


def check_train_top_layers(k: Any, num_layers: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_layers:
        raise BatchmixError(f"model.train_top_layers={k!r} must be an integer from 1 to the model's {num_layers} layers "
                            f"(null: train every layer)")
    return num_layers - k


def trunk_modules(encoder: nn.Module, start: int) -> list[nn.Module]:
    """What does not train: the embeddings and the layers below `start`."""
    return [encoder.embeddings, *transformer_layers(encoder)[:start]]


def freeze_trunk(encoder: nn.Module, train_top_layers: int) -> int:
    """Freeze all but the top `train_top_layers` layers; returns the first trained layer."""
    start = check_train_top_layers(train_top_layers, len(transformer_layers(encoder)))
    for module in trunk_modules(encoder, start):
        module.requires_grad_(False)
    return start


def additive_mask(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The additive mask [B, 1, 1, T] a bidirectional encoder layer takes: 0 on tokens, the dtype's
    minimum on padding, so a padded key gets no attention weight.

    Built here rather than by the model's mask helper, which is private and changed its signature
    between transformers releases. Both implementations in MASKED_ATTENTION add it to the scores
    (eager adds it; sdpa passes a float mask to torch's scaled_dot_product_attention, which adds it).
    """
    keep = attention_mask[:, None, None, :].to(hidden.dtype)
    return (1.0 - keep) * torch.finfo(hidden.dtype).min


def _run_layers(layers: nn.ModuleList, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = additive_mask(hidden, attention_mask)
    for layer in layers:
        hidden = layer(hidden, mask)
    return hidden


@torch.no_grad()
def trunk_states(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """The hidden states entering layer `start` [B, T, H], as the model's forward computes them."""
    return _run_layers(transformer_layers(encoder)[:start], encoder.embeddings(input_ids=input_ids), attention_mask)


def top_states(encoder: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """The last hidden states from the states entering layer `start`: the trained layers only."""
    return _run_layers(transformer_layers(encoder)[start:], hidden, attention_mask)


# --- the cache -------------------------------------------------------------------------------
def fingerprint(encoder: nn.Module, start: int, dtype: torch.dtype) -> str:
    """What the cached states depend on: class, computing config fields, first trained layer,
    autocast dtype, and the content of every frozen trunk weight and buffer."""
    h = hashlib.blake2b(digest_size=12)
    config = {k: v for k, v in encoder.config.to_dict().items() if k not in _IGNORED_CONFIG}
    h.update(json.dumps([CACHE_VERSION, type(encoder).__name__, config, start, str(dtype)], sort_keys=True, default=str).encode())
    for module in trunk_modules(encoder, start):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            h.update(name.encode())
            h.update(content_hash(tensor).encode())
    return h.hexdigest()


def text_key(ids: torch.Tensor) -> bytes:
    """A text's key: its token ids (unpadded), hashed."""
    return hashlib.blake2b(ids.to(torch.int64).cpu().numpy().tobytes(), digest_size=16).digest()


def _checksum(keys: torch.Tensor, offsets: torch.Tensor, states: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in (keys, offsets, states):
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TrunkCache:
    """The cached trunk states of one fingerprint: a dict key -> [T, H] float32, plus its shards."""

    def __init__(self, directory: Path | None) -> None:
        self.dir = directory
        self.entries: dict[bytes, torch.Tensor] = {}
        self.pending: dict[bytes, torch.Tensor] = {}
        self.read: set[str] = set()
        self.stats = {"computed": 0, "hits": 0, "compute_s": 0.0, "shards_read": 0, "shards_rebuilt": 0, "shards_written": 0}

    # disk -----------------------------------------------------------------------------------
    def scan(self) -> None:
        """Read the shards not read yet (others' too: parallel sweep workers share the folder)."""
        if self.dir is None or not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob(SHARD_GLOB)):
            if path.name in self.read:
                continue
            self.read.add(path.name)
            try:
                self._load(path)
                self.stats["shards_read"] += 1
            except Exception as err:  # noqa: BLE001 - any unreadable shard is rebuilt, never trusted
                log.warning("trunk cache: %s is corrupt (%s): deleted, its texts are recomputed", path, str(err).splitlines()[0][:120])
                self.stats["shards_rebuilt"] += 1
                path.unlink(missing_ok=True)

    def _load(self, path: Path) -> None:
        with safe_open(str(path), "pt") as f:  # one open: the metadata (checksum) and the three tensors
            meta = f.metadata() or {}
            keys, offsets, states = (f.get_tensor(name) for name in ("keys", "offsets", "states"))
        n = keys.shape[0]
        if (keys.shape != (n, 16) or offsets.shape != (n + 1,) or int(offsets[0]) != 0 or int(offsets[-1]) != states.shape[0]
                or states.ndim != 2 or bool((offsets[1:] < offsets[:-1]).any())):
            raise ValueError("inconsistent shapes")
        if meta.get("checksum") != _checksum(keys, offsets, states):
            raise ValueError("checksum mismatch")
        bounds = offsets.tolist()
        for i in range(n):
            self.entries.setdefault(keys[i].numpy().tobytes(), states[bounds[i] : bounds[i + 1]])

    def flush(self) -> None:
        """Write the pending states as one shard (atomically); memory-only caches just forget them."""
        if not self.pending or self.dir is None:
            self.pending.clear()
            return
        items = list(self.pending.items())
        keys = torch.tensor([list(k) for k, _ in items], dtype=torch.uint8)
        lengths = torch.tensor([0] + [len(v) for _, v in items], dtype=torch.int64)
        offsets = torch.cumsum(lengths, 0)
        states = torch.cat([v for _, v in items]).contiguous()
        checksum = _checksum(keys, offsets, states)
        name = f"shard-{checksum}.safetensors"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=self.dir)
            os.close(fd)
            save_file({"keys": keys, "offsets": offsets, "states": states}, tmp, metadata={"checksum": checksum, "version": str(CACHE_VERSION)})
            os.replace(tmp, self.dir / name)
        except OSError as err:
            raise BatchmixError(f"cannot write the trunk cache under {self.dir} ({err.strerror or err}); "
                                f"set BATCHMIX_CACHE to a writable directory, or model.trunk_cache=memory") from None
        self.read.add(name)
        self.stats["shards_written"] += 1
        self.pending.clear()

    def disk_bytes(self) -> int:
        if self.dir is None or not self.dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.dir.glob(SHARD_GLOB))

    # lookup ---------------------------------------------------------------------------------
    def states(self, encoder: nn.Module, start: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The trunk states of a padded batch [B, T, H] (float32, zeros at padding), computing and
        caching the texts not seen yet."""
        keys, lengths = self.fill(encoder, start, input_ids, attention_mask)
        first = self.entries[keys[0]]
        out = torch.zeros(len(keys), input_ids.shape[1], first.shape[-1], dtype=torch.float32)
        for i, k in enumerate(keys):
            out[i, : lengths[i]] = self.entries[k]
        return out.to(input_ids.device)

    def fill(self, encoder: nn.Module, start: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[bytes], list[int]]:
        """Compute and cache the texts of a padded batch not seen yet; returns each row's key and length."""
        lengths = attention_mask.sum(1).tolist()
        keys = [text_key(input_ids[i, :n]) for i, n in enumerate(lengths)]
        if any(k not in self.entries for k in keys):
            self.scan()
        first_row: dict[bytes, int] = {}  # one row per distinct text not cached yet
        for i, k in enumerate(keys):
            if k not in self.entries:
                first_row.setdefault(k, i)
        missing = list(first_row.values())
        if missing:
            t0 = time.perf_counter()
            rows = torch.tensor(missing, device=input_ids.device)
            width = max(lengths[i] for i in missing)
            computed = trunk_states(encoder, input_ids[rows, :width], attention_mask[rows, :width], start)
            for j, i in enumerate(missing):
                value = computed[j, : lengths[i]].float().cpu().clone()
                self.entries[keys[i]] = self.pending[keys[i]] = value
            self.stats["computed"] += len(missing)
            self.stats["compute_s"] += time.perf_counter() - t0
            if len(self.pending) >= FLUSH_ROWS:
                self.flush()
        self.stats["hits"] += len(keys) - len(missing)
        return keys, lengths


class TrunkStore:
    """The caches of one model: one per autocast dtype (bf16 trunk states are not fp32 ones)."""

    def __init__(self, mode: str, root: Path | None = None) -> None:
        if mode not in TRUNK_CACHE_MODES:
            raise BatchmixError(f"model.trunk_cache={mode!r} is not one of {'|'.join(TRUNK_CACHE_MODES)}")
        self.mode = mode
        self.root = root
        self.caches: dict[str, TrunkCache] = {}
        self._fingerprints: dict[tuple[int, str], str] = {}

    def _cache(self, encoder: nn.Module, start: int, device_type: str) -> TrunkCache:
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else next(encoder.parameters()).dtype
        tag = (start, str(dtype))
        if tag not in self._fingerprints:  # hashing the frozen weights takes ~0.5 s: once per model and dtype
            self._fingerprints[tag] = fingerprint(encoder, start, dtype)
        fp = self._fingerprints[tag]
        if fp not in self.caches:
            root = self.root
            if self.mode == "disk" and root is None:
                from batchmix.core.cache import cache_root

                root = cache_root()
            self.caches[fp] = TrunkCache(root / TRUNK_DIR / fp if self.mode == "disk" else None)
        return self.caches[fp]

    def states(self, encoder: nn.Module, start: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._cache(encoder, start, input_ids.device.type).states(encoder, start, input_ids, attention_mask)

    def fill(self, encoder: nn.Module, start: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Cache the batch's trunk states without assembling them (`DualEncoder.fill_trunk_cache`)."""
        self._cache(encoder, start, input_ids.device.type).fill(encoder, start, input_ids, attention_mask)

    def flush(self) -> None:
        for cache in self.caches.values():
            cache.flush()

    def report(self) -> dict[str, Any]:
        """What `trunk_cache.json` records: per fingerprint, texts, disk size, build time, hits."""
        return {fp: {"dir": str(c.dir) if c.dir else None, "texts": len(c.entries), "disk_mb": round(c.disk_bytes() / 2**20, 1),
                     **{k: round(v, 2) if isinstance(v, float) else v for k, v in c.stats.items()}}
                for fp, c in self.caches.items()}

    def write_report(self, path: Path) -> dict[str, Any]:
        """Flush, write `report()` to `path` (a run's or the warm step's `trunk_cache.json`), log one line per cache."""
        from batchmix.core.io import write_json

        self.flush()
        report = self.report()
        write_json(path, report)
        for fp, r in report.items():
            log.info("trunk cache %s: %d texts, %.1f MB on disk, %d of them computed here in %.1f s, %d hits",
                     fp, r["texts"], r["disk_mb"], r["computed"], r["compute_s"], r["hits"])
        return report
