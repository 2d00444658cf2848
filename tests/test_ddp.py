"""DDP with cross-device in-batch negatives, on CPU with 2 gloo processes.

With loss.gather=true every rank all-gathers the embeddings with gradients, so its loss is the
loss of the whole global batch; after DDP averages the gradients, every rank must hold exactly
the gradients of one process run on the concatenated batch. GradCache (loss.cache_chunk) must give
the same under DDP. With loss.gather=false each rank only sees its own slice (the control).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from hydra import compose, initialize_config_dir

from batchmix.config import CONF_DIR
from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio
from batchmix.mixing.sampler import HybridBatchSampler
from scale_helpers import assert_same_grads, ddp_worker, loss_and_grads, make_batch, slice_batch, tiny_encoder

REPO = Path(__file__).resolve().parents[1]
GLOBAL_BATCH, WORLD = 8, 2


def run_ddp(tmp_path: Path, loss_cfg: dict) -> list[dict]:
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(ddp_worker, args=(WORLD, str(tmp_path / "init"), str(out), GLOBAL_BATCH, loss_cfg), nprocs=WORLD, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def single_process(loss_cfg: dict) -> tuple[float, dict]:
    module = tiny_encoder(loss=loss_cfg)
    return loss_and_grads(module, make_batch(module, GLOBAL_BATCH))


@pytest.mark.slow
@pytest.mark.parametrize("cache_chunk", [None, 3], ids=["plain", "gradcache"])
def test_ddp_gathered_loss_and_grads_equal_single_process_on_the_global_batch(tmp_path, cache_chunk):
    loss_cfg = {"gather": True, "cache_chunk": cache_chunk}
    ranks = run_ddp(tmp_path, loss_cfg)
    loss, grads = single_process({"gather": True})
    for r in ranks:
        assert r["loss"] == pytest.approx(loss, rel=1e-5)
        assert_same_grads(r["grads"], grads)


@pytest.mark.slow
@pytest.mark.parametrize("cache_chunk", [None, 3], ids=["plain", "gradcache"])
def test_ddp_without_gather_sees_only_local_negatives(tmp_path, cache_chunk):
    ranks = run_ddp(tmp_path, {"gather": False, "cache_chunk": cache_chunk})
    module = tiny_encoder()
    batch = make_batch(module, GLOBAL_BATCH)
    half = GLOBAL_BATCH // WORLD
    local = [loss_and_grads(module, slice_batch(batch, i * half, (i + 1) * half))[0] for i in range(WORLD)]
    global_loss, _ = single_process({"gather": True})
    assert [r["loss"] for r in ranks] == pytest.approx(local, rel=1e-5)
    assert ranks[0]["loss"] != pytest.approx(global_loss, rel=1e-3)  # the control: 4 negatives, not 8


def test_sampler_shards_each_global_batch_across_ranks():
    langs = [("en", "de", "es")] * 30 + [("en",)] * 10
    ratio = Ratio(0.4, 0.4, 0.2)
    single = HybridBatchSampler(langs, 8, ratio, batches_per_epoch=10, seed=4)
    shards = []
    for rank in range(WORLD):
        s = HybridBatchSampler(langs, 8, ratio, batches_per_epoch=10, seed=4)
        s.shard(rank, WORLD)
        shards.append(list(s))
    for index, whole in enumerate(single):
        parts = [shards[r][index] for r in range(WORLD)]
        assert all(len(p) == 4 for p in parts)
        assert parts[0] + parts[1] == whole  # concatenated in rank order = the single-process batch
        assert len({ref.batch_type for ref in whole}) == 1
        assert len({ref.group for ref in whole}) == 8  # no id twice across ranks


def test_global_batch_not_divisible_by_world_size_is_a_clear_error():
    s = HybridBatchSampler([("en", "de")] * 20, 9, Ratio(0.5, 0.5, 0.0), batches_per_epoch=2)
    with pytest.raises(BatchmixError, match=r"data.batch_size=9 .*not divisible by the 2 processes.*data.batch_size=8"):
        s.shard(1, 2)


@pytest.mark.slow
def test_train_cli_under_ddp_on_two_cpu_processes(tmp_path, xquad_root):
    """`python train.py trainer=ddp` end to end: Lightning launches the second process itself; every
    evaluation is sharded over both ranks and equals one process (eval.py) on the same weights; one
    offline W&B run holds every per-type loss curve and the val curve."""
    from test_loggers import offline_run

    from batchmix.run.evaluate import evaluate

    run_dir = tmp_path / "run"
    args = [
        sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "model=tiny", "data.languages=[en,de,es]", "data.batch_size=8", "data.batches_per_epoch=4", "save_model=false",
        "logger=wandb", "eval.val_every_n_steps=2", f"data.root={xquad_root}", f"hydra.run.dir={run_dir}",
    ]
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    hist = pd.read_csv(run_dir / "history.csv")
    assert len(hist) == 4 and hist["loss"].notna().all()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["map/multi"] <= 1.0 and (run_dir / "metrics_before.json").exists()
    # Only global rank 0 writes results: one "final evaluation on" log line, not one per process.
    assert (proc.stdout + proc.stderr).count("final evaluation on") == 1
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["HybridDataModule"]["sampler"]["position"] == 4
    curve = pd.read_csv(run_dir / "val_history.csv")
    assert list(curve["step"]) == [0, 2, 4]

    # One process, one thread, the same weights (last.ckpt), eval.py's own trainer: the same numbers.
    torch.set_num_threads(1)
    for split, prefix in (("val", "val/"), ("test", "")):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("eval", overrides=[f"checkpoint={run_dir}", f"split={split}", "data.languages=[en,de,es]",
                                             f"data.root={xquad_root}", "eval.trec=false"])
        single = evaluate(cfg, tmp_path / f"eval-{split}")["metrics"]
        for key, value in single.items():
            assert metrics[prefix + key] == pytest.approx(value, abs=1e-6), key

    # W&B: exactly one run (rank 1 started none), with the per-type loss curves and the val curve.
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    _, _, summary, history = offline_run(run_dir)
    logged = {key for row in history for key in row}
    assert {"train/mono/loss", "train/cross/loss", "train/mono/mse", "train/cross/mse", "val/map/multi", "val/bias/rank_distance"} <= logged
    val_points = [row["val/map/multi"] for row in history if "val/map/multi" in row]
    assert val_points == pytest.approx(curve["val/map/multi"].tolist(), rel=1e-6)
    assert summary["val/map/multi"] == pytest.approx(metrics["val/map/multi"], rel=1e-6)
