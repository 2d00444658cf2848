"""What the console shows during a run: each log line once, no third-party tips, no warnings
batchmix cannot act on, and progress bars only where they can redraw in place.

Why in code and not only in Hydra's `job_logging`: the `lightning` package adds its own console
handler to its logger when it is imported, which happens inside the task function, after Hydra
has configured logging; every Lightning INFO line then printed twice (once as "INFO: ..." from
that handler, once from Hydra's root handler it also propagates to). `quiet_console()` runs once
the config is known to be sane, imports Lightning and routes its records through Hydra's handlers
alone, so they also reach the run's log file in one format.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Lines third-party libraries print to advertise a product or service, not to report on the run.
ADVERTISEMENTS = ("💡 Tip:",)


class DropAdvertisements(logging.Filter):
    """Drops log records that advertise (Lightning's "💡 Tip: ... try installing litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(prefix) for prefix in ADVERTISEMENTS)


def quiet_console() -> None:
    """Call after Hydra configured logging and before Lightning logs anything. Idempotent."""
    import lightning  # noqa: F401  (its import adds the console handler removed below)

    if logging.getLogger().handlers:  # Hydra's (hydra/job_logging=disabled leaves Lightning its own)
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:  # Lightning's own; Hydra's sit on the root
                    logger.removeHandler(handler)
            logger.propagate = True
    # On the logger Lightning's rank_zero_info writes to: a logger filter drops the record before
    # any handler, Hydra's console and the run's log file alike.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DROP_ADVERTISEMENTS)
    # W&B's banner lines ("View this run in the terminal with `wandb leet`", "Run `wandb online` ...");
    # batchmix logs its own one line on the W&B mode. Export WANDB_QUIET=false to see them again.
    os.environ.setdefault("WANDB_QUIET", "true")
    # Lightning 2.6's own pytree helper builds torch's deprecated `LeafSpec()` on every batch
    # (lightning/pytorch/utilities/_pytree.py; torch >= 2.10 deprecates it). Nothing batchmix calls
    # can avoid it, so only that message from only that module is silenced.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
                            module=r"lightning\.pytorch\.utilities\._pytree")
    if not sys.stderr.isatty():  # CI logs: a bar that cannot redraw prints one line per update
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


_DROP_ADVERTISEMENTS = DropAdvertisements()
