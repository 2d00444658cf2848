"""Evaluation speed: batchmix's whole XQuAD-R evaluation vs sentence-transformers, after encoding.

Both sides score the SAME precomputed embeddings on all of XQuAD-R (11 languages, real
questions, candidate sentences and relevance), over the same 122 LAReQA settings: the
multilingual pool, 11 monolingual and 110 cross-lingual ordered pairs (1 + L + L(L-1), L = 11).

- batchmix: one call of `evaluate_embeddings(corpus, q_emb, c_emb)` (all 122 settings, plus the
  language-bias numbers it always computes).
- peer: sentence-transformers' `InformationRetrievalEvaluator`, one evaluator per setting, built
  once (untimed, as a training loop would), then `compute_all_metrics(stand_in,
  corpus_embeddings=...)` for each of the 122. The candidates arrive as the precomputed
  `corpus_embeddings` tensor; the queries through `_CachedQueryEncoder`, a stand-in model whose
  `encode_query` is a dict lookup + row gather of the cached vectors (its cost is measured and
  printed). Score function: dot product (= cosine on these L2-normalised vectors, as batchmix).

Embeddings: by default random L2-normalised float32 vectors of the real shapes (D=384, the
embedded model's width) - scoring time does not depend on their values. Query vectors are drawn
per distinct question text (the stand-in is a function of the text, as a model is); candidate
vectors per row (no duplicate vectors; float32 scores can still tie by chance). `--model
embedded` encodes with batchmix's embedded multilingual-e5-small instead (each distinct text
once; minutes on a CPU); `--cache x.pt` keeps them for the next run.

Timing: one warm-up each, then `--repeats` rounds, the two sides alternating within a round so
that a change in machine load hits both; the best run of each side is reported. Afterwards the overlapping metrics
are compared setting by setting (recall@{1,5,10,100}, nDCG@10, MAP@20 read from both outputs;
MRR@10 recomputed from batchmix's own ranks, `batchmix.eval.metrics.relevant_ranks`).

    .venv/bin/python benchmarks/eval_speed.py [--repeats 3] [--model embedded --cache emb.pt] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import bench_common  # noqa: E402

from batchmix.data.corpus import LAReQACorpus  # noqa: E402
from batchmix.data.lareqa import load_lareqa  # noqa: E402
from batchmix.core.errors import BatchmixError  # noqa: E402
from batchmix.eval.scoring import evaluate_embeddings  # noqa: E402
from batchmix.eval.metrics import relevant_ranks  # noqa: E402

WIDTH = 384  # multilingual-e5-small's hidden size
GOAL = 0.2  # issue: batchmix / sentence-transformers <= 0.2 after encoding
RECALL_K = (1, 5, 10, 100)
ST_MAP_K = (20, 100)  # 20: XTREME-R's mAP@20, batchmix `map@20`; 100: ST's default
CHECK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Setting:
    """One LAReQA setting: questions of `query_langs` against the candidates of `cand_langs`."""

    suffix: str  # batchmix key suffix: "multi", "mono/en", "cross/en-de"
    query_langs: tuple[str, ...]
    cand_langs: tuple[str, ...]


def settings_of(langs: Sequence[str]) -> list[Setting]:
    """The 1 + L + L(L-1) settings in batchmix's order."""
    out = [Setting("multi", tuple(langs), tuple(langs))]
    out += [Setting(f"mono/{lang}", (lang,), (lang,)) for lang in langs]
    out += [Setting(f"cross/{x}-{y}", (x,), (y,)) for x in langs for y in langs if x != y]
    return out


