"""Experiment loggers for a training job: `logger=csv | tensorboard | wandb | none`.

Each `conf/logger/<name>.yaml` names its builder here (`_target_`, `_partial_: true`) with its options;
`build_logger(cfg.logger, run_dir, name=..., config=...)` instantiates it and calls it with the run dir,
the run's name (`wandb_run_name`) and the job config to record, and
returns what `lightning.Trainer(logger=...)` takes; `log_final_results`
puts the evaluation into the logger at the end of a job (W&B: summary + the per-language-pair mAP
matrix as a `wandb.Table`; the other loggers keep nothing extra, metrics.json is the record).

W&B policy (why): sweeps run on laptops, clusters without internet and CI. A logger must never stall
a job, so the mode is decided before `wandb.init` is called:

* `logger.mode` set (online / offline / disabled) wins; otherwise `WANDB_MODE` from the environment;
  otherwise online only if the user is logged in (`WANDB_API_KEY`, `WANDB_IDENTITY_TOKEN_FILE`, or a
  netrc entry for the W&B host) -- else offline, with the `wandb sync` command to upload later.
* Online is only attempted when the W&B host answers an HTTPS request within `logger.probe_timeout`
  seconds; `wandb.init` itself is bounded by `logger.init_timeout`. Either failing -> offline + a warning.

One W&B run per Hydra job (= per sweep point), `group` = the sweep (`logger.group`, else the last two
parts of `hydra.sweep.dir`, e.g. `2025-06-01/12-00-00`), name `ratio=<mono>-<cross>-<multi>_seed=<s>`,
config = the full resolved job config, files under `<run_dir>/wandb/`.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchmix.mixing.ratio import Ratio
from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.core.options import build

log = logging.getLogger("batchmix")

WANDB_MODES = ("online", "offline", "disabled")
DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def build_logger(logger: Any, run_dir: str | os.PathLike, *, name: str, config: Mapping[str, Any]):
    """The Lightning logger of the `logger` node (a builder below, with its options), writing into `run_dir`
    (False for `none`). Under DDP only global rank 0 builds one: one W&B run per training job, and
    the other ranks log nothing (their metrics are rank 0's: the val metrics are computed on the
    gathered embeddings, the gathered loss on the global batch)."""
    from lightning.pytorch.utilities import rank_zero_only  # deferred: the pre-flight imports this module

    make = logger_builder(logger)
    return make(run_dir=Path(run_dir), name=name, config=config) if make is not None and rank_zero_only.rank == 0 else False


def logger_builder(logger: Any) -> Callable[..., Any] | None:
    """The builder of the `logger` node with its options bound (checked, nothing started: the pre-flight
    calls this too); None without a logger config."""
    return build(logger, "logger", logger_names(), "csv") if logger else None


def logger_names() -> list[str]:
    """The loggers a run can pick with `logger=<name>`: the configs in conf/logger/."""
    return sorted(path.stem for path in (CONF_DIR / "logger").glob("*.yaml"))


def csv_logger(run_dir: Path, name: str, config: Mapping[str, Any]):
    """Lightning's CSVLogger: <run dir>/csv/metrics.csv."""
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(run_dir), name="csv", version="")


def tensorboard_logger(run_dir: Path, name: str, config: Mapping[str, Any]):
    """Lightning's TensorBoardLogger: <run dir>/tensorboard."""
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    except ModuleNotFoundError as err:
        raise BatchmixError(f"logger=tensorboard needs the tensorboard package ({err}); pip install tensorboard, or use logger=csv") from None


def no_logger(run_dir: Path, name: str, config: Mapping[str, Any]) -> bool:
    """No experiment logger (Lightning's `logger=False`)."""
    return False


def log_final_results(logger: Any, metrics: Mapping[str, float], run_dir: str | os.PathLike) -> None:
    """W&B: final metrics into the run summary, the mAP matrix as `map_matrix` (a `wandb.Table`), the
    run dir's *.json result files attached, then the W&B run is finished (call this last). Other
    loggers: no-op (metrics.json is their record)."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return
    import wandb

    run = logger.experiment
    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
    run.summary.update(finite)
    matrix = map_matrix_rows(finite)
    if matrix is not None:
        columns, rows = matrix
        run.log({"map_matrix": wandb.Table(columns=columns, data=rows)})
    run_dir = Path(run_dir)
    if any(run_dir.glob("*.json")):  # metrics.json, metrics_before.json, convergence.json: one glob, one message
        run.save(str(run_dir / "*.json"), base_path=str(run_dir), policy="now")
    run.finish()


def map_matrix_rows(metrics: Mapping[str, float], metric: str = "map") -> tuple[list[str], list[list[Any]]] | None:
    """The L x L matrix from `<metric>/mono/<X>` (diagonal) and `<metric>/cross/<X>-<Y>` keys as
    (columns, rows): first column `query_lang`, then one column per candidate language; None where a
    pair has no value. None if the metrics hold no per-language key."""
    from batchmix.eval.pair_matrix import pair_matrix  # deferred: pandas, and the pre-flight imports this module

    mono, cross = f"{metric}/mono/", f"{metric}/cross/"
    langs: set[str] = set()
    for key in metrics:
        if key.startswith(mono) and "/" not in key[len(mono):]:
            langs.add(key[len(mono):])
        elif key.startswith(cross) and key[len(cross):].count("-") == 1:
            langs.update(key[len(cross):].split("-"))
    if not langs:
        return None
    matrix = pair_matrix(metrics, sorted(langs), metric=metric)
    rows = [[x, *(None if math.isnan(v) else float(v) for v in matrix.loc[x])] for x in matrix.index]
    return ["query_lang", *matrix.columns], rows


# ---------------------------------------------------------------------------------------------- W&B


def wandb_run_name(ratio: Ratio, seed: int) -> str:
    """`ratio=0.2-0.5-0.3_seed=0`: the sweep coordinates (one share per batch type, registry order),
    readable in the W&B run list."""
    return f"ratio={'-'.join(f'{share:g}' for share in ratio.as_dict().values())}_seed={seed}"


def sweep_group() -> str | None:
    """The sweep dir of a Hydra multirun (last two path parts), else None: a run's W&B group
    where `logger.group` names none."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return "/".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
    except Exception:  # noqa: BLE001 - outside Hydra (tests, notebooks) there is simply no sweep
        return None
    return None


