"""The bad-input catalogue (issue #7): each impossible input, given to the real CLI, is answered by one
line that names the bad value and the fix, a non-zero exit and no traceback; the ones that need no
model fail before any model loads (most before any data is read). An unreachable W&B server is the
one input that must *not* stop a run: it falls back to offline with a warning, and never hangs.

Cases (id: the input -> what the `batchmix: error:` line must name). `train.py` unless marked eval.py.

Config, rejected before any file is read:
  ratio_negative             ratio.mono=-0.2                       -> mono=-0.2, every share >= 0
  ratio_not_summing_to_one   ratio.mono=0.5 ratio.cross=0.6        -> sums to 1.1, make them sum to 1
  ratio_not_a_number         ratio.mono=lots                       -> ratio.mono='lots', e.g. ratio.mono=0.5
  unknown_loss               loss._target_=batchmix.losses.TripletLoss -> the target, loss=infonce
  unknown_pooling            model.pooling=max                     -> 'max', model.pooling=mean
  unknown_eval_candidates    eval.candidates=paragraph             -> 'paragraph', eval.candidates=sentence
  negative_lr                optim.lr=-1e-05                       -> optim.lr=-1e-05, > 0
  bad_mono_mode              data.sampler.mono_mode=pairs          -> 'pairs', mono_mode=batch or pair
  split_not_summing_to_one   data.split.train=0.5                  -> sum to 0.7, data.split.train=0.8
  empty_eval_split           data.split.test=0 (train 0.9)         -> eval.split='test', data.split.test=0.1
  data_root_missing          data.root=<tmp>/no_such_dir           -> the path, data.root=
  unknown_language           data.languages=[en,xx]                -> xx, the languages that exist
  languages_filter_to_none   data.languages=[]                     -> data.languages is empty, an example
  train_file_missing         data.train_file=<tmp>/missing.jsonl   -> the path, a JSONL file
  unwritable_output_dir      hydra.run.dir=<a path under a file>   -> the path, hydra.run.dir=
  bad_optuna_storage         -m hparams_search=ratio_optuna hydra.sweeper.storage=<bad url>
                                                                   -> the URL, hydra.sweeper.storage
  eval_unknown_language      eval.py data.languages=[en,xx]        -> xx, the languages that exist
  eval_checkpoint_missing    eval.py checkpoint=<tmp>/no_run       -> the path, a run dir / .ckpt
Data, rejected while the data loads (before the model):
  malformed_json             de.json with a stray comma            -> de.json, line and column
  truncated_json             de.json cut in half                   -> de.json, line/column, truncated
  lareqa_without_sentences   a paragraph without `sentences`       -> file, article, LAReQA format
  answer_outside_context     answer_start=9999                     -> file, question id, 9999
  empty_split_too_few_articles  2 articles for 3 splits            -> 2 article group(s), data.split.val=0
  jsonl_malformed_row        data.train_file with a broken line 2  -> pairs.jsonl:2, one JSON row
  too_few_hard_negatives     data.hard_negatives=4, ids with 3     -> data.hard_negatives=4, the pair, mine more
  cross_with_one_language    data.languages=[en], ratio 0.5/0.5/0  -> cross=0.5 is impossible, ratio.cross=0
  batch_larger_than_ids      data.batch_size=500 (12 training ids) -> batch_size=500, distinct training ids
Model:
  unknown_model_offline      model.name_or_path=nobody/no-such-encoder, HF_HUB_OFFLINE=1
                                                                   -> the name, the hub, a local directory
Runs anyway:
  wandb_unreachable          logger=wandb, WANDB_BASE_URL=http://127.0.0.1:9 (closed), a fake key
                                                                   -> warning, offline run, metrics.json

All cases run as subprocesses, two at a time, in one module fixture (timings are printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "de", "es")
TRAIN_TINY = ("model=tiny", "logger=none", "data.batch_size=4", "data.batches_per_epoch=2", "save_model=false",
              "eval.before=false", "eval.trec=false")
EVAL_TINY = ("model=tiny", "eval.trec=false")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}
ERROR_PREFIX = "batchmix: error:"

COST = {"runs": 0, "model": 1, "data": 2, "config": 3}  # longest first: two workers finish together


# ------------------------------------------------------------------------------------ synthetic data


def lareqa_document(lang: str, n_articles: int = 6, n_sentences: int = 3) -> dict:
    """A small valid LAReQA file: one paragraph per article, one question per sentence (ids shared
    across languages, so 6 articles are 6 article groups: 4 train / 1 val / 1 test, 12 training ids)."""
    articles = []
    for a in range(n_articles):
        sentences = [f"Sentence {k} of article {a} in {lang} states fact {a}-{k}." for k in range(n_sentences)]
        starts = [sum(len(s) + 1 for s in sentences[:k]) for k in range(n_sentences)]
        qas = [{"id": f"q{a}-{k}", "question": f"What is fact {a}-{k} ({lang})?",
                "answers": [{"text": sentences[k][:8], "answer_start": starts[k]}]} for k in range(n_sentences)]
        paragraph = {"context": " ".join(sentences), "sentences": sentences,
                     "sentence_breaks": [[b, b + len(s)] for b, s in zip(starts, sentences)], "qas": qas}
        articles.append({"title": f"Article {a}", "paragraphs": [paragraph]})
    return {"version": "synthetic", "data": articles}


def write_root(root: Path, n_articles: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        (root / f"{lang}.json").write_text(json.dumps(lareqa_document(lang, n_articles), indent=1), encoding="utf-8")
    return root


def _edit_de(root: Path, edit: Callable[[dict], None]) -> None:
    doc = lareqa_document("de")
    edit(doc)
    (root / "de.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


def malformed_json(root: Path) -> None:
    path = root / "de.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"answer_start": ', '"answer_start": ,', 1), encoding="utf-8")


def truncated_json(root: Path) -> None:
    path = root / "de.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def without_sentences(root: Path) -> None:
    _edit_de(root, lambda doc: doc["data"][1]["paragraphs"][0].pop("sentences"))


def answer_outside_context(root: Path) -> None:
    _edit_de(root, lambda doc: doc["data"][2]["paragraphs"][0]["qas"][1]["answers"][0].update(answer_start=9999))


def two_articles(root: Path) -> None:
    write_root(root, n_articles=2)


def jsonl_with_broken_line(root: Path) -> None:
    rows = [json.dumps({"id": "p1", "lang": lang, "query": f"q {lang}", "positive": f"p {lang}"}) for lang in LANGS]
    rows[1] = rows[1][:-9]  # line 2 loses its closing characters
    (root.parent / "pairs.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def jsonl_with_one_negative(root: Path) -> None:
    rows = [json.dumps({"id": f"p{i}", "lang": lang, "query": f"q{i} {lang}", "positive": f"p{i} {lang}", "negatives": [f"n{i} {lang}"]})
            for i in range(4) for lang in LANGS]
    (root.parent / "negatives.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def file_in_the_way(root: Path) -> None:
    (root.parent / "a_file").write_text("not a folder")


# ------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One bad input. `args` may use {root} (a valid synthetic LAReQA folder, edited by `prepare`) and
    {tmp} (the case's own folder). `stage`: config = fails before any file is read (no run config
    written); data = while the data loads; model = loading the model; runs = must succeed anyway."""

    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    stage: str = "config"
    script: str = "train.py"
    prepare: Callable[[Path], None] | None = None
    env: dict[str, str | None] = field(default_factory=dict)


