"""Prefix, truncate and pad texts for an encoder: the one place training batches and evaluation
encoding are tokenised, so the two can never disagree about prefixes or lengths."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], prefix: str, max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer([prefix + t for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
