"""Command-line entry points: `batchmix <subcommand>` (one console script), `python train.py` /
`batchmix-train`, `python eval.py` / `batchmix-eval`: Hydra in, one clear line out on error."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError, error_line, exit_on_error
from batchmix.core.console import quiet_console
from batchmix.run.preflight import check_writable, validate_eval, validate_train


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _train(cfg: DictConfig) -> float:
    global _task_started
    _task_started = True
    with exit_on_error():
        checked = validate_train(cfg, warn=True)  # cheap checks first (no file read): a typo costs a second, not a Lightning import
        from batchmix.run.train import train  # heavy imports only once the config is known to be sane
        quiet_console()  # each log line once, no third-party tips (batchmix/core/console.py)

        return train(cfg, HydraConfig.get().runtime.output_dir, checked)["objective"]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def _eval(cfg: DictConfig) -> float:
    global _task_started
    _task_started = True
    with exit_on_error():
        validate_eval(cfg)  # a wrong data.root, language or option fails before the model loads
        from batchmix.run.evaluate import evaluate
        quiet_console()

        return evaluate(cfg, HydraConfig.get().runtime.output_dir, validated=True)["metrics"].get("map/multi", float("nan"))


class RunDirCheck(Callback):
    """Hydra callback (`hydra.callbacks.run_dir_check` in conf/train.yaml and conf/eval.yaml): an
    unwritable `hydra.run.dir` / `hydra.sweep.dir` is answered with one line before Hydra creates
    the dir itself, where the failure would end in a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(path: Any, key: str) -> None:
        with exit_on_error():  # Hydra turns a callback's exception into a warning: exit here
            check_writable(Path(str(path)), key)


_task_started = False  # the task function was called: the config composed, so what follows is no input error


@contextmanager
def config_errors_in_one_line() -> Iterator[None]:
    """A value of the wrong type or an unknown key, refused by Hydra while it composes the config (the
    schemas of batchmix/config/schema.py), as batchmix's one line and status 2: Hydra would print it
    over several lines and exit 1. HYDRA_FULL_ERROR lets the exception reach this block; one raised
    once the task runs keeps its traceback."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (ConfigCompositionException, OmegaConfBaseException) as err:
        if _task_started:
            raise
        lines = [str(e).splitlines()[0].strip() for e in (err, err.__cause__) if e is not None and str(e)]
        sys.exit(error_line(f"{': '.join(lines)} (the keys and their types: docs/config.md)"))
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def train_main() -> None:
    with config_errors_in_one_line():
        _train()


def eval_main() -> None:
    with config_errors_in_one_line():
        _eval()


def export_main(argv: list[str] | None = None) -> int:
    """`batchmix export <run dir | model/ | .ckpt> --to DIR`: a sentence-transformers folder (models/st_export.py)."""
    parser = argparse.ArgumentParser(prog="batchmix export", description="write a trained batchmix model as a folder "
                                     "sentence_transformers.SentenceTransformer(DIR) loads as it is")
    parser.add_argument("source", help="a batchmix run dir, its model/ folder, or a Lightning .ckpt")
    parser.add_argument("--to", required=True, metavar="DIR", help="a new (or empty) folder to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from hydra import compose, initialize_config_dir

        from batchmix.models.st_export import export_sentence_transformers

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            default_model = compose("eval").model  # what eval.py assumes where a copied-away model/ records nothing
        print(export_sentence_transformers(args.source, args.to, default_model))
    except BatchmixError as err:
        return error_line(err)
    return 0


# `batchmix <name> ...`: (module, function, kind, help line). "hydra": a Hydra main that reads its overrides from
# sys.argv; "argv": a main(argv) -> exit code. The `python -m batchmix.<module>` forms keep working.
SUBCOMMANDS = {
    "train": ("batchmix.run.cli", "train_main", "hydra", "train a dual encoder (python train.py; Hydra overrides)"),
    "eval": ("batchmix.run.cli", "eval_main", "hydra", "evaluate a model or run on every LAReQA setting (python eval.py)"),
    "export": ("batchmix.run.cli", "export_main", "argv", "a run's model as a sentence-transformers folder"),
    "warm": ("batchmix.run.warm", "_main", "hydra", "fill the trunk cache once before a top-K sweep (train.py's overrides)"),
    "mine": ("batchmix.run.mine", "main", "hydra", "mine hard negatives into a training JSONL (conf/mine.yaml)"),
    "dry-run": ("batchmix.run.sweep.dry_run", "main", "hydra", "a sweep's plumbing with synthetic metrics, no training"),
    "report": ("batchmix.report.__main__", "main", "argv", "the HTML report (and study Markdown) of a sweep or study"),
    "study": ("batchmix.report.studies.ratio_study", "main", "argv", "collect a ratio study's run folders into its CSVs"),
    "prune-vocab": ("batchmix.models.embedded.vocab_subset", "main", "argv", "a packed model whose vocabulary covers given corpora"),
}


def main(argv: list[str] | None = None) -> int:
    """The `batchmix` console script: dispatch to a subcommand, each of which answers bad input in one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, SUBCOMMANDS))
        print("usage: batchmix <subcommand> [arguments]   (batchmix <subcommand> --help for each)\n")
        print("\n".join(f"  {name:<{width}}  {entry[3]}" for name, entry in SUBCOMMANDS.items()))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        return error_line(f"no subcommand {name!r}; use one of {', '.join(SUBCOMMANDS)} (batchmix --help)")
    module, function, kind, _ = SUBCOMMANDS[name]
    entry = getattr(importlib.import_module(module), function)
    if kind == "argv":
        return int(entry(rest) or 0)
    sys.argv = [f"batchmix {name}", *rest]  # Hydra reads its overrides (and --help, -m, --cfg) from sys.argv
    with config_errors_in_one_line():
        entry()
    return 0


def console_main() -> None:
    sys.exit(main())
