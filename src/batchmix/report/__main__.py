"""`batchmix report SOURCE [--study NAME] [--out DIR] [--window N] [--tolerance F] [--markdown README]`,
or `batchmix report --from-results DIR --markdown README`.

SOURCE: a multirun dir (multirun/<date>/<time>), one run dir, or an Optuna storage URL
(sqlite:///optuna.db, postgresql://...). Prints the path of report.html. `--markdown README`
also regenerates a study's tables and figures in the paper's layout inside README (between the
`batchmix:report` markers; figures in README's folder under figures/), see `batchmix.report.markdown`.
`--from-results DIR` builds a ratio study's README block from its committed results.csv / curves.csv
instead of run folders (`batchmix.report.studies.ratio_study`), so the tables, figures and fits can be
regenerated from the repo alone.
"""

from __future__ import annotations

import argparse
import logging
import sys

from batchmix.eval.convergence import DEFAULT_TOLERANCE, DEFAULT_WINDOW
from batchmix.core.errors import BatchmixError, error_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchmix report", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=None, help="multirun dir, run dir, or Optuna storage URL")
    parser.add_argument("--from-results", default=None, metavar="DIR",
                        help="a ratio study's folder with results.csv + curves.csv (batchmix.report.studies.ratio_study): "
                             "regenerate --markdown from them, no run folders needed")
    parser.add_argument("--study", default=None, help="study name (storage URL only; optional if the storage holds one study)")
    parser.add_argument("--out", default=None, help="output dir (default: <source>/report, or ./optuna_report_<study>)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help=f"EMA span for the curves and convergence figures (default {DEFAULT_WINDOW})")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help=f"convergence band as a fraction of the final value (default {DEFAULT_TOLERANCE})")
    parser.add_argument("--title", default=None, help="page title")
    parser.add_argument("--markdown", default=None, help="README to (re)write the study tables into, in the paper's layout")
    parser.add_argument("--zero-shot", default=None, help="with --markdown: an eval.py output dir, shown as the untrained row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if (args.source is None) == (args.from_results is None):
        parser.error("give a SOURCE (run folders or an Optuna storage) or --from-results DIR, not both")
    if args.from_results is not None and not args.markdown:
        parser.error("--from-results writes a README block: add --markdown README")
    try:
        if args.from_results is not None:
            from batchmix.report.studies.ratio_study import write_study_readme

            readme = write_study_readme(args.from_results, args.markdown,
                                        command=f"batchmix report --from-results {args.from_results} --markdown {args.markdown}")
            print(f"study tables: {readme}")
            return 0
        from batchmix.report.sweep_report import build_report

        path = build_report(args.source, args.out, study=args.study, window=args.window, tolerance=args.tolerance, title=args.title)
        if args.markdown:
            from batchmix.report.markdown import write_study_markdown

            readme = write_study_markdown(args.source, args.markdown, zero_shot=args.zero_shot, window=args.window, tolerance=args.tolerance,
                                          command="batchmix report <sweep> --markdown " + str(args.markdown))
            print(f"study tables: {readme}")
    except BatchmixError as err:
        return error_line(err)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
