"""The per-language-pair mAP matrix of a LAReQA evaluation, as CSV and as an annotated heatmap.

Why: the macro means (`map/mono`, `map/cross`) hide which pairs a model fails on; one L x L
matrix (rows = query language X, columns = candidate language Y; diagonal = `map/mono/<X>`,
off-diagonal = `map/cross/<X>-<Y>`) shows at a glance, e.g., weak scripts or an asymmetric pair.
Pairs with no answerable question (MLQA-R: ids absent from Y) have no value and stay empty.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from batchmix.core.errors import BatchmixError
from batchmix.core.io import atomic_open, atomic_write_text

MEAN_LABEL = "mean"


def pair_matrix(metrics: Mapping[str, float], langs: Sequence[str], metric: str = "map") -> pd.DataFrame:
    """`out.loc[X, Y]` = `<metric>/mono/<X>` if X == Y else `<metric>/cross/<X>-<Y>`; NaN where absent."""
    langs = list(langs)
    if not langs:
        raise BatchmixError("pair_matrix needs at least one language; pass the corpus languages")
    values = np.full((len(langs), len(langs)), np.nan)
    for i, x in enumerate(langs):
        for j, y in enumerate(langs):
            key = f"{metric}/mono/{x}" if x == y else f"{metric}/cross/{x}-{y}"
            if key in metrics:
                values[i, j] = float(metrics[key])
    if np.isnan(values).all():
        raise BatchmixError(
            f"no {metric}/mono/<L> or {metric}/cross/<X>-<Y> metric for languages {langs}; pass the "
            "metrics evaluate_embeddings returned for this corpus"
        )
    return pd.DataFrame(
        values,
        index=pd.Index(langs, name="query_lang"),
        columns=pd.Index(langs, name="candidate_lang"),
    )


def write_pair_matrix_csv(path: str | os.PathLike, matrix: pd.DataFrame) -> Path:
    """Rows = query language (first column `query_lang`), columns = candidate language; empty = no value.

    Values at full precision, so the CSV reads back to exactly the metrics' floats.
    """
    return atomic_write_text(path, matrix.to_csv(na_rep=""))


def _with_means(matrix: pd.DataFrame) -> np.ndarray:
    """The matrix plus a last column (row means), last row (column means) and corner (mean of all cells),
    each over the non-empty cells; mono and cross cells weigh alike."""
    values = matrix.to_numpy(dtype=float)
    n = values.shape[0]
    out = np.full((n + 1, n + 1), np.nan)
    out[:n, :n] = values
    present = ~np.isnan(values)
    sums = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:n, n] = sums.sum(axis=1) / present.sum(axis=1)
        out[n, :n] = sums.sum(axis=0) / present.sum(axis=0)
        out[n, n] = sums.sum() / present.sum()
    return out


def plot_pair_matrix(
    path: str | os.PathLike,
    matrix: pd.DataFrame,
    title: str,
    subtitle: str | None = None,
    metric: str = "map",
) -> Path:
    """Annotated heatmap PNG (Agg backend, no pyplot state): 2-decimal cells, a mean row and column,
    language codes on both axes, colour bar on [0, 1]; empty pairs are grey and marked with a dash."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    values = _with_means(matrix)
    n = len(matrix.index)
    labels_y = [*map(str, matrix.index), MEAN_LABEL]
    labels_x = [*map(str, matrix.columns), MEAN_LABEL]
    cmap = _colormap()
    norm = Normalize(vmin=0.0, vmax=1.0)

    side = 1.8 + 0.55 * (n + 1)
    fig = Figure(figsize=(side + 1.4, side + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    fontsize = 9 if n <= 12 else 7
    for i in range(n + 1):
        for j in range(n + 1):
            v = values[i, j]
            if np.isnan(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, color="0.35")
                continue
            r, g, b, _ = cmap(norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=fontsize, color=ink)
    ax.axhline(n - 0.5, color="white", linewidth=3)
    ax.axvline(n - 0.5, color="white", linewidth=3)
    ax.set_xticks(range(n + 1), labels_x)
    ax.set_yticks(range(n + 1), labels_y)
    ax.tick_params(length=0)
    ax.set_xlabel("candidate language")
    ax.set_ylabel("query language")
    ax.set_title(title if subtitle is None else f"{title}\n{subtitle}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"{metric} (diagonal: mono, off-diagonal: cross)")
    return _save_atomically(fig, Path(path))


def _colormap():
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="0.9")  # empty pairs: light grey


def _save_atomically(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", metadata={"Software": None})  # no matplotlib version in the file: same bytes across releases
    return path
