"""Evaluation outputs: metrics.json, the language-pair mAP matrix (CSV + PNG) and TREC run/qrels
files that ranx, as an outside scorer, turns back into our metrics."""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ranx
import torch

from batchmix.data.corpus import LanguageSet, LAReQACorpus
from batchmix.core.errors import BatchmixError
from batchmix.eval.scoring import evaluate_embeddings
from batchmix.eval.metrics import metric_names
from batchmix.eval.outputs import write_outputs
from batchmix.eval.trec import RunCollector, write_trec
from embeddings import bag_of_trigrams, random_xquad_sized, trigram_xquad_slice

pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _metric_key(setting: str, metric: str = "map") -> str:
    """TREC file stem -> metrics key: multi -> map/multi, mono.de -> map/mono/de, cross.de-en -> map/cross/de-en."""
    return f"{metric}/" + setting.replace(".", "/", 1)


def _settings_on_disk(trec_dir: Path) -> set[str]:
    runs = {p.name[: -len(".run")] for p in trec_dir.glob("*.run")}
    assert runs == {p.name[: -len(".qrels")] for p in trec_dir.glob("*.qrels")}
    return runs


def _ranx_scores(trec_dir: Path, setting: str, metrics: list[str]) -> dict[str, float]:
    qrels = ranx.Qrels.from_file(str(trec_dir / f"{setting}.qrels"), kind="trec")
    run = ranx.Run.from_file(str(trec_dir / f"{setting}.run"), kind="trec")
    assert set(run.keys()) == set(qrels.keys()), setting
    out = ranx.evaluate(qrels, run, metrics)
    return out if isinstance(out, dict) else {metrics[0]: out}


def _run_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep=" ", header=None, names=["qid", "q0", "doc", "rank", "score", "tag"], dtype={"qid": str, "doc": str})


def _no_ties(runs: RunCollector, corpus: LAReQACorpus) -> None:
    """Premise of the ranx comparisons: outside scorers order ties their own way."""
    for x in corpus.langs:
        assert (np.diff(runs.multi(x).scores, axis=1) < 0).all()


@pytest.fixture(scope="module")
def xquad_slice(xquad_root):
    return trigram_xquad_slice(xquad_root)


@pytest.fixture(scope="module")
def full_depth_outputs(xquad_slice, tmp_path_factory):
    corpus, q_emb, c_emb = xquad_slice
    runs = RunCollector(depth=None)
    metrics = evaluate_embeddings(corpus, q_emb, c_emb, progress=False, runs=runs)
    _no_ties(runs, corpus)
    out = tmp_path_factory.mktemp("full")
    write_outputs(out, corpus, metrics, runs, title="trigrams full")
    return corpus, metrics, out


@pytest.mark.slow
def test_ranx_on_full_depth_files_reproduces_every_setting(full_depth_outputs):
    corpus, metrics, out = full_depth_outputs
    langs = corpus.langs
    expected = {"multi"} | {f"mono.{x}" for x in langs} | {f"cross.{x}-{y}" for x in langs for y in langs if x != y}
    assert _settings_on_disk(out / "trec") == expected
    for setting in sorted(expected):
        scored = _ranx_scores(out / "trec", setting, list(metric_names()))
        for metric in metric_names():
            assert scored[metric] == pytest.approx(metrics[_metric_key(setting, metric)], abs=1e-6), (setting, metric)
    # Sanity of the slice: trigrams work within a language, hardly across.
    assert metrics["map/mono"] > 0.3 > metrics["map/cross"]


def test_full_depth_files_hold_every_query_and_candidate(full_depth_outputs):
    corpus, _, out = full_depth_outputs
    n_pool = sum(len(ls.candidates) for ls in corpus.languages.values())
    n_questions = sum(len(ls.questions) for ls in corpus.languages.values())
    multi = _run_table(out / "trec" / "multi.run")
    assert len(multi) == n_questions * n_pool and multi["qid"].nunique() == n_questions
    de = corpus.languages["de"]
    cross = _run_table(out / "trec" / "cross.en-de.run")
    assert len(cross) == len(corpus.languages["en"].questions) * len(de.candidates)
    assert set(cross["doc"]) == {f"de.{i}" for i in range(len(de.candidates))}
    qrels = (out / "trec" / "cross.en-de.qrels").read_text().splitlines()
    answer_of = dict(zip(de.question_ids, de.answer_index))
    qid = corpus.languages["en"].question_ids[0]
    assert qrels[0] == f"{qid}.en 0 de.{answer_of[qid]} 1"
    multi_qrels = (out / "trec" / "multi.qrels").read_text().splitlines()
    assert len(multi_qrels) == 3 * n_questions  # XQuAD-R is parallel: every id answered in all 3 languages
    assert "full ranking" in (out / "trec" / "README.txt").read_text()