def wandb_host() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_WANDB_HOST)


def wandb_logged_in(host: str | None = None) -> bool:
    """True if credentials for the W&B host exist (env key, identity token file, or netrc entry).

    Read here with the standard library on purpose: wandb's own lookup is private API that moved
    between releases (`wandb.sdk.lib.apikey` -> `wandb.sdk.lib.wbauth`); the sources are documented.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    hostname = urlsplit(host or wandb_host()).hostname
    netrc_path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    if not hostname or not Path(netrc_path).is_file():
        return False
    try:
        entry = netrc.netrc(netrc_path).authenticators(hostname)
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


def wandb_reachable(host: str | None = None, timeout: float = 3.0) -> bool:
    """An HTTP(S) request to the W&B host answered within `timeout` s (any status code counts): cheap
    proof that online mode will not hang. A bare TCP connect is not enough -- intercepting proxies
    accept any connection -- so TLS must verify and the server must answer."""
    import urllib.error
    import urllib.request

    url = (host or wandb_host()).rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered, just not with 2xx
    except (OSError, ValueError):
        return False


def resolve_wandb_mode(requested: str | None = None, probe_timeout: float = 3.0) -> str:
    """online / offline / disabled by the policy in the module docstring; never 'online' for an unreachable host."""
    mode = requested or os.environ.get("WANDB_MODE") or None
    if mode == "dryrun":
        mode = "offline"
    if mode is None:
        if not wandb_logged_in():
            log.info("W&B: not logged in -> offline run (log in with `wandb login` to stream runs online, or upload "
                     "this one later with `wandb sync <run dir>/wandb/offline-run-*`)")
            return "offline"
        mode = "online"
    if mode not in WANDB_MODES:
        raise BatchmixError(f"W&B mode {mode!r} (logger.mode or WANDB_MODE) is not one of {list(WANDB_MODES)}")
    if mode == "online" and not wandb_reachable(timeout=probe_timeout):
        log.warning("W&B: %s is unreachable -> logging offline; upload later with `wandb sync <run dir>/wandb/offline-run-*`", wandb_host())
        return "offline"
    return mode


def wandb_logger(run_dir: Path, name: str, config: Mapping[str, Any], *, project: str | None = "batchmix", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None, mode: str | None = None,
                 probe_timeout: float = 3.0, init_timeout: float = 30.0):
    """Lightning's WandbLogger on a W&B run started by the policy in the module docstring."""
    try:
        import wandb
    except ModuleNotFoundError:
        raise BatchmixError("logger=wandb needs the wandb package; pip install wandb, or use logger=csv") from None
    from lightning.pytorch.loggers import WandbLogger

    mode = resolve_wandb_mode(mode, float(probe_timeout))
    if wandb.run is not None:
        # A run left open by an earlier job of this process (a sweep point that failed): close it, so
        # this job gets its own run instead of Lightning silently reusing the old one.
        wandb.finish()
    project = project or "batchmix"
    config = {**config, "run_dir": str(run_dir)}
    init: dict[str, Any] = {
        "project": project,
        "entity": entity,
        "group": str(group) if group else sweep_group(),
        "name": name,
        "job_type": "train",
        "tags": list(tags or []),
        "config": config,
        "dir": str(run_dir),
        # Offline, W&B's own console lines (its sync hint, `wandb leet`, the save notice) say again
        # what the line above already said: batchmix keeps them out of the console.
        "settings": wandb.Settings(init_timeout=float(init_timeout), silent=mode == "offline"),
    }
    try:
        run = wandb.init(mode=mode, **init)
    except Exception as err:  # noqa: BLE001 - any failure to reach the server must not end the job
        if mode != "online":
            raise BatchmixError(f"wandb.init failed in {mode} mode ({err}); use logger=csv, or set logger.mode=disabled") from None
        log.warning("W&B: online init failed (%s) -> logging offline into %s/wandb", str(err).splitlines()[0] if str(err) else type(err).__name__, run_dir)
        if wandb.run is not None:
            wandb.finish()
        run = wandb.init(mode="offline", **{**init, "settings": wandb.Settings(init_timeout=float(init_timeout), silent=True)})
    # The x-axis Lightning itself would define for a run it created.
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return WandbLogger(experiment=run, project=project, name=name, save_dir=str(run_dir))