# --- embeddings ------------------------------------------------------------------------------
def random_embeddings(corpus: LAReQACorpus, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random unit vectors: one per distinct question text, one per candidate row."""
    gen = torch.Generator().manual_seed(seed)

    def unit(n: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(n, WIDTH, generator=gen), dim=1)

    texts = sorted({q for ls in corpus.languages.values() for q in ls.questions})
    table = dict(zip(texts, unit(len(texts))))
    q_emb = {lang: torch.stack([table[q] for q in ls.questions]) for lang, ls in corpus.languages.items()}
    c_emb = {lang: unit(len(ls.candidates)) for lang, ls in corpus.languages.items()}
    return q_emb, c_emb


def embedded_model_embeddings(
    corpus: LAReQACorpus, cache: Path | None, batch_size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """multilingual-e5-small (embedded) vectors, each distinct text encoded once; cached in `cache`."""
    sizes = {lang: (len(ls.questions), len(ls.candidates)) for lang, ls in corpus.languages.items()}
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu")
        if saved.get("corpus") != corpus.name or saved.get("sizes") != sizes:
            raise BatchmixError(
                f"--cache {cache} holds embeddings of another corpus ({saved.get('corpus')!r}, sizes "
                f"{saved.get('sizes')}); delete it or pass another --cache path"
            )
        print(f"embeddings: loaded from {cache}")
        return saved["q_emb"], saved["c_emb"]

    from batchmix.models.dual_encoder import DualEncoder
    from batchmix.models.loading import EMBEDDED
    from batchmix.models.spec import ModelSpec

    model = DualEncoder(ModelSpec(
        name_or_path=EMBEDDED, architecture=None, pooling="mean", normalize=True, shared=True, query_prefix="query: ",
        passage_prefix="passage: ", query_max_length=512, passage_max_length=512, freeze_embeddings=False,
        train_top_layers=None, trunk_cache="off", gradient_checkpointing=False, compile=False, compile_backend="inductor",
    ))
    start = time.perf_counter()
    tables = {}
    for tower, field in (("query", "questions"), ("passage", "candidates")):
        texts = sorted({t for ls in corpus.languages.values() for t in getattr(ls, field)})
        print(f"encoding {len(texts)} distinct {field} with the embedded multilingual-e5-small ...", flush=True)
        tables[tower] = dict(zip(texts, model.encode_texts(texts, tower, batch_size, desc=f"encode {field}")))
    q_emb = {lang: torch.stack([tables["query"][t] for t in ls.questions]) for lang, ls in corpus.languages.items()}
    c_emb = {lang: torch.stack([tables["passage"][t] for t in ls.candidates]) for lang, ls in corpus.languages.items()}
    print(f"embeddings: encoded in {time.perf_counter() - start:.0f} s")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"corpus": corpus.name, "sizes": sizes, "model": "embedded multilingual-e5-small",
                    "q_emb": q_emb, "c_emb": c_emb}, cache)
        print(f"embeddings: cached to {cache}")
    return q_emb, c_emb


# --- the peer --------------------------------------------------------------------------------
class _CachedQueryEncoder:
    """Stand-in for a SentenceTransformer: `encode_query` returns cached vectors for the texts.

    InformationRetrievalEvaluator (v6.2, `embed_inputs`) calls `model.encode_query(queries,
    prompt_name=, prompt=, batch_size=, show_progress_bar=, convert_to_tensor=True,
    truncate_dim=)`; with `corpus_embeddings` given it never encodes the corpus. A text always
    maps to the same vector, as with a real model.
    """

    def __init__(self, texts: Sequence[str], embeddings: torch.Tensor) -> None:
        self.row_of = {text: row for row, text in enumerate(texts)}  # duplicates share one vector
        # numpy fancy indexing, not torch.index_select: torch parallelises that small copy and on
        # a busy 2-core machine its thread hand-off alone cost ~5 ms per call (measured).
        self.embeddings = embeddings.numpy()

    def encode_query(self, sentences, *, prompt_name=None, prompt=None, convert_to_tensor=True,
                     truncate_dim=None, **_ignored) -> torch.Tensor:
        if prompt_name is not None or prompt is not None or truncate_dim is not None or not convert_to_tensor:
            raise ValueError("the stand-in serves untruncated, prompt-less tensors only")
        rows = np.fromiter((self.row_of[s] for s in sentences), np.int64, len(sentences))
        return torch.from_numpy(self.embeddings[rows])


def st_inputs(corpus: LAReQACorpus, setting: Setting) -> tuple[dict, dict, dict]:
    """queries {qid: text}, corpus {cid: sentence}, relevant_docs {qid: {cid}} for one setting."""
    answer_of = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    queries, relevant = {}, {}
    for x in setting.query_langs:
        ls = corpus.languages[x]
        for qid, text in zip(ls.question_ids, ls.questions):
            docs = {f"{y}:{answer_of[y][qid]}" for y in setting.cand_langs if qid in answer_of[y]}
            queries[f"{x}:{qid}"] = text
            if docs:
                relevant[f"{x}:{qid}"] = docs
    docs = {f"{y}:{i}": text for y in setting.cand_langs for i, text in enumerate(corpus.languages[y].candidates)}
    return queries, docs, relevant


def build_peer(corpus, settings, c_emb):
    """One InformationRetrievalEvaluator (+ its corpus embeddings) per setting; untimed setup."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import dot_score

    peers = []
    for setting in settings:
        queries, docs, relevant = st_inputs(corpus, setting)
        evaluator = InformationRetrievalEvaluator(
            queries, docs, relevant,
            mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=list(RECALL_K),
            map_at_k=list(ST_MAP_K), show_progress_bar=False, write_csv=False, name=setting.suffix,
            score_functions={"dot": dot_score},
        )
        pool = torch.cat([c_emb[y] for y in setting.cand_langs]) if len(setting.cand_langs) > 1 else c_emb[setting.cand_langs[0]]
        peers.append((setting, evaluator, pool))
    return peers


def run_peer(peers, stand_in) -> dict[str, dict]:
    return {s.suffix: ev.compute_all_metrics(stand_in, corpus_embeddings=pool)["dot"] for s, ev, pool in peers}


# --- timing and checks -----------------------------------------------------------------------
def timed_rounds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[list[float], object]]:
    """Warm up each fn once, then `repeats` rounds running each once; per fn: (seconds, last result)."""
    results = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (times[name], results[name]) for name in fns}


