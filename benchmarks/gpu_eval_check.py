"""GPU check of the evaluation loop (issue #13): encode throughput on the GPU against the CPU, and the
cost of one periodic validation, with the embedded multilingual-e5-small (me5-small architecture;
its weights are in the repo, so no hub is needed).

    python benchmarks/gpu_eval_check.py                   # on a machine with a GPU
    python benchmarks/gpu_eval_check.py --cpu-articles 2  # articles timed on the CPU (all of it takes long)

It prints one JSON object:
- `gpu`: a final evaluation of all of XQuAD-R (11 languages) through `LAReQAValidation` on one GPU
  under bf16-mixed: seconds, texts encoded per second, and map/multi (compare with the fixed point,
  0.298 at 32-true);
- `cpu`: the same loop at 32-true on the first `--cpu-articles` articles of the same corpus;
- `val_call`: one periodic validation of the default val split (10 % of the articles) on the GPU.
Record the output in benchmarks/RESULTS.md with the GPU's name.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.data.load import load_corpus, load_splits
from batchmix.eval.rounds import EvalRound
from batchmix.eval.validation import LAReQAValidation
from batchmix.models.factory import build_dual_encoder


def timed_round(module, corpora, accelerator: str, precision: str, batch_size: int) -> dict:
    round_ = EvalRound(corpora, tokenize=module.tokenize, batch_size=batch_size, width=module.embedding_dim)
    validation = LAReQAValidation()
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, logger=False, callbacks=[validation],
                        enable_progress_bar=False, enable_model_summary=False)
    texts = sum(sum(round_.pool_size(key)) for key in corpora)
    start = time.perf_counter()
    results = validation.run(trainer, module, round_)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "texts": texts, "texts_per_s": round(texts / seconds, 1),
            "map/multi": {key: round(m["map/multi"], 4) for key, m in results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cpu-articles", type=int, default=2, help="articles of XQuAD-R timed on the CPU")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["model=me5_small"])
    module = build_dual_encoder(cfg.model)
    corpus = load_corpus(cfg.data)
    _, splits = load_splits(cfg.data)
    out: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if torch.cuda.is_available():
        out["gpu"] = timed_round(module, {"all": corpus}, "gpu", "bf16-mixed", args.batch_size)
        out["val_call"] = timed_round(module, {"val": splits["val"]}, "gpu", "bf16-mixed", args.batch_size)
    sample = corpus.subset(corpus.groups[: args.cpu_articles], name="xquad-r-sample")
    out["cpu"] = timed_round(module, {"sample": sample}, "cpu", "32-true", 64)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
