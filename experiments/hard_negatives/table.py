"""The hard-negatives table: held-out metrics of the runs under <out>/negatives_<N>, read from each
run's metrics.json / metrics_before.json / convergence.json (batchmix.core.run_dir.RunDir), written
between the markers of the README given (or printed).

    .venv/bin/python experiments/hard_negatives/table.py <out> [--readme experiments/hard_negatives/README.md]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from batchmix.core.run_dir import RunDir

BEGIN, END = "<!-- hard-negatives:begin -->", "<!-- hard-negatives:end -->"
COLUMNS = [  # (header, metrics key); test = the held-out articles, val = what selection would read
    ("test map/multi", "map/multi"), ("test map/mono", "map/mono"), ("test map/cross", "map/cross"),
    ("test recall@10/multi", "recall@10/multi"), ("test nDCG@10/multi", "ndcg@10/multi"),
    ("test rank distance", "bias/rank_distance"), ("val map/multi", "val/map/multi"),
    ("false negatives masked", "train/masked"),  # (query, candidate) entries loss.mask left out, summed over the run
]


def table(out: Path) -> str:
    runs = sorted(out.glob("negatives_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise SystemExit(f"no negatives_<N> run under {out}")
    lines = ["| run | " + " | ".join(h for h, _ in COLUMNS) + " | run wall s |", "|---" * (len(COLUMNS) + 2) + "|"]
    before = RunDir(runs[0]).read_metrics_before()
    lines.append("| untrained | " + " | ".join(_fmt(before.get(k), _digits(k)) for _, k in COLUMNS) + " | |")
    for run in runs:
        metrics = RunDir(run).read_metrics()
        n = run.name.split("_")[1]
        wall = run / "wall_seconds.txt"
        seconds = int(wall.read_text()) if wall.exists() else None
        lines.append(f"| hard_negatives={n} | " + " | ".join(_fmt(metrics.get(k), _digits(k)) for _, k in COLUMNS) + f" | {_fmt(seconds, 0)} |")
    stats = json.loads((out / "mine" / "mine_stats.json").read_text()) if (out / "mine" / "mine_stats.json").exists() else None
    note = ""
    if stats:
        note = (f"\nMining: {stats['pairs']} pairs against {stats['pool']} passages, {stats['negatives']} negatives "
                f"({stats['pairs_short']} pairs short), {stats['texts_encoded'] / stats['encode_seconds']:.0f} texts/s encoding "
                f"on {stats['device']} ({stats['model']}).\n")
    return "\n".join(lines) + "\n" + note


def _digits(key: str) -> int:
    return 0 if key == "train/masked" else 1 if key.endswith("rank_distance") else 4


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args()
    block = f"{BEGIN}\n{table(args.out)}{END}"
    if args.readme is None:
        print(block)
        return
    text = args.readme.read_text()
    args.readme.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


if __name__ == "__main__":
    main()