@dataclass
class RankCheck:
    """From batchmix's own ranks of one setting: MRR@10, full MRR, and exact score ties."""

    mrr_at_10: float
    mrr: float
    tied_relevant: int  # relevant items scoring exactly equal to another candidate


def batchmix_ranks_check(corpus: LAReQACorpus, setting: Setting, q_emb, c_emb) -> RankCheck:
    """Ranks via `batchmix.eval.metrics.relevant_ranks` (pessimistic ties) for one setting."""
    answer_of = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    offsets, start = {}, 0
    for y in setting.cand_langs:
        offsets[y], start = start, start + len(corpus.languages[y].candidates)
    pool = torch.cat([c_emb[y] for y in setting.cand_langs])
    missing = torch.iinfo(torch.long).max
    best, tied = [], 0
    for x in setting.query_langs:
        ls = corpus.languages[x]
        rel = torch.tensor(
            [[offsets[y] + answer_of[y][qid] if qid in answer_of[y] else -1 for y in setting.cand_langs] for qid in ls.question_ids]
        )
        for a in range(0, len(ls.question_ids), 1024):
            scores, chunk_rel = q_emb[x][a : a + 1024] @ pool.T, rel[a : a + 1024]
            ranks = relevant_ranks(scores, chunk_rel)
            # A relevant item tied with another candidate: pessimistic rank > 1 + #strictly higher.
            answer = scores.gather(1, chunk_rel.clamp(min=0))
            above = (scores.unsqueeze(1) > answer.unsqueeze(2)).sum(dim=2)
            tied += int(((ranks > 0) & (ranks > above + 1)).sum())
            best.append(torch.where(ranks > 0, ranks, torch.full_like(ranks, missing)).min(dim=1).values)
    best_rank = torch.cat(best)
    best_rank = best_rank[best_rank != missing].double()
    return RankCheck(
        mrr_at_10=float(torch.where(best_rank <= 10, 1.0 / best_rank, 0.0).mean()),
        mrr=float((1.0 / best_rank).mean()),
        tied_relevant=tied,
    )


