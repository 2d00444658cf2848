"""data.pretokenize and data.num_workers: the same batches and losses, only made faster."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

import batchmix.data.pretokenize as pretokenize_module
from batchmix.data.corpus import Pair, TrainingGroups
from batchmix.data.datamodule import HybridDataModule, PairCollator
from batchmix.data.lareqa import load_lareqa
from batchmix.data.pretokenize import pretokenize, tokenizer_fingerprint
from batchmix.core.errors import BatchmixError
from batchmix.models.loading import load_tokenizer
from batchmix.data.tokenize import tokenize
from batchmix.mixing.ratio import Ratio
from batchmix.mixing.sampler import HybridBatchSampler
from scale_helpers import tiny_encoder
from test_train import TINY, compose_cfg

LANGS = ["ar", "de", "en", "th", "zh"]  # three scripts, and two without spaces between words
RATIOS = {"mono": Ratio(1, 0, 0), "cross": Ratio(0, 1, 0), "multi": Ratio(0, 0, 1)}
LENGTHS = {"short": (8, 12), "long": (64, 128)}  # short: most texts truncated
FAST = ["model.query_max_length=12", "model.passage_max_length=16", "model.freeze_embeddings=true"]  # for train()


@pytest.fixture(scope="module")
def groups(xquad_root) -> TrainingGroups:
    corpus = load_lareqa(xquad_root, LANGS)
    return corpus.subset(corpus.groups[:12]).training_groups()  # 12 of 48 articles: ~300 ids x 5 languages


@pytest.fixture(scope="module")
def few(groups) -> TrainingGroups:
    """40 ids: enough for the cache and fingerprint tests, cheap to tokenise four times over."""
    return TrainingGroups(ids=groups.ids[:40], pairs=groups.pairs[:40])


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded:xlmr-tokenizer")


def settings(lengths: str = "long") -> dict:
    q, p = LENGTHS[lengths]
    return {"query_prefix": "query: ", "passage_prefix": "passage: ", "query_max_length": q, "passage_max_length": p}


def assert_same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):  # tokenised: every tensor bit-identical, same dtype and padded shape
            assert a[key].keys() == b[key].keys() == {"input_ids", "attention_mask"}
            for name in a[key]:
                assert a[key][name].dtype == b[key][name].dtype, f"{key}.{name}"
                assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
        else:
            assert a[key] == b[key], key


def epoch_batches(groups: TrainingGroups, batch_type: str, mono_mode: str = "batch", n: int = 12) -> list:
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], 16, RATIOS[batch_type],
                                 batches_per_epoch=n, mono_mode=mono_mode, seed=5)
    return sampler.plan_epoch(0)


@pytest.mark.slow
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("batch_type, mono_mode", [("mono", "batch"), ("mono", "pair"), ("cross", "batch"), ("multi", "batch")])
def test_pretokenized_batches_equal_on_the_fly_ones(groups, tokenizer, tmp_path, lengths, batch_type, mono_mode):
    s = settings(lengths)
    on_the_fly = PairCollator(groups, tokenizer, **s)
    cached = PairCollator(groups, tokenizer, **s, pretokenized=pretokenize(groups, tokenizer, **s, cache_dir=tmp_path))
    batches = epoch_batches(groups, batch_type, mono_mode)
    assert {b[0].batch_type for b in batches} == {batch_type}
    for refs in batches:
        assert_same_batch(cached(refs), on_the_fly(refs))
    if lengths == "short":  # the truncation really happened, so equality covers it
        assert on_the_fly(batches[0])["positive"]["input_ids"].shape[1] == LENGTHS["short"][1]


def test_left_padding_tokenizers_match_too(few, tokenizer, tmp_path):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    s = settings()
    on_the_fly, cached = PairCollator(few, left, **s), PairCollator(few, left, **s, pretokenized=pretokenize(few, left, **s, cache_dir=tmp_path))
    refs = epoch_batches(few, "multi", n=1)[0]
    assert on_the_fly(refs)["query"]["attention_mask"][:, 0].min() == 0  # really padded on the left
    assert_same_batch(cached(refs), on_the_fly(refs))


def test_distillation_pivots_come_from_the_cache_too(groups, tokenizer, tmp_path):
    # Drop the pivot language from every third id, so the pair's own language stands in for it.
    pairs = [{lang: p for lang, p in g.items() if not (i % 3 == 0 and lang == "en")} for i, g in enumerate(groups.pairs)]
    partial = TrainingGroups(ids=groups.ids, pairs=pairs)
    s = settings()
    on_the_fly = PairCollator(partial, tokenizer, **s, pivot_lang="en")
    cached = PairCollator(partial, tokenizer, **s, pivot_lang="en", pretokenized=pretokenize(partial, tokenizer, **s, cache_dir=tmp_path))
    for refs in epoch_batches(partial, "multi") + epoch_batches(partial, "cross"):
        batch = cached(refs)
        assert "pivot_query" in batch and "pivot_positive" in batch
        assert_same_batch(batch, on_the_fly(refs))


def test_second_build_loads_the_cache_file_without_tokenising(few, tokenizer, tmp_path, monkeypatch):
    s = settings()
    first = pretokenize(few, tokenizer, **s, cache_dir=tmp_path)
    assert first.cache_file.is_file() and first.cache_file.parent == tmp_path / "pretokenized"

    def no_tokenising(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(pretokenize_module, "tokenize", no_tokenising)
    # A fresh copy of the tokenizer, as another process would load: the fingerprint is its content.
    second = pretokenize(few, copy.deepcopy(tokenizer), **s, cache_dir=tmp_path)
    assert second.fingerprint == first.fingerprint and second.cache_file == first.cache_file
    assert list(tmp_path.joinpath("pretokenized").glob("*.arrow")) == [first.cache_file]
    for g, lang in [(0, "en"), (5, "th"), (len(few) - 1, "zh")]:
        assert second.query_ids(g, lang) == first.query_ids(g, lang)
        assert second.positive_ids(g, lang) == first.positive_ids(g, lang)


def test_fingerprint_changes_with_texts_and_settings_not_with_tokenizer_call_state(few, tokenizer, tmp_path):
    s = settings()
    base = pretokenize(few, tokenizer, **s, cache_dir=tmp_path).fingerprint
    fp = tokenizer_fingerprint(tokenizer)
    tokenize(tokenizer, ["a call that leaves other truncation set"], "", 7)
    assert tokenizer_fingerprint(tokenizer) == fp
    edited = TrainingGroups(ids=few.ids, pairs=[dict(p) for p in few.pairs])
    edited.pairs[3]["de"] = Pair(query=few.pairs[3]["de"].query + "?", positive=few.pairs[3]["de"].positive)
    others = {
        pretokenize(edited, tokenizer, **s, cache_dir=tmp_path).fingerprint,
        pretokenize(few, tokenizer, **{**s, "passage_max_length": 100}, cache_dir=tmp_path).fingerprint,
        pretokenize(few, tokenizer, **{**s, "query_prefix": ""}, cache_dir=tmp_path).fingerprint,
    }
    assert base not in others and len(others) == 3


def test_collator_refuses_ids_built_with_other_settings(few, tokenizer, tmp_path):
    ids = pretokenize(few, tokenizer, **settings("short"), cache_dir=tmp_path)
    with pytest.raises(BatchmixError, match="pretokenized ids were built for"):
        PairCollator(few, tokenizer, **settings("long"), pretokenized=ids)


def test_collator_pickles_for_worker_processes(few, tokenizer, tmp_path):
    s = settings()
    collator = PairCollator(few, tokenizer, **s, pivot_lang="de", pretokenized=pretokenize(few, tokenizer, **s, cache_dir=tmp_path))
    clone = pickle.loads(pickle.dumps(collator))
    for refs in epoch_batches(few, "cross", n=3):
        assert_same_batch(clone(refs), collator(refs))


def test_bad_num_workers_is_a_clear_error(groups, tokenizer):
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], 8, RATIOS["multi"])
    with pytest.raises(BatchmixError, match=r"data.num_workers=-1 must be a non-negative integer"):
        HybridDataModule(groups, sampler, PairCollator(groups, tokenizer), num_workers=-1)


# ------------------------------------------------------------------------- through Lightning
class SeenBatches(L.Callback):
    """What reached the model, and the sampler's resume state right after each step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.states: list[tuple[int, int]] = []
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((batch["epoch"], batch["index"]))
        state = trainer.datamodule.sampler.state_dict()
        self.states.append((state["epoch"], state["position"]))
        self.losses.append(float(outputs["loss"]))


