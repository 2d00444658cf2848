"""Fixed points for the evaluator: multilingual-e5-small zero-shot on all of XQuAD-R or of MLQA-R.

Encodes every question and candidate sentence of every language with the embedded default model
through batchmix's own evaluation loop, the one `train.py` and `eval.py` run (a Lightning
validation loop: `DualEncoder.validation_step` with prefixes `query: ` / `passage: `, mean pooling,
L2 normalisation, max length 512; `LAReQAMetric` gathers, `eval/scoring.py` scores every LAReQA
setting). An independent implementation measured on the same weights (map/mono and map/cross and
rank distance: macro over languages / pairs; map/multi: the mean over all questions, as LAReQA
defines it):

| corpus | map/mono | map/cross | map/multi | rank distance | tolerance |
|---|---|---|---|---|---|
| all of XQuAD-R | 0.800 | 0.640 | 0.298 | 1214 | +-0.005 on the mAPs, +-5 on rank distance |
| all of MLQA-R | 0.654 | 0.458 | 0.321 | 1588 | +-0.005 on the mAPs, +-0.5 % on rank distance |

    .venv/bin/python benchmarks/zero_shot_me5.py [--corpus xquad-r|mlqa-r] [--languages en de] [--out metrics.json] [--precision bf16-mixed]

About 26k (XQuAD-R) or 25k (MLQA-R) texts: several minutes on a 2-core CPU.
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
from batchmix.models.dual_encoder import DualEncoder  # noqa: E402
from batchmix.models.loading import EMBEDDED  # noqa: E402
from batchmix.models.spec import ModelSpec  # noqa: E402

REFERENCE = {
    "xquad-r": {"map/mono": 0.800, "map/cross": 0.640, "map/multi": 0.298, "bias/rank_distance": 1214.0},
    "mlqa-r": {"map/mono": 0.654, "map/cross": 0.458, "map/multi": 0.321, "bias/rank_distance": 1588.0},
}
TOLERANCE = {
    "xquad-r": {"map/mono": 0.005, "map/cross": 0.005, "map/multi": 0.005, "bias/rank_distance": 5.0},
    "mlqa-r": {"map/mono": 0.005, "map/cross": 0.005, "map/multi": 0.005, "bias/rank_distance": 0.005 * 1588.0},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="xquad-r", choices=sorted(REFERENCE), help="which fixed point (default xquad-r)")
    parser.add_argument("--root", default=None, help="the corpus folder (default: $BATCHMIX_DATA/<corpus> or ../shared/data/<corpus>)")
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None, help="write all metrics to this JSON file")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="the trainer's precision (bf16-mixed: CPU bf16 autocast, the drift check of benchmarks/RESULTS.md)")
    args = parser.parse_args()

    corpus = load_lareqa(args.root, args.languages, name=args.corpus)
    model = DualEncoder(ModelSpec(
        name_or_path=EMBEDDED, architecture=None, pooling="mean", normalize=True, shared=True, query_prefix="query: ",
        passage_prefix="passage: ", query_max_length=512, passage_max_length=512, freeze_embeddings=False,
        train_top_layers=None, trunk_cache="off", gradient_checkpointing=False, compile=False, compile_backend="inductor",
    ))
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
    for key, ref in REFERENCE[args.corpus].items():
        diff = metrics[key] - ref
        within = abs(diff) <= TOLERANCE[args.corpus][key]
        ok &= within or not full
        print(f"{key:<20} {metrics[key]:>10.4f} {ref:>10.4f} {diff:>+8.4f} {'ok' if within else 'OFF' if full else '(subset)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
