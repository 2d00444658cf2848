"""Fixed point for the evaluator: multilingual-e5-small zero-shot on all of XQuAD-R.

Encodes every question and candidate sentence of all 11 languages with the embedded default
model through batchmix's own evaluation loop, the one `train.py` and `eval.py` run (a Lightning
validation loop: `DualEncoder.validation_step` with prefixes `query: ` / `passage: `, mean pooling,
L2 normalisation; `LAReQAMetric` gathers, `eval/scoring.py` scores every LAReQA setting). An independent
implementation measured on the same weights: map/mono 0.800, map/cross 0.640, map/multi 0.298,
rank distance 1214 (macro over languages / pairs); batchmix must agree within +-0.005.

    .venv/bin/python benchmarks/zero_shot_me5_xquad_r.py [--languages en de] [--out metrics.json] [--precision bf16-mixed]

About 26k texts: several minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402

from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.eval.rounds import EvalRound  # noqa: E402
from batchmix.eval.validation import LAReQAValidation  # noqa: E402
from batchmix.losses import InfoNCELoss  # noqa: E402
from batchmix.models.dual_encoder import DualEncoder  # noqa: E402
from batchmix.models.loading import EMBEDDED, load_encoder, load_tokenizer  # noqa: E402

REFERENCE = {"map/mono": 0.800, "map/cross": 0.640, "map/multi": 0.298, "bias/rank_distance": 1214.0}
TOLERANCE = {"map/mono": 0.005, "map/cross": 0.005, "map/multi": 0.005, "bias/rank_distance": 5.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="XQuAD-R folder (default: $BATCHMIX_DATA or ../shared/data/xquad-r)")
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None, help="write all metrics to this JSON file")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="the trainer's precision (bf16-mixed: CPU bf16 autocast, the drift check of benchmarks/RESULTS.md)")
    args = parser.parse_args()

    corpus = load_lareqa(args.root, args.languages)
    model = DualEncoder(
        load_encoder(EMBEDDED), load_tokenizer(EMBEDDED), InfoNCELoss(),
        pooling="mean", query_prefix="query: ", passage_prefix="passage: ", query_max_length=512, passage_max_length=512,
    )
    start = time.perf_counter()
    round_ = EvalRound({"all": corpus}, tokenize=model.tokenize, batch_size=args.batch_size, width=model.embedding_dim)
    validation = LAReQAValidation()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=args.precision, logger=False, callbacks=[validation],
                        enable_progress_bar=False, enable_model_summary=False)
    metrics = validation.run(trainer, model, round_)["all"]
    seconds = time.perf_counter() - start
    if args.out:
        with open(args.out, "w") as f:
            json.dump(metrics, f, indent=1, sort_keys=True)

    full = args.languages is None
    print(f"multilingual-e5-small (embedded), zero-shot, {corpus.name}, {len(corpus.langs)} languages, {args.precision}, {seconds:.0f}s")
    print(f"{'metric':<20} {'batchmix':>10} {'reference':>10} {'diff':>8}")
    ok = True
    for key, ref in REFERENCE.items():
        diff = metrics[key] - ref
        within = abs(diff) <= TOLERANCE[key]
        ok &= within or not full
        print(f"{key:<20} {metrics[key]:>10.4f} {ref:>10.4f} {diff:>+8.4f} {'ok' if within else 'OFF' if full else '(subset)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
