"""Hydra callback: after a multirun, build the sweep's report and print where it is.

Enable in conf/train.yaml:

    hydra:
      callbacks:
        report:
          _target_: batchmix.report.callback.ReportCallback

A failing report never fails the sweep (its runs are already on disk): it logs a warning and prints
how to rebuild it by hand.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("batchmix")


class ReportCallback(Callback):
    """`window` / `tolerance`: as `batchmix report --window/--tolerance` (None: its defaults).
    Imports nothing heavy until the sweep ends, so single runs start as fast as without it."""

    def __init__(self, window: int | None = None, tolerance: float | None = None, enabled: bool = True) -> None:
        self.window, self.tolerance, self.enabled = window, tolerance, enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            from batchmix.report.sweep_report import build_report

            options = {k: v for k, v in (("window", self.window), ("tolerance", self.tolerance)) if v is not None}
            path = build_report(sweep_dir, **options)
        except Exception as err:  # noqa: BLE001 - the sweep's results are safe; the report is a view of them
            log.warning("sweep report failed (%s: %s); rebuild with: batchmix report %s", type(err).__name__, err, sweep_dir)
            return
        print(f"report: {path}", flush=True)