class CrashAfter(L.Callback):
    """A preempted job: dies after `steps` steps, before that step's checkpoint is written."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.steps:
            raise RuntimeError("preempted")


def fit(groups, tokenizer, num_workers: int, root: Path, max_epochs: int = 2, ckpt_path=None,
        checkpoint_every: int | None = None, crash_after: int | None = None) -> SeenBatches:
    """A tiny fit over 4 mixed batches per epoch; `checkpoint_every`: save last.ckpt every that many steps
    (0: at epoch ends only; None: never)."""
    s = settings("short")  # short sequences: the model work stays small
    sampler = HybridBatchSampler([groups.langs_of(i) for i in range(len(groups))], 8, Ratio(0.4, 0.3, 0.3), batches_per_epoch=4, seed=2)
    data = HybridDataModule(groups, sampler, PairCollator(groups, tokenizer, **s), num_workers=num_workers)
    seen = SeenBatches()
    callbacks: list = [seen] + ([CrashAfter(crash_after)] if crash_after else [])
    if checkpoint_every is not None:  # Lightning runs checkpoint callbacks last, after CrashAfter
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True, save_top_k=0, every_n_train_steps=checkpoint_every))
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=checkpoint_every is not None, default_root_dir=root, callbacks=callbacks,
    )
    try:
        # Frozen embeddings: the 250k-token table then has no optimizer state to checkpoint.
        trainer.fit(tiny_encoder(dropout=0.1, freeze_embeddings=True), datamodule=data, ckpt_path=ckpt_path)
    except RuntimeError as err:
        assert crash_after and "preempted" in str(err)
    return seen


def test_workers_feed_the_same_batches_and_resume_positions_over_epochs(groups, tokenizer, tmp_path):
    """The sampler runs ahead of the model by the prefetch (more with workers); the resume state
    must still count consumed batches, epoch 2 must restart the schedule, and dropout must see the
    same random stream with persistent workers as without."""
    plain, workers = fit(groups, tokenizer, 0, tmp_path / "w0"), fit(groups, tokenizer, 2, tmp_path / "w2")
    expected = [(e, i) for e in range(2) for i in range(4)]
    assert plain.seen == workers.seen == expected
    assert plain.states == workers.states == [(e, i + 1) for e, i in expected]
    assert workers.losses == plain.losses
    assert not multiprocessing.active_children()  # the persistent workers were shut down with the fit


@pytest.mark.parametrize("num_workers", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_resume_continues_the_schedule(groups, tokenizer, tmp_path, num_workers):
    # From an epoch-end checkpoint: the next epoch, whole.
    first = fit(groups, tokenizer, num_workers, tmp_path / "a", max_epochs=1, checkpoint_every=0)
    assert first.seen == [(0, i) for i in range(4)]
    resumed = fit(groups, tokenizer, num_workers, tmp_path / "a", ckpt_path=tmp_path / "a" / "last.ckpt")
    assert resumed.seen == [(1, i) for i in range(4)]
    # From a mid-epoch checkpoint (step 2's; the job died in step 3 before saving it): from batch 2 on.
    first = fit(groups, tokenizer, num_workers, tmp_path / "b", checkpoint_every=2, crash_after=3)
    assert first.seen == [(0, 0), (0, 1), (0, 2)]
    resumed = fit(groups, tokenizer, num_workers, tmp_path / "b", ckpt_path=tmp_path / "b" / "last.ckpt")
    assert resumed.seen == [(0, 2), (0, 3)] + [(1, i) for i in range(4)]


@pytest.mark.slow
def test_pretokenize_and_workers_give_identical_training_runs(tmp_path, xquad_root, monkeypatch):
    """Through `train(cfg)` with dropout on, two epochs: the loss history is bit-for-bit the same."""
    from batchmix.run.train import train

    monkeypatch.setattr(pretokenize_module, "cache_root", lambda cache_dir=None: tmp_path / "cache")
    histories = {}
    # (False, 2), the tokenizer inside workers, is covered by the Lightning-level test above.
    for pretok, workers in [(False, 0), (True, 0), (True, 2)]:
        run = tmp_path / f"{pretok}-{workers}"
        cfg = compose_cfg(TINY + FAST + ["eval.before=false", "trainer.max_epochs=2", "data.batches_per_epoch=3",
                                         f"data.pretokenize={str(pretok).lower()}", f"data.num_workers={workers}"])
        train(cfg, run)
        histories[pretok, workers] = pd.read_csv(run / "history.csv")
        sampler_state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["HybridDataModule"]["sampler"]
        assert (sampler_state["epoch"], sampler_state["position"]) == (1, 3)
    assert list(tmp_path.joinpath("cache", "pretokenized").glob("*.arrow")), "data.pretokenize=true did not use the cache"
    base = histories[False, 0]
    assert list(base["epoch"]) == [0, 0, 0, 1, 1, 1]
    for key, history in histories.items():
        pd.testing.assert_frame_equal(history, base, check_exact=True, obj=str(key))
