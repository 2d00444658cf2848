"""What a newcomer's console shows during a run (`make demo`, on the tiny model): each log line once,
no third-party advertisement, no deprecation warning from batchmix's code, a training bar with an ETA."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from test_train import TINY

from batchmix.core.console import DropAdvertisements

REPO = Path(__file__).resolve().parents[1]
# The tests' tiny run, shorter still: two languages, two batches, no evaluation before training.
TINY_RUN = [o for o in TINY if not o.startswith(("data.languages=", "data.batches_per_epoch="))] + [
    "data.languages=[en,de]", "data.batches_per_epoch=2", "eval.before=false"]
# Hydra's "[time][logger][LEVEL] - message" and Lightning's own handler's "LEVEL: message".
HYDRA_LINE = re.compile(r"^\[[^]]+\]\[[^]]+\]\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\] - (.*)$")
BARE_LINE = re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)$")


def _log_messages(text: str) -> list[str]:
    messages = []
    for line in text.replace("\r", "\n").splitlines():
        match = HYDRA_LINE.match(line) or BARE_LINE.match(line)
        if match:
            messages.append(match.group(1))
    return messages


@pytest.mark.slow
def test_the_console_of_a_training_run(tmp_path, xquad_root):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "default"}  # also the DeprecationWarnings Python hides outside __main__
    res = subprocess.run([sys.executable, str(REPO / "train.py"), *TINY_RUN, f"data.root={xquad_root}", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    console = res.stdout + res.stderr  # one terminal shows both

    messages = _log_messages(console)
    assert any("Trainer.fit` stopped" in m for m in messages), console[-3000:]  # Lightning's lines are there ...
    repeated = [m for m, n in Counter(messages).items() if n > 1]
    assert repeated == [], f"printed more than once: {repeated}"  # ... once each, on stdout or stderr

    for advert in ("litlogger", "💡", "Tip:", "wandb leet"):
        assert advert not in console
        assert advert not in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")

    ours = [line for line in console.splitlines() if re.search(r"(DeprecationWarning|FutureWarning)", line)
            and re.search(r"[/\\](batchmix|hydra_plugins)[/\\]", line) and ".venv" not in line]
    assert ours == []
    assert "is deprecated" not in res.stderr  # nor one raised inside a library batchmix calls

    # The training bar ends with done/total, elapsed and remaining time ("2/2 0:00:03 • 0:00:00").
    assert re.search(r"Epoch 0.*\b2/2\b.*\d+:\d\d:\d\d\s+\S\s+\d+:\d\d:\d\d", console), console[-2000:]
    assert "map/multi" in res.stdout  # the metrics table is still printed


def test_advertisements_are_dropped_and_other_records_kept():
    keep = DropAdvertisements()
    record = lambda msg: logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, msg, None, None)  # noqa: E731
    assert not keep.filter(record("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)"))
    assert keep.filter(record("GPU available: False, used: False"))
    assert keep.filter(record("a message that mentions a 💡 Tip: later on"))
