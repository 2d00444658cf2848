"""`logger=csv | tensorboard | wandb | none`: what each writes, the W&B mode policy (never online
without credentials and a reachable host, never a hang) and the offline W&B run files, read back."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.run.loggers import build_logger, log_final_results, map_matrix_rows, resolve_wandb_mode, sweep_group, wandb_logged_in, wandb_run_name


def compose_cfg(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


def logger_of(cfg, run_dir):
    """The logger train() builds for `cfg` (its name from the ratio and seed, the resolved config recorded)."""
    ratio = Ratio.from_mapping(OmegaConf.to_container(cfg.ratio, resolve=True))
    return build_logger(cfg.logger, run_dir, name=wandb_run_name(ratio, cfg.seed), config=OmegaConf.to_container(cfg, resolve=True))


class StepLogger(L.LightningModule):
    """Logs like DualEncoder.training_step: overall and per-batch-type loss / mse every step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        btype = ("mono", "cross", "multi")[batch_idx % 3]
        self.log_dict({"train/loss": loss, "train/mse": loss / 2, f"train/{btype}/loss": loss, f"train/{btype}/mse": loss / 2},
                      on_step=True, on_epoch=False, batch_size=2)
        return loss

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(logger, run_dir: Path) -> None:
    trainer = L.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run_dir))
    trainer.fit(StepLogger())


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """No API key, no netrc, no WANDB_MODE: the 'fresh machine' case."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there: connection refused at once


# ------------------------------------------------------------------------------------ csv / tb / none


def test_csv_logger_writes_metrics_csv_with_per_type_columns(tmp_path):
    logger = logger_of(compose_cfg(["logger=csv"]), tmp_path)
    fit(logger, tmp_path)
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/mono/loss", "train/cross/mse", "train/multi/mse", "step"} <= set(header)


def test_tensorboard_logger_writes_event_files_with_the_curves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = logger_of(compose_cfg(["logger=tensorboard"]), tmp_path)
    fit(logger, tmp_path)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/mono/loss", "train/multi/mse"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) == 6


def test_none_and_unknown_logger(tmp_path):
    assert logger_of(compose_cfg(["logger=none"]), tmp_path) is False
    cfg = compose_cfg(["logger=csv", "logger._target_=batchmix.run.loggers.mlflow_logger"])
    with pytest.raises(BatchmixError, match="logger._target_='batchmix.run.loggers.mlflow_logger' is not a batchmix logger; "
                                            "pick one with logger=csv, logger=none, logger=tensorboard, logger=wandb"):
        logger_of(cfg, tmp_path)
    cfg = compose_cfg(["logger=wandb", "+logger.job_type=eval"])  # an option the builder does not take: never dropped
    with pytest.raises(BatchmixError, match="logger 'batchmix.run.loggers.wandb_logger' got unknown option.*job_type.*it accepts: .*probe_timeout"):
        logger_of(cfg, tmp_path)


# --------------------------------------------------------------------------------------- W&B mode


def test_not_logged_in_means_offline(no_credentials):
    assert not wandb_logged_in()
    assert resolve_wandb_mode(None) == "offline"


def test_netrc_entry_for_the_wandb_host_counts_as_logged_in(no_credentials, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_logged_in()
    assert not wandb_logged_in("https://wandb.example.org")  # a key for another host does not count


def test_logged_in_but_unreachable_falls_back_to_offline_quickly(no_credentials, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", closed_port_url())
    start = time.perf_counter()
    with caplog.at_level("WARNING", logger="batchmix"):
        assert resolve_wandb_mode(None) == "offline"
        assert resolve_wandb_mode("online") == "offline"  # even when asked for explicitly
    assert time.perf_counter() - start < 5
    assert "unreachable" in caplog.text and "wandb sync" in caplog.text


def test_blackholed_host_is_bounded_by_the_probe_timeout(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://10.255.255.1")  # non-routable: a connect would hang
    start = time.perf_counter()
    assert resolve_wandb_mode(None, probe_timeout=0.5) == "offline"
    assert time.perf_counter() - start < 3


def test_explicit_modes_and_wandb_mode_env(no_credentials, monkeypatch):
    assert resolve_wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(None) == "disabled"
    with pytest.raises(BatchmixError, match="'sometimes'"):
        resolve_wandb_mode("sometimes")


def test_sweep_group_is_the_sweep_dir_in_a_multirun(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg(["logger=wandb", "hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}/multirun/2025-06-01/12-00-00"], hydra=True)
    try:
        HydraConfig.instance().set_config(cfg)
        assert sweep_group() == "2025-06-01/12-00-00"
    finally:
        HydraConfig.instance().cfg = None
    assert sweep_group() is None  # a single run outside a sweep


def test_map_matrix_rows_from_metric_keys():
    metrics = {"map/mono/en": 0.9, "map/mono/de": 0.8, "map/cross/de-en": 0.5, "map/cross/en-de": 0.4,
               "map@20/mono/en": 0.1, "map/multi": 0.6}
    columns, rows = map_matrix_rows(metrics)
    assert columns == ["query_lang", "de", "en"]
    assert rows == [["de", 0.8, 0.5], ["en", 0.4, 0.9]]
    assert map_matrix_rows({"map/multi": 0.5}) is None


# ----------------------------------------------------------------------------- W&B offline files


def read_wandb_records(path: Path):
    """Records of a `.wandb` file: the LevelDB log format (32 KiB blocks, 7-byte chunk headers:
    crc32 u32, length u16, type u8 = full/first/middle/last) after a 7-byte `:W&B` file header; each
    record a `wandb_internal.Record` protobuf. wandb >= 0.20 ships no Python reader for it any more."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" or not data
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        if pos + 7 + length > len(data):
            return  # a chunk wandb-core is still writing: `finished_records` reads again
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def finished_records(wandb_file: Path, timeout: float = 20.0) -> list:
    """All records once the `exit` record is on disk: wandb-core writes the file from its own process
    and may still be flushing when `run.finish()` returns."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(read_wandb_records(wandb_file))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def offline_run(run_dir: Path) -> tuple[Path, dict, dict, list[dict]]:
    """(run folder, run record fields, final summary, history rows) of the one offline run in run_dir."""
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    (wandb_file,) = folder.glob("run-*.wandb")
    run, summary, history = {}, {}, []
    for rec in finished_records(wandb_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = {"name": rec.run.display_name, "group": rec.run.run_group, "project": rec.run.project,
                   "config": {u.key: json.loads(u.value_json) for u in rec.run.config.update}}
        elif kind == "summary":
            for u in rec.summary.update:
                key = u.key or "/".join(u.nested_key)
                summary[key] = json.loads(u.value_json)
        elif kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return folder, run, summary, history


@pytest.fixture
def offline_env(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_offline_run_has_name_group_config_curves_summary_and_matrix(tmp_path, offline_env):
    import wandb

    cfg = compose_cfg(["logger=wandb", "logger.group=sweepA", "ratio.mono=0.2", "ratio.multi=0.3", "seed=3"])
    run_dir = tmp_path / "run"
    logger = logger_of(cfg, run_dir)
    fit(logger, run_dir)
    metrics = {"map/multi": 0.61, "map/mono": 0.8, "map/mono/en": 0.9, "map/mono/de": 0.7,
               "map/cross/de-en": 0.55, "map/cross/en-de": 0.45, "bias/rank_distance": 0.12}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    log_final_results(logger, metrics, run_dir)
    assert wandb.run is None  # finished: the next sweep point starts a new run

    folder, run, summary, history = offline_run(run_dir)
    assert run["name"] == "ratio=0.2-0.5-0.3_seed=3" and run["group"] == "sweepA" and run["project"] == "batchmix"
    assert run["config"]["ratio"] == {"mono": 0.2, "multi": 0.3, "cross": 0.5}
    assert run["config"]["model"]["name_or_path"] == cfg.model.name_or_path and run["config"]["run_dir"] == str(run_dir)
    steps = [h for h in history if "train/loss" in h]
    assert len(steps) == 6 and [h["trainer/global_step"] for h in steps] == list(range(6))
    assert {"train/mono/loss", "train/cross/mse", "train/multi/loss"} <= set().union(*steps)
    assert summary["map/multi"] == pytest.approx(0.61) and summary["bias/rank_distance"] == pytest.approx(0.12)
    assert summary["map_matrix/_type"] == "table-file"
    (table_file,) = (folder / "files" / "media" / "table").glob("map_matrix_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["query_lang", "de", "en"] and table["data"] == [["de", 0.7, 0.55], ["en", 0.45, 0.9]]
    assert json.loads((folder / "files" / "metrics.json").read_text()) == metrics


def test_each_job_gets_its_own_wandb_run_even_if_the_last_one_was_left_open(tmp_path, offline_env):
    first = logger_of(compose_cfg(["logger=wandb", "ratio.mono=1.0"]), tmp_path / "a")
    first_id = first.experiment.id  # never finished: a sweep point that crashed
    second = logger_of(compose_cfg(["logger=wandb", "ratio.mono=0.0"]), tmp_path / "b")
    assert second.experiment.id != first_id
    log_final_results(second, {"map/multi": 0.3}, tmp_path / "b")
    assert offline_run(tmp_path / "a")[1]["name"] == "ratio=1-0-0_seed=0"
    assert offline_run(tmp_path / "b")[1]["name"] == "ratio=0-1-0_seed=0"


def test_log_final_results_is_a_no_op_for_other_loggers(tmp_path):
    for name in ("csv", "none"):
        log_final_results(logger_of(compose_cfg([f"logger={name}"]), tmp_path), {"map/multi": 0.5}, tmp_path)
    assert not (tmp_path / "wandb").exists()


@pytest.mark.slow
def test_multirun_with_wandb_logs_one_offline_run_per_point_and_prints_the_report(tmp_path, xquad_root):
    """The issue's 'done when' on the tiny model: `python train.py -m ratio.mono=0.0,1.0 logger=wandb`."""
    import os
    import subprocess
    import sys

    import importlib

    if not hasattr(importlib.import_module("batchmix.run.train"), "build_logger"):
        pytest.skip("batchmix.run.train does not use batchmix.run.loggers.build_logger yet")
    repo = Path(__file__).resolve().parents[1]
    sweep = tmp_path / "multirun" / "2025-06-01" / "12-00-00"
    args = ["-m", "ratio.mono=0.0,1.0", "model=tiny", "data.languages=[en,de,es]", "data.batch_size=8",
            "data.batches_per_epoch=6", "save_model=false", "eval.before=false", "logger=wandb",
            f"hydra.sweep.dir={sweep}", "++hydra.callbacks.report._target_=batchmix.report.callback.ReportCallback"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    res = subprocess.run([sys.executable, str(repo / "train.py"), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == f"report: {sweep / 'report' / 'report.html'}"
    for num, name in ((0, "ratio=0-1-0_seed=0"), (1, "ratio=1-0-0_seed=0")):
        _, run, summary, history = offline_run(sweep / str(num))
        assert run["name"] == name and run["group"] == "2025-06-01/12-00-00"
        metrics = json.loads((sweep / str(num) / "metrics.json").read_text())
        assert summary["map/multi"] == pytest.approx(metrics["map/multi"])
        assert "conv/all/loss/auc" in summary and (sweep / str(num) / "convergence.json").exists()
        assert len([h for h in history if "train/loss" in h]) == 6