def compare(corpus, settings, ours, theirs, q_emb, c_emb) -> tuple[dict[str, list[float]], int, int]:
    """Max |batchmix - ST| per shared metric, as [over tie-free settings, over settings with ties].

    Where a relevant item ties exactly with another candidate the two may differ legitimately:
    batchmix ranks every tied candidate above it (pessimistic), ST orders ties by corpus id.
    Also returns (#settings with such ties, #tied relevant items in all).
    """
    diff: dict[str, list[float]] = {}
    n_tied_settings = n_tied_items = 0
    for setting in settings:
        st = theirs[setting.suffix]
        check = batchmix_ranks_check(corpus, setting, q_emb, c_emb)
        slot = 1 if check.tied_relevant else 0
        n_tied_settings += bool(check.tied_relevant)
        n_tied_items += check.tied_relevant
        pairs = {f"recall@{k}": (ours[f"recall@{k}/{setting.suffix}"], st["recall@k"][k]) for k in RECALL_K}
        pairs["ndcg@10"] = (ours[f"ndcg@10/{setting.suffix}"], st["ndcg@k"][10])
        pairs["map@20"] = (ours[f"map@20/{setting.suffix}"], st["map@k"][20])
        pairs["mrr@10 (from batchmix ranks)"] = (check.mrr_at_10, st["mrr@k"][10])
        for name, (a, b) in pairs.items():
            entry = diff.setdefault(name, [0.0, 0.0])
            entry[slot] = max(entry[slot], abs(a - b))
        # The recomputed ranks are batchmix's: they reproduce its full-ranking mrr exactly.
        entry = diff.setdefault("  (recomputed ranks vs batchmix mrr)", [0.0, 0.0])
        entry[slot] = max(entry[slot], abs(check.mrr - ours[f"mrr/{setting.suffix}"]))
    return diff, n_tied_settings, n_tied_items