def test_matrix_csv_equals_mono_and_cross_metrics(full_depth_outputs):
    corpus, metrics, out = full_depth_outputs
    matrix = pd.read_csv(out / "map_matrix.csv", index_col=0)
    assert matrix.index.name == "query_lang"
    assert list(matrix.index) == corpus.langs and list(matrix.columns) == corpus.langs
    for x in corpus.langs:
        for y in corpus.langs:
            key = f"map/mono/{x}" if x == y else f"map/cross/{x}-{y}"
            assert matrix.loc[x, y] == metrics[key], key  # written at full precision


def test_metrics_json_and_png(full_depth_outputs):
    _, metrics, out = full_depth_outputs
    assert json.loads((out / "metrics.json").read_text()) == metrics
    png = (out / "map_matrix.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # IHDR
    assert 300 <= width <= 2000 and 300 <= height <= 2000
    from matplotlib.image import imread

    pixels = imread(out / "map_matrix.png")
    assert pixels.shape[:2] == (height, width) and pixels[..., :3].std() > 0.1
    assert not list(out.rglob(".*.tmp"))  # atomic writes left no temp files


def test_depth_k_runs_are_the_top_k_of_the_full_ranking(xquad_slice, full_depth_outputs, tmp_path):
    corpus, q_emb, c_emb = xquad_slice
    _, full_metrics, full_out = full_depth_outputs
    k = 10
    runs = RunCollector(depth=k)
    metrics = evaluate_embeddings(corpus, q_emb, c_emb, progress=False, runs=runs)
    assert metrics == full_metrics  # collecting runs never changes a metric
    write_trec(tmp_path, corpus, runs, tag="k10")
    assert _settings_on_disk(tmp_path) == _settings_on_disk(full_out / "trec")
    for setting in sorted(_settings_on_disk(tmp_path)):
        table = _run_table(tmp_path / f"{setting}.run")
        full = _run_table(full_out / "trec" / f"{setting}.run")
        per_query = table.groupby("qid", sort=False)
        assert per_query.size().max() <= k and (per_query.size() == k).all()
        assert (per_query["rank"].apply(list) == [list(range(1, k + 1))] * per_query.ngroups).all()
        assert per_query["score"].apply(lambda s: bool((np.diff(s.to_numpy()) < 0).all())).all()
        top = full[full["rank"] <= k].reset_index(drop=True)
        pd.testing.assert_frame_equal(table.drop(columns="tag"), top.drop(columns="tag"))
        assert (tmp_path / f"{setting}.qrels").read_text() == (full_out / "trec" / f"{setting}.qrels").read_text()
        # Cutoff metrics within the depth match ours; truncated mAP is a lower bound.
        scored = _ranx_scores(tmp_path, setting, ["recall@1", "recall@5", "recall@10", "ndcg@10", "map"])
        for metric in ("recall@1", "recall@5", "recall@10", "ndcg@10"):
            assert scored[metric] == pytest.approx(metrics[_metric_key(setting, metric)], abs=1e-6), (setting, metric)
        assert scored["map"] <= metrics[_metric_key(setting)] + 1e-9
    assert set(_run_table(tmp_path / "multi.run")["tag"]) == {"k10"}
    assert "top 10 candidates" in (tmp_path / "README.txt").read_text()


# ----------------------------------------------------------------------------- MLQA-R-like toy

# Every id exists in 2 of 3 languages; Arabic and German share none, so ar-de / de-ar have no
# answerable question and en questions i3-i5 are skipped in en-ar (i0-i2 in en-de).
LAYOUT = {"ar": ["i0", "i1", "i2"], "de": ["i3", "i4", "i5"], "en": ["i0", "i1", "i2", "i3", "i4", "i5"]}


def _toy(seed: int = 0, distractors: int = 9):
    gen = torch.Generator().manual_seed(seed)
    sets, q_emb, c_emb = {}, {}, {}
    for lang, ids in LAYOUT.items():
        n = len(ids) + distractors
        answers = torch.randperm(n, generator=gen)[: len(ids)].tolist()
        sets[lang] = LanguageSet(
            lang=lang, question_ids=ids, questions=[f"{lang} {q}?" for q in ids], answer_index=answers,
            candidates=[f"{lang} sentence {i}" for i in range(n)], candidate_contexts=["p"] * n,
        )
        q_emb[lang] = torch.nn.functional.normalize(torch.randn(len(ids), 16, generator=gen, dtype=torch.float64), dim=1)
        c_emb[lang] = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen, dtype=torch.float64), dim=1)
    return LAReQACorpus("mlqa-like", sets), q_emb, c_emb


