"""The false-negatives README block: rates.csv (rates.py) and the demo runs under <out> (run.sh),
read through batchmix.core.run_dir.RunDir; written between the markers of the README given (or printed).
Also writes results.csv beside the README: one row per run with the numbers the block shows.

    .venv/bin/python experiments/false_negatives/table.py <out> [--readme experiments/false_negatives/README.md]
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from pathlib import Path

from batchmix.core.run_dir import RunDir

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- false-negatives:begin -->", "<!-- false-negatives:end -->"
SEEDS = (0, 1, 2)
CHOOSE = "val/map/multi"  # what chooses: validation only
REPORTED = [("test map/multi", "map/multi"), ("test map/mono", "map/mono"), ("test map/cross", "map/cross"),
            ("test recall@10/multi", "recall@10/multi"), ("test nDCG@10/multi", "ndcg@10/multi"),
            ("test rank distance", "bias/rank_distance"), ("val map/multi", "val/map/multi")]
TYPES = ("mono", "cross", "multi")


def shared_table(path: Path) -> str:
    rows = list(csv.DictReader(open(path)))
    head = "| | " + " | ".join(r["lang"] for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|",
             "| training ids sharing their answer sentence with another id | " + " | ".join(r["sharing"] for r in rows) + " |",
             "| distinct answer sentences | " + " | ".join(r["distinct_answers"] or "" for r in rows) + " |"]
    return "\n".join(lines) + f"\n\nOf {rows[0]['ids']} training ids (the XQuAD-R training articles, `data.split` seed 0); `any`: in at least one language.\n"


def rates_table(path: Path) -> str:
    rows = list(csv.DictReader(open(path)))
    settings = [("ids", "False", "`ids`"), ("answers", "False", "`answers`"), ("answers", "True", "`answers` + avoid")]
    lines = ["| batch | type | " + " | ".join(f"{label}: masked / batch (batches hit)" for _, _, label in settings) + " |",
             "|---|---|" + "---|" * len(settings)]
    for size in sorted({int(r["batch_size"]) for r in rows}):
        for btype in TYPES:
            cells = []
            for mask, avoid, _ in settings:
                r = next(r for r in rows if int(r["batch_size"]) == size and r["batch_type"] == btype and r["mask"] == mask
                         and r["avoid_shared_answers"] == avoid)
                cells.append(f"{float(r['masked_per_batch']):.2f} ({float(r['batches_hit']):.1%})")
            n = next(r["batches"] for r in rows if int(r["batch_size"]) == size)
            lines.append(f"| {size} | {btype} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nBatches drawn per type and setting: " + ", ".join(
        f"{n} at batch {s}" for s, n in sorted({(int(r['batch_size']), r['batches']) for r in rows})) + ".\n"


def _runs(out: Path, name: str) -> dict[int, dict]:
    found = {}
    for seed in SEEDS:
        run = RunDir(out / f"{name}-{seed}")
        metrics = run.read_metrics()
        if metrics:
            wall = run.path / "wall_seconds.txt"
            found[seed] = {**metrics, "wall_s": float(wall.read_text()) if wall.exists() else float("nan")}
    return found


def _mean_sd(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def choice_block(out: Path) -> tuple[str, list[dict]]:
    mask, avoid, ids = _runs(out, "answers"), _runs(out, "avoid"), _runs(out, "ids")
    seeds = sorted(set(mask) & set(avoid))
    rows = [{"run": f"{name}-{s}", "seed": s, **{k: runs[s].get(k) for _, k in REPORTED},
             **{f"train/{t}/masked": runs[s].get(f"train/{t}/masked") for t in TYPES},
             "train/masked": runs[s].get("train/masked"), "train/steps": runs[s].get("train/steps"), "wall_s": runs[s]["wall_s"]}
            for name, runs in (("answers", mask), ("avoid", avoid), ("ids", ids)) for s in sorted(runs)]
    lines = ["| demo run, seeds " + ", ".join(map(str, seeds)) + " | " + " | ".join(h for h, _ in REPORTED) +
             " | masked entries per run (mono / cross / multi) | mean run wall s (seed 0 adds the untrained model's evaluation) |", "|---" * (len(REPORTED) + 3) + "|"]
    for label, runs in (("mask (`loss.mask=answers`)", mask), ("avoid (`data.sampler.avoid_shared_answers=true`)", avoid)):
        cells = [_mean_sd([runs[s][k] for s in seeds], 1 if k.endswith("rank_distance") else 4) for _, k in REPORTED]
        masked = " / ".join(_mean_sd([runs[s][f"train/{t}/masked"] for s in seeds if f"train/{t}/masked" in runs[s]], 1)
                            for t in TYPES)  # "–": the ratio has no batch of that type
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {masked} | {statistics.mean(runs[s]['wall_s'] for s in seeds):.0f} |")
    if len(seeds) < 2:
        return "\n".join(lines) + "\n\nToo few finished seeds to choose.\n", rows
    diffs = [avoid[s][CHOOSE] - mask[s][CHOOSE] for s in seeds]
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    winner = "avoid" if mean > sd else "mask"
    why = (f"avoiding beats masking on {CHOOSE} by more than the seed-to-seed spread of the difference"
           if winner == "avoid" else
           f"avoiding does not beat masking on {CHOOSE} by more than the seed-to-seed spread of the difference, and masking "
           f"leaves the sampler's draw (which ids meet in a batch) as it is")
    text = ("\n".join(lines) + f"\n\nPaired by seed, avoid − mask on {CHOOSE}: " + ", ".join(f"{d:+.4f}" for d in diffs) +
            f" (mean {mean:+.4f}, sd {sd:.4f}). Rule, fixed before the runs: avoid becomes the default only if its mean paired "
            f"gain exceeds one sd; here **{winner}**: {why}.\n")
    return text, rows


def demo_block(out: Path) -> str:
    ids, answers = RunDir(out / "ids-0"), RunDir(out / "answers-0")
    if not ids.read_metrics() or not answers.read_metrics():
        return "The seed-0 demo runs under both masks are not both finished.\n"
    keys = [("map/multi", 4), ("map/mono", 4), ("map/cross", 4), ("recall@10/multi", 4), ("ndcg@10/multi", 4),
            ("bias/rank_distance", 1), ("val/map/multi", 4), ("train/masked", 0)]
    before = answers.read_metrics_before()
    lines = ["| `make demo` (seed 0) | " + " | ".join(k for k, _ in keys) + " |", "|---" * (len(keys) + 1) + "|",
             "| untrained | " + " | ".join("" if k.startswith("train/") else f"{before.get(k, float('nan')):.{d}f}" for k, d in keys) + " |"]
    for label, run in (("`loss.mask=ids` (before)", ids), ("`loss.mask=answers` (now)", answers)):
        m = run.read_metrics()
        lines.append(f"| {label} | " + " | ".join(f"{m.get(k, float('nan')):.{d}f}" for k, d in keys) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args()
    choice, rows = choice_block(args.out)
    body = ("### Questions that share an answer (shared.csv)\n\n" + shared_table(HERE / "shared.csv") +
            "\n### Masked entries per batch (rates.csv)\n\n" + rates_table(HERE / "rates.csv") +
            "\n### Masking or avoiding: the demo recipe at three seeds (mean ± sd)\n\n" + choice +
            "\n### `make demo` under each mask\n\n" + demo_block(args.out))
    block = f"{BEGIN}\n{body}{END}"
    if rows:
        with open(HERE / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.readme is None:
        print(block)
        return
    text = args.readme.read_text()
    if BEGIN not in text:
        raise SystemExit(f"{args.readme} has no {BEGIN} marker")
    args.readme.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    print(f"wrote {args.readme}")


if __name__ == "__main__":
    main()
