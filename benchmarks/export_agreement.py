"""Does a `batchmix export` folder score what batchmix scores? A run is exported, loaded by
sentence-transformers alone, and its embeddings of the run's held-out split are scored by batchmix's
LAReQA scorer; the metrics are compared with `eval.py checkpoint=<run> precision=32-true` (fp32: ST
encodes in fp32). Texts within both token limits embed the same (tests/test_st_export.py, 1e-5); a
question longer than the query limit is cut later in ST (the export keeps the longer limit), which is
the one expected source of a difference.

    .venv/bin/python benchmarks/export_agreement.py outputs/<date>/<time> [--eval-metrics M.json]

`--eval-metrics`: an eval.py metrics.json made before (else eval.py runs here, into a temp folder).
Prints each headline metric from both sides and the largest difference."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf
from sentence_transformers import SentenceTransformer

from batchmix.data.load import load_corpus
from batchmix.data.split import split_by_article
from batchmix.eval.scoring import candidate_texts, evaluate_embeddings
from batchmix.eval.table import HEADLINE
from batchmix.models.st_export import export_sentence_transformers

ROOT = Path(__file__).resolve().parents[1]


def eval_py_metrics(run: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run([sys.executable, str(ROOT / "eval.py"), f"checkpoint={run}", "precision=32-true", "eval.trec=false",
                    f"hydra.run.dir={out}"], check=True, env=env, cwd=ROOT)
    return json.loads((out / "metrics.json").read_text())


def st_metrics(run: Path, folder: Path, batch_size: int = 64) -> dict[str, float]:
    """The run's held-out split (its data config, split fractions and seed), encoded by ST from `folder`."""
    saved = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    data = saved["data"]
    corpus = split_by_article(load_corpus(data), data["split"], seed=int(data["split_seed"]))["test"]
    model = SentenceTransformer(str(folder), device="cpu")
    q_emb, c_emb = {}, {}
    with torch.inference_mode():
        for lang, ls in corpus.languages.items():
            q_emb[lang] = model.encode_query(ls.questions, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
            c_emb[lang] = model.encode_document(candidate_texts(ls, saved["eval"]["candidates"]), batch_size=batch_size,
                                                convert_to_tensor=True, normalize_embeddings=True)
    return evaluate_embeddings(corpus, q_emb, c_emb, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a batchmix run dir (with model/ or checkpoints/)")
    parser.add_argument("--eval-metrics", type=Path, help="eval.py's metrics.json on that run in 32-true (else run it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = export_sentence_transformers(args.run, tmp / "st")
        ours = json.loads(args.eval_metrics.read_text()) if args.eval_metrics else eval_py_metrics(args.run, tmp / "eval")
        theirs = st_metrics(args.run, folder)
    width = max(map(len, HEADLINE))
    print(f"{'metric':<{width}}  {'eval.py fp32':>12}  {'ST export':>12}  {'difference':>10}")
    worst = 0.0
    for key in HEADLINE:
        diff = theirs[key] - ours[key]
        worst = max(worst, abs(diff) if not key.startswith("bias/rank_distance") else 0.0)
        print(f"{key:<{width}}  {ours[key]:>12.5f}  {theirs[key]:>12.5f}  {diff:>+10.2e}")
    print(f"largest |difference| over the headline metrics (rank distance, in ranks, aside): {worst:.2e}")


if __name__ == "__main__":
    main()