def test_pairs_without_answers_are_empty_and_skipped_questions_left_out(tmp_path):
    corpus, q_emb, c_emb = _toy()
    runs = RunCollector(depth=None)
    metrics = evaluate_embeddings(corpus, q_emb, c_emb, progress=False, runs=runs)
    _no_ties(runs, corpus)
    write_outputs(tmp_path, corpus, metrics, runs)

    csv = (tmp_path / "map_matrix.csv").read_text().splitlines()
    assert csv[0] == "query_lang,ar,de,en"
    assert re.fullmatch(r"ar,[^,]+,,[^,]+", csv[1]) and re.fullmatch(r"de,,[^,]+,[^,]+", csv[2])
    matrix = pd.read_csv(tmp_path / "map_matrix.csv", index_col=0)
    assert matrix.isna().sum().sum() == 2 and np.isnan(matrix.loc["ar", "de"]) and np.isnan(matrix.loc["de", "ar"])
    assert (tmp_path / "map_matrix.png").read_bytes().startswith(PNG_SIGNATURE)

    trec = tmp_path / "trec"
    settings = _settings_on_disk(trec)
    assert settings == {"multi", "mono.ar", "mono.de", "mono.en", "cross.ar-en", "cross.de-en", "cross.en-ar", "cross.en-de"}
    en_ar = _run_table(trec / "cross.en-ar.run")
    assert list(en_ar["qid"].unique()) == ["i0.en", "i1.en", "i2.en"]
    assert len(en_ar) == 3 * len(corpus.languages["ar"].candidates)
    assert [line.split()[0] for line in (trec / "cross.en-de.qrels").read_text().splitlines()] == ["i3.en", "i4.en", "i5.en"]
    multi_qrels = [line.split() for line in (trec / "multi.qrels").read_text().splitlines()]
    assert len(multi_qrels) == 2 * 12  # 12 questions, each answered in its 2 languages
    assert sorted(doc for q, _, doc, _ in multi_qrels if q == "i4.de") == [f"de.{corpus.languages['de'].answer_index[1]}", f"en.{corpus.languages['en'].answer_index[4]}"]
    for setting in sorted(settings):
        assert _ranx_scores(trec, setting, ["map"])["map"] == pytest.approx(metrics[_metric_key(setting)], abs=1e-6), setting


def test_the_recipe_writes_every_output_end_to_end(tmp_path):
    corpus, _, _ = _toy()
    settings = {"batch_size": 5, "candidates": "sentence", "trec": True, "trec_depth": 4}
    metrics = _evaluate_round(tmp_path / "eval", {"main": corpus}, settings, title="toy model v1")
    assert metrics == _scored(corpus)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    for name in ("map_matrix.csv", "map_matrix.png", "trec/multi.run", "trec/mono.en.qrels", "trec/README.txt"):
        assert (tmp_path / "eval" / name).is_file(), name
    multi = _run_table(tmp_path / "eval" / "trec" / "multi.run")
    assert (multi.groupby("qid").size() == 4).all() and set(multi["tag"]) == {"toy_model_v1"}


def test_bad_inputs_raise_one_line_errors(tmp_path):
    corpus, q_emb, c_emb = _toy()
    for depth in (-1, 1.5, "10", True):
        with pytest.raises(BatchmixError, match="trec_depth"):
            RunCollector(depth)

    runs = RunCollector(5)
    evaluate_embeddings(corpus, q_emb, c_emb, progress=False, runs=runs)
    other = LAReQACorpus("other", {lang: corpus.languages[lang] for lang in ("ar", "en")})
    with pytest.raises(BatchmixError, match="run collector") as err:
        write_trec(tmp_path, other, runs)
    assert "\n" not in str(err.value)
    with pytest.raises(BatchmixError, match="tag"):
        write_trec(tmp_path, corpus, runs, tag="two words")
    corpus.languages["de"].question_ids[0] = "i 3"
    with pytest.raises(BatchmixError, match="'i 3'"):
        write_trec(tmp_path, corpus, runs)


