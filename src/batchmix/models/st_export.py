"""A trained batchmix model as a sentence-transformers folder: `SentenceTransformer(DIR)` loads it as it is.

Why: a run's `model/` is by default a delta over a hash-checked base (models/export.py), which only
batchmix can load. This writes what sentence-transformers expects, built with its own public
modules and saved by its own `save`, so the format is whatever the installed release writes:

    DIR/              the encoder (HF weights + config) and its tokenizer: ST's `Transformer`
    DIR/1_Pooling/    mean or CLS pooling, as the run pooled
    DIR/2_Normalize/  only if the run L2-normalised its embeddings
    DIR/modules.json, config_sentence_transformers.json (the prefixes as the prompts `query` and
                      `document`, which ST's `encode_query` / `encode_document` apply), ...

One difference is unavoidable: batchmix truncates queries and passages at their own limits (64 and
128 tokens for me5-small), ST has one `max_seq_length`. The export takes the longer one, so a text
within both limits embeds the same in both, and a query longer than the query limit is cut later in
ST than it was in training (the export logs how far apart the two limits are). After saving, the
folder is loaded back with ST and a probe query and passage are compared with batchmix's embeddings;
a difference refuses the export, so a folder that is written is one that encodes as batchmix did.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_dir
from batchmix.models.factory import load_trained

log = logging.getLogger("batchmix")
PROMPTS = {"query": "query", "passage": "document"}  # batchmix tower -> ST prompt name (what encode_query / encode_document read)
PROBES = ("Where was the first batch of the treaty signed?", "The treaty was signed in Lisbon in 1494.")
TOLERANCE = 1e-5  # max |batchmix - ST| on the probes (same weights, same fp32 kernels)


def _sentence_transformers():
    try:
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        raise BatchmixError("batchmix export needs sentence-transformers: pip install 'batchmix[export]'") from None
    return sentence_transformers.__version__, SentenceTransformer, Transformer, Pooling, Normalize


def export_sentence_transformers(source: str | Path, out: str | Path, model: Any = None) -> Path:
    """Write the batchmix model at `source` (a run dir, its model/, or a .ckpt) to `out` as a
    sentence-transformers folder; returns `out`. `model`: a `model` node for what a model/ folder
    copied away from its run does not record (its max lengths), as eval.py passes its own. Fails in
    one line before writing anything if it cannot."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BatchmixError(f"--to {out} exists and is not an empty folder: give a new folder")
    version, SentenceTransformer, Transformer, Pooling, Normalize = _sentence_transformers()
    module, _ = load_trained(source, model)
    if module.passage_encoder is not module.query_encoder:
        raise BatchmixError(f"{source} has separate query and passage towers (model.shared=false): "
                            "a sentence-transformers folder holds one encoder")
    max_length = max(module.query_max_length, module.passage_max_length)
    if module.query_max_length != module.passage_max_length:
        log.info("sentence-transformers has one max_seq_length: %d tokens (batchmix cut queries at %d, passages at %d)",
                 max_length, module.query_max_length, module.passage_max_length)
    with tempfile.TemporaryDirectory(prefix="batchmix-export-") as hf_dir:
        module.query_encoder.save_pretrained(hf_dir)  # the whole encoder: a delta export's base + trained weights
        module.tokenizer.save_pretrained(hf_dir)
        transformer = Transformer(hf_dir, max_seq_length=max_length)
        modules = [transformer, Pooling(transformer.get_embedding_dimension(), module.pooling)]
        if module.normalize:
            modules.append(Normalize())
        prompts = {PROMPTS["query"]: module.query_prefix, PROMPTS["passage"]: module.passage_prefix}
        model = SentenceTransformer(modules=modules, prompts=prompts, device="cpu",
                                    similarity_fn_name="cosine" if module.normalize else "dot")
        with atomic_dir(out) as staging:
            model.save(str(staging))
            _check_probe(module, SentenceTransformer(str(staging), device="cpu"), source)
    log.info("exported %s as a sentence-transformers %s folder: %s", source, version, out)
    return out


def _check_probe(module, model, source: Path) -> None:
    """The saved folder, loaded by ST, embeds a probe query and passage as batchmix does."""
    with torch.inference_mode():
        for text, tower in zip(PROBES, ("query", "passage")):
            ours = module.encode_texts([text], tower, desc=False)
            theirs = model.encode([text], prompt_name=PROMPTS[tower], convert_to_tensor=True).float().cpu()
            diff = float((ours - theirs).abs().max())
            if diff > TOLERANCE:
                raise BatchmixError(f"the sentence-transformers folder for {source} embeds a {tower} {diff:.1e} away from "
                                    f"batchmix's (tolerance {TOLERANCE}): not exported; please report it")
