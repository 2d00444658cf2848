"""`LAReQAMetric` (torchmetrics state, gathered across ranks) and the batch sharding of a round.

Expected values come from elsewhere: batchmix's own scorer on the whole embedding matrix
(`evaluate_embeddings`, itself checked against ranx / pytrec_eval in test_eval_lareqa.py), and
torchmetrics' retrieval metrics, an independent implementation of mAP and recall@k.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torchmetrics.retrieval import RetrievalMAP, RetrievalRecall

from batchmix.core.errors import BatchmixError
from batchmix.eval.lareqa_metric import LAReQAMetric, candidate_rows, question_rows
from batchmix.eval.rounds import shard_batches
from batchmix.eval.scoring import evaluate_embeddings
from embeddings import trigram_xquad_slice

WORLD = 2


def _flat(corpus, emb, rows_of) -> torch.Tensor:
    return torch.cat([emb[lang] for lang in corpus.langs]).float()


def _feed(metric: LAReQAMetric, corpus, q_emb, c_emb, rank: int = 0, world: int = 1, batch_size: int = 16) -> None:
    """Give `metric` this rank's batches of both towers, as a validation loop would."""
    for tower, emb, texts in (("query", _flat(corpus, q_emb, question_rows), [q for l in corpus.langs for q in corpus.languages[l].questions]),
                              ("passage", _flat(corpus, c_emb, candidate_rows), [c for l in corpus.langs for c in corpus.languages[l].candidates])):
        for batch in shard_batches([len(t) for t in texts], batch_size, rank, world):
            rows = torch.tensor(batch)
            metric.update(tower, rows, emb[rows])


@pytest.fixture(scope="module")
def toy(xquad_root):
    corpus, q_emb, c_emb = trigram_xquad_slice(xquad_root)
    q32 = {lang: t.float() for lang, t in q_emb.items()}
    c32 = {lang: t.float() for lang, t in c_emb.items()}
    return corpus, q32, c32


def test_metric_from_shuffled_batches_equals_the_scorer_on_the_whole_matrix(toy):
    corpus, q_emb, c_emb = toy
    metric = LAReQAMetric(corpus, width=q_emb[corpus.langs[0]].shape[1])
    _feed(metric, corpus, q_emb, c_emb, batch_size=7)
    assert metric.compute() == evaluate_embeddings(corpus, q_emb, c_emb, progress=False)


def test_metric_agrees_with_torchmetrics_retrieval_map_and_recall(toy):
    """map/mono/<L>, map/multi and recall@10/multi against torchmetrics' own RetrievalMAP / RetrievalRecall."""
    corpus, q_emb, c_emb = toy
    metric = LAReQAMetric(corpus, width=q_emb[corpus.langs[0]].shape[1])
    _feed(metric, corpus, q_emb, c_emb)
    ours = metric.compute()
    pool = torch.cat([c_emb[lang] for lang in corpus.langs])
    offsets = {lang: a for lang, (a, _) in candidate_rows(corpus).items()}
    answer = {lang: dict(zip(ls.question_ids, ls.answer_index)) for lang, ls in corpus.languages.items()}
    multi_map, multi_recall = RetrievalMAP(), RetrievalRecall(top_k=10)
    query = 0
    for lang in corpus.langs:
        ls = corpus.languages[lang]
        mono = RetrievalMAP()
        # + 2: torchmetrics counts a relevant item with a score <= 0 as not retrieved; cosines lie in
        # [-1, 1], and a constant shift changes no rank.
        scores_own = q_emb[lang] @ c_emb[lang].T + 2
        for i, qid in enumerate(ls.question_ids):
            target = torch.zeros(len(ls.candidates), dtype=torch.bool)
            target[ls.answer_index[i]] = True
            mono.update(scores_own[i], target, torch.full_like(target, i, dtype=torch.long))
            relevant = torch.zeros(len(pool), dtype=torch.bool)
            for y in corpus.langs:
                if qid in answer[y]:
                    relevant[offsets[y] + answer[y][qid]] = True
            scores = q_emb[lang][i] @ pool.T + 2
            index = torch.full((len(pool),), query, dtype=torch.long)
            multi_map.update(scores, relevant, index)
            multi_recall.update(scores, relevant, index)
            query += 1
        assert ours[f"map/mono/{lang}"] == pytest.approx(float(mono.compute()), abs=1e-6)
    assert ours["map/multi"] == pytest.approx(float(multi_map.compute()), abs=1e-6)
    assert ours["recall@10/multi"] == pytest.approx(float(multi_recall.compute()), abs=1e-6)


def test_a_row_never_encoded_is_an_error_not_a_silent_zero(toy):
    corpus, q_emb, c_emb = toy
    metric = LAReQAMetric(corpus, width=q_emb[corpus.langs[0]].shape[1])
    _feed(metric, corpus, q_emb, c_emb, rank=0, world=2)  # only half the batches
    with pytest.raises(BatchmixError, match=r"rows of .* were never encoded"):
        metric.compute()


@pytest.mark.parametrize("n,batch_size,world", [(100, 16, 1), (100, 16, 2), (5, 64, 2), (1, 64, 2), (33, 8, 3), (5, 64, 4),
                                                 (9, 64, 4), (9, 64, 8), (49, 64, 8), (130, 64, 3)])
def test_shard_batches_cover_every_row_once_and_match_the_single_process_batches(n, batch_size, world):
    lengths = [(7 * i) % 23 for i in range(n)]
    single = shard_batches(lengths, batch_size)
    shards = [shard_batches(lengths, batch_size, r, world) for r in range(world)]
    rows = sorted(i for shard in shards for batch in shard for i in batch)
    assert rows == list(range(n))
    assert all(len(b) <= batch_size for shard in shards for b in shard)
    if n >= world:
        assert all(shards)  # every rank gets a batch
    if -(-n // batch_size) >= world:  # enough batches: each rank's batches are the single process's, dealt round-robin
        assert [b for r in range(world) for b in shards[r]] == [b for r in range(world) for b in single[r::world]]
    flat = [lengths[i] for b in single for i in b]
    assert flat == sorted(lengths, reverse=True)  # longest first


def _gloo_worker(rank: int, world: int, init_file: str, root: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        corpus, q_emb, c_emb = trigram_xquad_slice(Path(root))
        q_emb = {k: v.float() for k, v in q_emb.items()}
        c_emb = {k: v.float() for k, v in c_emb.items()}
        metric = LAReQAMetric(corpus, width=q_emb[corpus.langs[0]].shape[1])
        _feed(metric, corpus, q_emb, c_emb, rank=rank, world=world, batch_size=16)
        Path(out, f"rank{rank}.json").write_text(json.dumps(metric.compute()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_score_exactly_what_one_process_scores(tmp_path, toy, xquad_root):
    corpus, q_emb, c_emb = toy
    mp.start_processes(_gloo_worker, args=(WORLD, str(tmp_path / "init"), str(xquad_root), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    expected = evaluate_embeddings(corpus, q_emb, c_emb, progress=False)
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        assert all(got[k] == pytest.approx(v, abs=1e-6) for k, v in expected.items())