CASES = [
    Case("ratio_negative", ("ratio.mono=-0.2",), ("mono=-0.2", "every share must be >= 0")),
    Case("ratio_not_summing_to_one", ("ratio.mono=0.5", "ratio.cross=0.6"), ("sums to 1.1", "make the shares sum to 1")),
    Case("ratio_not_a_number", ("ratio.mono=lots",), ("ratio.mono='lots'", "e.g. ratio.mono=0.5")),
    Case("unknown_loss", ("loss._target_=batchmix.losses.TripletLoss",),
         ("loss._target_='batchmix.losses.TripletLoss'", "loss=distill_mse, loss=infonce, loss=mse")),
    Case("unknown_pooling", ("model.pooling=max",), ("model.pooling='max'", "model.pooling=mean")),
    Case("unknown_eval_candidates", ("eval.candidates=paragraph",), ("eval.candidates='paragraph'", "eval.candidates=sentence")),
    Case("negative_lr", ("optim.lr=-1e-05",), ("optim.lr=-1e-05", "must be a number > 0")),
    Case("bad_mono_mode", ("data.sampler.mono_mode=pairs",), ("'pairs'", "data.sampler.mono_mode=batch or pair")),
    Case("split_not_summing_to_one", ("data.split.train=0.5",), ("sum to 0.7", "data.split.train=0.8")),
    Case("empty_eval_split", ("data.split.train=0.9", "data.split.test=0"), ("eval.split='test'", "data.split.test=0.1")),
    Case("data_root_missing", ("data.root={tmp}/no_such_dir",), ("no_such_dir", "data.root=")),
    Case("unknown_language", ("data.languages=[en,xx]",), ("xx", "available there: de, en, es")),
    Case("languages_filter_to_none", ("data.languages=[]",), ("data.languages is empty", "data.languages=[en,de]")),
    Case("train_file_missing", ("data.train_file={tmp}/missing.jsonl",), ("missing.jsonl", "JSONL file")),
    Case("unwritable_output_dir", ("hydra.run.dir={tmp}/a_file/run",), ("a_file/run", "hydra.run.dir=<a writable folder>"),
         prepare=file_in_the_way),
    Case("bad_optuna_storage", ("-m", "hparams_search=ratio_optuna", "hydra.sweeper.n_trials=1",
                                "hydra.sweeper.storage=nosuchdb://nowhere/study"),
         ("nosuchdb://nowhere/study", "hydra.sweeper.storage")),
    Case("eval_unknown_language", ("data.languages=[en,xx]",), ("xx", "available there: de, en, es"), script="eval.py"),
    Case("eval_checkpoint_missing", ("checkpoint={tmp}/no_run",), ("no_run", "give a batchmix run dir"), script="eval.py"),
    Case("malformed_json", (), ("de.json is not valid JSON (line ", "column ", "malformed or truncated"),
         stage="data", prepare=malformed_json),
    Case("truncated_json", (), ("de.json is not valid JSON (line ", "char ", "malformed or truncated, re-download"),
         stage="data", prepare=truncated_json),
    Case("lareqa_without_sentences", (), ("de.json: article 1", "no 'sentences'", "LAReQA format"),
         stage="data", prepare=without_sentences),
    Case("answer_outside_context", (), ("de.json: question q2-1", "answer_start=9999 outside its context", "re-download"),
         stage="data", prepare=answer_outside_context),
    Case("empty_split_too_few_articles", (), ("cannot split 2 article group(s) into 3 non-empty splits", "data.split.val=0"),
         stage="data", prepare=two_articles),
    Case("jsonl_malformed_row", ("data.train_file={tmp}/pairs.jsonl",), ("pairs.jsonl:2", "each line must be one JSON row"),
         stage="data", prepare=jsonl_with_broken_line),
    # one negative per row, three languages per id: 3 per query (its own row's first, then the id's other rows)
    Case("too_few_hard_negatives", ("data.train_file={tmp}/negatives.jsonl", "data.hard_negatives=4", "data.batch_size=4"),
         ("data.hard_negatives=4 (data.negatives_lang=any)", "pairs have fewer", "batchmix mine"),
         stage="data", prepare=jsonl_with_one_negative),
    Case("cross_with_one_language", ("data.languages=[en]",), ("cross=0.5 is impossible", "ratio.cross=0"), stage="data"),
    Case("batch_larger_than_ids", ("data.batch_size=500",), ("batch_size=500", "distinct training ids (12)"), stage="data"),
    Case("unknown_model_offline", ("model.name_or_path=nobody/no-such-encoder",),
         ("'nobody/no-such-encoder'", "hub", "model.name_or_path at a local"), stage="model"),
    Case("wandb_unreachable", ("logger=wandb", "logger.probe_timeout=2"),
         ("W&B: http://127.0.0.1:9 is unreachable -> logging offline", "wandb sync"), stage="runs",
         env={"WANDB_MODE": None, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "f" * 40}),
]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    run_dir: Path


