"""Test helper: local, tiny, randomly initialised stand-ins for the paper's hub models, and a JSONL
training file with hard negatives, so `experiment=paper_xlmr` / `paper_labse` run with no network.

A stand-in has exactly the real model's shape on disk (`config.json`, safetensors weights, tokenizer
files, loadable by `AutoModel` / `AutoTokenizer.from_pretrained(dir)`), only tiny: the real
architecture class with hidden size 32 and 2 layers, and the embedded XLM-R tokenizer (LaBSE's own
tokenizer is not available offline; its stand-in is a BERT with the XLM-R vocabulary).
"""

from __future__ import annotations

from pathlib import Path

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def save_standin(out: Path, model_type: str = "xlm-roberta", seed: int = 0) -> Path:
    """`xlm-roberta`: an `XLMRobertaModel` shaped like xlm-roberta-base (positions offset by the pad id,
    one token type); `bert`: a `BertModel` like LaBSE. Both with pooler, as the hub checkpoints; the
    same weights for the same seed (the global torch RNG is left as it was)."""
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    from batchmix.models.loading import EMBEDDED_TOKENIZER, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_TOKENIZER)
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if model_type == "xlm-roberta":
        cls, config = XLMRobertaModel, XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1, **special, **TINY)
    elif model_type == "bert":
        cls, config = BertModel, BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, type_vocab_size=2, **special, **TINY)
    else:
        raise ValueError(f"unknown stand-in model_type {model_type!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_negatives_jsonl(xquad_root: Path, path: Path, languages: list[str], max_ids: int = 200, per_pair: int = 3) -> Path:
    """The first `max_ids` ids of XQuAD-R's training articles as training rows, each with `per_pair`
    hard negatives in its own language, with their ids: answer sentences of other training-article
    questions, taken from ids that are not training rows, so no negative is ever masked as a
    translation of a query in its batch (a query's candidates are exactly B positives + B x N)."""
    from batchmix.data.corpus import Negative, Pair, TrainingGroups
    from batchmix.data.jsonl import write_training_jsonl
    from batchmix.data.lareqa import load_lareqa
    from batchmix.data.split import split_by_article

    groups = split_by_article(load_lareqa(xquad_root, languages))["train"].training_groups()
    if len(groups) <= max_ids:
        raise ValueError(f"{len(groups)} training ids leave none to draw negatives from; lower max_ids={max_ids}")
    pool = list(range(max_ids, len(groups)))
    rows = []
    for g in range(max_ids):
        row = {}
        for lang, pair in groups.pairs[g].items():
            negatives: list[Negative] = []
            for k in range(len(pool)):
                other = pool[(g * per_pair + k) % len(pool)]
                text = groups.pairs[other].get(lang)
                if text is not None and text.positive != pair.positive and text.positive not in {n.text for n in negatives}:
                    negatives.append(Negative(text=text.positive, lang=lang, id=groups.ids[other]))
                if len(negatives) == per_pair:
                    break
            row[lang] = Pair(query=pair.query, positive=pair.positive, negatives=tuple(negatives))
        rows.append(row)
    return write_training_jsonl(TrainingGroups(ids=list(groups.ids[:max_ids]), pairs=rows), path)
