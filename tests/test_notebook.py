"""notebooks/ratio_sweep_analysis.ipynb runs top to bottom on a tiny synthetic sweep, so it never rots.

The kernel is this interpreter (the venv), registered under a private name in a temp dir; Jupyter and
IPython config/data/runtime dirs point there too, so the user's own Jupyter setup is neither used nor
touched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_report_fake_sweep import make_fake_sweep, simplex_grid

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "ratio_sweep_analysis.ipynb"
KERNEL = "batchmix-test-venv"


@pytest.fixture
def private_jupyter(tmp_path, monkeypatch) -> str:
    data = tmp_path / "jupyter-data"
    spec = data / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "batchmix venv (test)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    return KERNEL


def _optuna_files(sweep: Path) -> None:
    """What an Optuna sweep leaves next to its runs: a 2-objective trials table and its front."""
    rows = []
    for number, (mono, cross, multi) in enumerate(simplex_grid(0.5)):
        rows.append({"number": number, "state": "COMPLETE", "values_map/multi": 0.3 + 0.2 * multi - 0.05 * mono,
                     "values_bias/rank_distance": 0.4 * mono, "user_attrs_ratio_mono": mono,
                     "user_attrs_ratio_cross": cross, "user_attrs_ratio_multi": multi})
    pd.DataFrame(rows).to_csv(sweep / "optuna_trials.csv", index=False)


@pytest.mark.slow
@pytest.mark.parametrize("val_every", [10, None], ids=["val-history", "before-val-history"])
def test_notebook_runs_on_a_tiny_sweep(tmp_path, monkeypatch, private_jupyter, val_every):
    """Also on runs made before val_history.csv existed: the validation cell says so and draws nothing."""
    sweep = make_fake_sweep(tmp_path / "sweep", ratios=simplex_grid(0.5), seeds=(0, 1), steps=40, incomplete=1,
                            val_every=val_every)
    _optuna_files(sweep)
    monkeypatch.setenv("BATCHMIX_SWEEP_DIR", str(sweep))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=private_jupyter, timeout=180,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"sweep: {sweep.resolve()}" in text
    assert "12 runs (11 complete), 6 ratios, shape: simplex" in text
    # the selection split, from the runs' config.yaml
    if val_every:
        assert "Selection split: val (objective `val/map/multi`)" in text
    else:
        assert "objective `map/multi` reads the test split (allow_test_selection=true)" in text
        assert "no val_history.csv in any run" in text
    # final-vs-ratio, ternary, mse curves, loss curves, [validation curve,] optuna history, pareto front
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == (7 if val_every else 6)
    html_tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("0.5/0.5/0" in o["data"]["text/html"] for o in html_tables)
    assert any("conv/val/map/multi/step_to_90pct" in o["data"]["text/html"] for o in html_tables) == bool(val_every)
    # the notebook only reads: no report or other file written into the sweep
    assert not (sweep / "report").exists()