def _run_case(case: Case, tmp: Path) -> Result:
    root = write_root(tmp / "data")
    if case.prepare is not None:
        case.prepare(root)
    args = [a.format(root=root, tmp=tmp) for a in case.args]
    multirun = "-m" in args
    args = [a for a in args if a != "-m"]
    run_dir = tmp / "run"
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    if multirun:
        args.append(f"hydra.sweep.dir={run_dir}")
    overridden = {a.split("=", 1)[0] for a in args}
    tiny = [a for a in (TRAIN_TINY if case.script == "train.py" else EVAL_TINY) if a.split("=", 1)[0] not in overridden]
    if "data.root" not in overridden:
        tiny.append(f"data.root={root}")
    env = {**os.environ, **OFFLINE_ENV, "WANDB_DIR": str(tmp), "WANDB_CONFIG_DIR": str(tmp / "wandb_config"),
           "WANDB_CACHE_DIR": str(tmp / "wandb_cache"), "WANDB_DATA_DIR": str(tmp / "wandb_data")}
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    command = [sys.executable, str(REPO / case.script), *(["-m"] if multirun else []), *tiny, *args]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start, run_dir)


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> dict[str, Result]:
    """Run every selected case, two subprocesses at a time (2 cores), and print the timings."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    cases = [c for c in CASES if c.id in selected] or CASES
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(_run_case, c, tmp_path_factory.mktemp(c.id)) for c in sorted(cases, key=lambda c: COST[c.stage])}
        out = {case_id: future.result() for case_id, future in futures.items()}
    total = time.perf_counter() - start
    lines = [f"{c.id:<30} {c.stage:<7} {out[c.id].seconds:5.1f}s  rc={out[c.id].returncode}" for c in cases]
    report = "\n".join(["", "bad-input catalogue timings:", *lines, f"{len(cases)} cases in {total:.1f}s wall (2 workers)"])
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(report)
    else:
        with capture.global_and_fixture_disabled():  # shown without -s
            print(report)
    return out


def test_catalogue_lists_every_case():
    """The module docstring is the catalogue's index: every case is listed there, and ids are unique."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) >= 15
    missing = [i for i in ids if f"\n  {i} " not in __doc__]
    assert not missing, f"cases not listed in the module docstring: {missing}"