def profile_batchmix(corpus, q_emb, c_emb, top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    return stream.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="XQuAD-R folder (default: $BATCHMIX_DATA or ../shared/data/xquad-r)")
    parser.add_argument("--languages", nargs="*", default=None, help="a subset, for a quick try (default: all)")
    parser.add_argument("--model", choices=["random", "embedded"], default="random",
                        help="random unit vectors (default) or the embedded multilingual-e5-small (minutes on CPU)")
    parser.add_argument("--cache", type=Path, default=None, help="with --model embedded: .pt file to load/save the embeddings")
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch size (--model embedded)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side after one warm-up; best is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both sides (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one batchmix evaluation")
    args = parser.parse_args()
    if args.repeats < 1:
        raise BatchmixError(f"--repeats {args.repeats} must be >= 1")
    if args.cache is not None and args.model != "embedded":
        raise BatchmixError("--cache only applies to --model embedded; drop it or add --model embedded")

    import sentence_transformers

    if args.threads is not None:
        if args.threads < 1:
            raise BatchmixError(f"--threads {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)

    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:])
    load_before = os.getloadavg()
    corpus = load_lareqa(args.root, args.languages)
    if args.model == "random":
        q_emb, c_emb = random_embeddings(corpus, args.seed)
    else:
        q_emb, c_emb = embedded_model_embeddings(corpus, args.cache, args.batch_size)
    settings = settings_of(corpus.langs)
    n_q = sum(len(ls.questions) for ls in corpus.languages.values())
    n_c = sum(len(ls.candidates) for ls in corpus.languages.values())
    print(f"{corpus.name}: {len(corpus.langs)} languages, {n_q} questions, {n_c} candidates, "
          f"{len(settings)} settings; embeddings: {args.model}, D={q_emb[corpus.langs[0]].shape[1]}")

    setup_start = time.perf_counter()
    peers = build_peer(corpus, settings, c_emb)
    setup_s = time.perf_counter() - setup_start
    texts = [q for lang in corpus.langs for q in corpus.languages[lang].questions]
    stand_in = _CachedQueryEncoder(texts, torch.cat([q_emb[lang] for lang in corpus.langs]))
    timed = timed_rounds(
        {
            "batchmix": lambda: evaluate_embeddings(corpus, q_emb, c_emb, progress=False),
            "st": lambda: run_peer(peers, stand_in),
            "stand_in": lambda: [stand_in.encode_query(ev.queries, convert_to_tensor=True) for _, ev, _ in peers],
        },
        args.repeats,
    )
    (ours_all, ours), (theirs_all, theirs), (stand_in_all, _) = timed["batchmix"], timed["st"], timed["stand_in"]
    ours_s, theirs_s, stand_in_s = min(ours_all), min(theirs_all), min(stand_in_all)

    diff, n_tied_settings, n_tied_items = compare(corpus, settings, ours, theirs, q_emb, c_emb)

    ratio = ours_s / theirs_s
    print()
    print(f"whole {corpus.name} evaluation, all {len(settings)} settings, after encoding (best of "
          f"{args.repeats} after 1 warm-up; seconds)")
    print(f"  {'batchmix evaluate_embeddings':<44} {ours_s:>9.3f}   runs {', '.join(f'{t:.3f}' for t in ours_all)}")
    print(f"  {f'sentence-transformers IR evaluator x{len(peers)}':<44} {theirs_s:>9.3f}   runs {', '.join(f'{t:.3f}' for t in theirs_all)}")
    print(f"  {'  of which the query stand-in (lookups)':<44} {stand_in_s:>9.3f}   ({100 * stand_in_s / theirs_s:.2f}% of ST)")
    print(f"  {'  ST evaluator construction (untimed)':<44} {setup_s:>9.3f}")
    print(f"  {'ratio batchmix / sentence-transformers':<44} {ratio:>9.3f}   goal <= {GOAL}: "
          f"{'met' if ratio <= GOAL else 'NOT met'} ({1 / ratio:.1f}x faster)")
    print()
    print(f"same numbers? max |batchmix - ST| over the {len(settings)} settings "
          f"(tolerance {CHECK_TOLERANCE:g})")
    print(f"  {'metric':<36} {'tie-free':>9}  {'with ties':>9}")
    for name, (clean, tied) in diff.items():
        flag = "ok" if clean <= CHECK_TOLERANCE else "DIFFERS"
        print(f"  {name:<36} {clean:>9.2e}  {tied if n_tied_settings else float('nan'):>9.2e}  {flag}")
    print(f"  relevant items scoring exactly equal to another candidate: {n_tied_items} (in {n_tied_settings} settings);")
    print("  there batchmix ranks every tied candidate above the relevant one (pessimistic) and ST")
    print("  orders ties by corpus id, so 'with ties' may differ legitimately.")
    print("  not compared: ST's MAP@k is truncated at k (here 20, 100; AP normalised by min(R, k)),")
    print("  LAReQA's map is over the full ranking; batchmix's mrr has no cutoff (ST: MRR@10).")
    if args.model == "random":
        print("  embeddings are random unit vectors of the real shapes: scoring time does not depend on")
        print("  their values, and the metric values themselves mean nothing here.")
    print()
    print("machine")
    print(f"  cpus {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}")
    bench_common.print_provenance(load_before, command)

    if args.profile:
        print()
        print("cProfile of one batchmix evaluation (by own time)")
        print(profile_batchmix(corpus, q_emb, c_emb))
    worst = max(clean for clean, _ in diff.values())  # differences away from ties are bugs
    return 0 if worst <= CHECK_TOLERANCE else 1


if __name__ == "__main__":
    bench_common.run(main)