@pytest.mark.slow
def test_full_xquad_r_sized_outputs_are_written_in_seconds(tmp_path):
    """11 languages x 1190 questions x ~1200 candidates at depth 100: ~15.7M run lines."""
    corpus, q_emb, c_emb = random_xquad_sized([f"{i:024x}" for i in range(1190)])  # XQuAD ids are 24 hex digits
    runs = RunCollector(100)
    metrics = evaluate_embeddings(corpus, q_emb, c_emb, progress=False, runs=runs)
    start = time.perf_counter()
    write_outputs(tmp_path, corpus, metrics, runs, title="random")
    elapsed = time.perf_counter() - start
    try:
        assert elapsed < 120, f"writing took {elapsed:.0f}s"
        assert len(list((tmp_path / "trec").glob("*.run"))) == 1 + 11 * 11
        with open(tmp_path / "trec" / "multi.run", "rb") as f:
            assert sum(1 for _ in f) == 11 * 1190 * 100
    finally:
        shutil.rmtree(tmp_path / "trec")


def _per_text(texts):
    """Trigram embeddings that do not depend on which batch a text is in (its own jitter seed)."""
    import zlib

    return torch.cat([bag_of_trigrams([t], seed=zlib.crc32(t.encode())) for t in texts]).float() if texts else torch.empty(0, 512)


def _scored(corpus):
    """The scorer on each language's `_per_text` embeddings: the reference the recipe must equal."""
    q_emb = {lang: _per_text(ls.questions) for lang, ls in corpus.languages.items()}
    c_emb = {lang: _per_text(ls.candidates) for lang, ls in corpus.languages.items()}
    return evaluate_embeddings(corpus, q_emb, c_emb, progress=False)


def _evaluate_round(out_dir, corpora, settings, title="toy", batch_sizes=None):
    """`run.evaluate.evaluate_round`, what train.py (eval/<tag>/) and eval.py (its out dir) both run, with a
    trigram model: one Lightning validation loop over every corpus; `batch_sizes` collects its batches."""
    import lightning as L

    from batchmix.eval.validation import LAReQAValidation
    from batchmix.run.evaluate import evaluate_round

    class TrigramModel(L.LightningModule):  # what the recipe needs of a DualEncoder: tokenize, validation_step, width
        embedding_dim = 512

        def __init__(self):
            super().__init__()
            self.texts: list[str] = []

        def tokenize(self, texts, tower):
            self.texts += texts
            return {"ids": torch.arange(len(self.texts) - len(texts), len(self.texts))}

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            if batch_sizes is not None:
                batch_sizes.append(len(batch["rows"]))
            return {"rows": batch["rows"], "embeddings": _per_text([self.texts[i] for i in batch["features"]["ids"].tolist()])}

    validation, model = LAReQAValidation(), TrigramModel()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[validation], enable_progress_bar=False, enable_model_summary=False)
    return evaluate_round(trainer, validation, model, corpora, "main", out_dir, settings, title=title, tag="final")


def test_one_recipe_scores_the_main_corpus_and_every_set_into_its_own_folder(tmp_path):
    """One validation loop over every corpus, equal to the scorer called on each corpus alone."""
    main, _, _ = _toy(0)
    other, _, _ = _toy(1, distractors=4)
    settings = {"batch_size": 7, "candidates": "sentence", "trec": False, "trec_depth": 100}
    batch_sizes = []
    metrics = _evaluate_round(tmp_path / "final", {"main": main, "other-set": other}, settings, batch_sizes=batch_sizes)
    assert max(batch_sizes) == 7
    own, theirs = _scored(main), _scored(other)
    assert metrics == {**own, **{f"other-set/{k}": v for k, v in theirs.items()}}
    assert json.loads((tmp_path / "final" / "metrics.json").read_text()) == own  # the main corpus alone
    assert json.loads((tmp_path / "final" / "other-set" / "metrics.json").read_text()) == theirs
    assert (tmp_path / "final" / "other-set" / "map_matrix.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / "final" / "trec").exists()  # eval.trec=false