@pytest.mark.slow  # ~30 CLI subprocesses: about a minute on 2 idle cores (the fixture prints the timings)
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in CASES]
)
def test_bad_input(case: Case, results: dict[str, Result]):
    res = results[case.id]
    output = res.stdout + res.stderr
    assert "Traceback" not in output, output[-3000:]
    if case.stage == "runs":
        assert res.returncode == 0, output[-3000:]
        for fragment in case.expect:
            assert fragment in output, output[-3000:]
        assert (res.run_dir / "metrics.json").is_file()
        assert list((res.run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
        return
    assert res.returncode != 0, output[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(ERROR_PREFIX), res.stderr[-3000:]
    assert sum(line.startswith(ERROR_PREFIX) for line in lines) == 1, res.stderr[-3000:]
    for fragment in case.expect:
        assert fragment in lines[-1], (fragment, lines[-1])
    # Failed fast: no model was trained (no checkpoint dir); config cases stopped before train() began.
    assert not (res.run_dir / "checkpoints").exists()
    assert not (res.run_dir / "metrics.json").exists()
    if case.stage == "config":
        assert not (res.run_dir / "config.yaml").exists(), "a config error got past the config checks"
        assert not list(res.run_dir.glob("[0-9]*")), "a sweep with a bad setting launched jobs"
