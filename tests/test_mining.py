"""Hard-negative mining (batchmix/data/mining.py, `python -m batchmix.run.mine`).

The translation-aware property is tested adversarially on XQuAD-R slices: an encoder is built that
puts every translation of a question's answer right on top of the question, so a miner that only
ranks would return nothing but translations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from batchmix.data.corpus import Pair, TrainingGroups
from batchmix.data.jsonl import load_training_jsonl
from batchmix.data.lareqa import load_lareqa
from batchmix.data.split import split_by_article
from batchmix.core.errors import BatchmixError
from batchmix.data.mining import MiningOptions, build_pool, mine, top_k

REPO = Path(__file__).resolve().parents[1]


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture(scope="module")
def train_split(xquad_root):
    return split_by_article(load_lareqa(xquad_root, ["de", "en", "zh"]), seed=0)["train"]


def adversarial_encoders(split, dim: int = 64):
    """Questions of id X and every answer sentence of X (any language) share X's direction (answers
    with a little noise); all other sentences are random. Returns (encode_queries, encode_passages)."""
    gen = torch.Generator().manual_seed(0)
    direction: dict[str, torch.Tensor] = {}
    answer_of: dict[str, str] = {}
    for ls in split.languages.values():
        for qid, q, a in zip(ls.question_ids, ls.questions, ls.answer_index):
            direction.setdefault(qid, torch.randn(dim, generator=gen))
            answer_of.setdefault(ls.candidates[a], qid)
    by_query = {q: qid for ls in split.languages.values() for qid, q in zip(ls.question_ids, ls.questions)}

    def passage(text: str) -> torch.Tensor:
        seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % (2**31) + len(text)
        noise = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
        return direction[answer_of[text]] + 0.05 * noise if text in answer_of else noise

    return (lambda texts: unit(torch.stack([direction[by_query[t]] for t in texts])),
            lambda texts: unit(torch.stack([passage(t) for t in texts])))


@pytest.mark.parametrize("pool_kind", ["all", "language"])
def test_the_miner_never_returns_a_translation_of_the_querys_answer(train_split, pool_kind):
    groups = train_split.training_groups()
    pool = build_pool(groups, train_split)
    answers = {}  # id -> every language's answer sentence (an independent view: the corpus itself)
    for ls in train_split.languages.values():
        for qid, a in zip(ls.question_ids, ls.answer_index):
            answers.setdefault(qid, set()).add(ls.candidates[a])
    encode_q, encode_p = adversarial_encoders(train_split)
    # The control: by score alone, the top candidates of a query are its answer's translations.
    q = encode_q([groups.pairs[0]["en"].query])
    scores, idx = top_k(q, encode_p(pool.texts), 3, "torch")
    assert {pool.texts[i] for i in idx[0].tolist()} <= answers[groups.ids[0]]
    mined, stats = mine(groups, pool, encode_q, encode_p, MiningOptions(num_negatives=3, pool=pool_kind))
    assert stats["pairs_short"] == 0 and stats["negatives"] == 3 * stats["pairs"]
    for qid, pairs in zip(mined.ids, mined.pairs):
        for lang, pair in pairs.items():
            assert len(pair.negatives) == 3
            for negative in pair.negatives:
                assert negative.text not in answers[qid] and negative.id != qid
                assert pool_kind == "all" or negative.lang == lang
                if negative.id is not None:
                    assert negative.text in answers[negative.id]  # the id it carries is one it answers
                # every id it answers, from the corpus itself: the `answers` mask drops it for each of them
                assert set(negative.answers) == {i for i, texts in answers.items() if negative.text in texts}
                assert negative.id == min(negative.answers, default=None)


# A hand-made pool: one query (id q) along e0; candidates at known cosines.
COS = {"own answer": 0.99, "translation": 0.98, "c1": 0.9, "c2": 0.8, "c3": 0.7, "c4": 0.6, "c5": 0.5}


def hand_pool():
    groups = TrainingGroups(ids=["q", "r"], pairs=[{"en": Pair("query q", "own answer")}, {"en": Pair("query r", "translation")}])
    groups.pairs[1]["de"] = Pair("frage r", "c5")
    pool = build_pool(groups)
    pool.answers[pool.texts.index("translation")] = frozenset({"q", "r"})  # "translation" also answers q

    def vec(cos: float) -> list[float]:
        return [cos, (1 - cos**2) ** 0.5]

    def encode_q(texts):
        return torch.tensor([[1.0, 0.0]] * len(texts))

    def encode_p(texts):
        return torch.tensor([vec(COS.get(t, 0.1)) for t in texts])

    pool.texts += ["c1", "c2", "c3", "c4"]
    pool.langs += ["en"] * 4
    pool.answers += [frozenset()] * 4
    return groups, pool, encode_q, encode_p


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"num_negatives": 3}, ["c1", "c2", "c3"]),
        ({"num_negatives": 3, "range_min": 1}, ["c2", "c3", "c4"]),
        ({"num_negatives": 3, "range_max": 2}, ["c1", "c2"]),
        ({"num_negatives": 3, "margin": 0.15}, ["c2", "c3", "c4"]),  # score <= 0.99 - 0.15 = 0.84
        ({"num_negatives": 3, "relative_margin": 0.25}, ["c3", "c4"]),  # score <= 0.99 * 0.75 = 0.7425
        ({"num_negatives": 9, "pool": "all"}, ["c1", "c2", "c3", "c4", "c5"]),
    ],
)
def test_range_and_margins_follow_sentence_transformers(options, expected):
    groups, pool, encode_q, encode_p = hand_pool()
    mined, _ = mine(groups, pool, encode_q, encode_p, MiningOptions(**options))
    assert [n.text for n in mined.pairs[0]["en"].negatives] == expected


def test_faiss_and_torch_search_agree():
    pytest.importorskip("faiss")
    q, p = unit(torch.randn(50, 16, generator=torch.Generator().manual_seed(1))), unit(torch.randn(300, 16))
    s_f, i_f = top_k(q, p, 20, "faiss")
    s_t, i_t = top_k(q, p, 20, "torch")
    assert torch.equal(i_f, i_t)
    torch.testing.assert_close(s_f, s_t, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_negatives": 0}, r"mine.num_negatives=0 must be a positive integer"),
        ({"range_min": 50}, r"mine.range_min=50 must be an integer in \[0, mine.range_max=50\)"),
        ({"margin": "big"}, r"mine.margin='big' must be null or a number"),
        ({"pool": "lang"}, r"mine.pool='lang' is not one of \['language', 'all'\]"),
        ({"search": "annoy"}, r"mine.search='annoy'"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(BatchmixError, match=message):
        MiningOptions(**options)


@pytest.mark.slow
def test_mine_cli_writes_training_jsonl_that_training_reads(tmp_path, xquad_root):
    """The user's command on a tiny random model: the JSONL round-trips into training groups whose
    negatives are never an answer of their own id."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "neg.jsonl"
    cmd = [sys.executable, "-m", "batchmix.run.mine", "model=tiny", f"data.root={xquad_root}", "data.languages=[en,de]",
           f"mine.out={out}", "mine.num_negatives=2", "mine.pool=all", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "texts/s" in done.stderr + done.stdout
    groups = load_training_jsonl(out)
    stats = json.loads((tmp_path / "mine_stats.json").read_text())
    assert stats["pairs"] == sum(len(p) for p in groups.pairs) and stats["texts_per_second"] > 0
    train = split_by_article(load_lareqa(xquad_root, ["de", "en"]), seed=0)["train"].training_groups()
    assert groups.ids == train.ids
    answers = {qid: {p.positive for p in pairs.values()} for qid, pairs in zip(train.ids, train.pairs)}
    for qid, pairs in zip(groups.ids, groups.pairs):
        for pair in pairs.values():
            assert len(pair.negatives) == 2 and not {n.text for n in pair.negatives} & answers[qid]


def test_a_bad_mine_option_stops_before_any_model_loads(tmp_path, xquad_root, monkeypatch):
    """Through the CLI's own `run`, composed from conf/mine.yaml: one line, and no model was built."""
    from hydra import compose, initialize_config_dir

    import batchmix.models.factory as factory
    from batchmix.config import CONF_DIR
    from batchmix.run.mine import run

    monkeypatch.setattr(factory, "build_dual_encoder", lambda *a, **k: pytest.fail("a model was built"))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("mine", overrides=["model=tiny", f"data.root={xquad_root}", "mine.range_min=99"])
    with pytest.raises(BatchmixError) as error:
        run(cfg, tmp_path)
    assert str(error.value) == "mine.range_min=99 must be an integer in [0, mine.range_max=50)"
