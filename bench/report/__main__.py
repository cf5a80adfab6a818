"""``python -m bench.report``: read every run record under a results directory and write the
report: REPORT.md, a self-contained report.html, the plots as PNG and the tables as CSV.

Records that cannot be read are listed (file and reason) in the report and on the console,
and left out; they never stop the report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from bench.errors import UserError
from bench.run import OneLineParser

PROG = "python -m bench.report"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=" ".join(__doc__.strip().split("\n\n")[0].split()).replace("``", ""),
                           epilog="Regenerate the committed reference report: see reports/README.md.")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results directory to read: every *.json run record under it, in any subfolder, e.g. what python -m bench.run --out "
                             "or python -m bench.suite --out wrote (default: results)")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="folder to write REPORT.md, report.html, figures/*.png and tables/*.csv into, created if missing; "
                             "other files there are left alone (default: reports)")
    return parser


def check_results(results: Path) -> None:
    if not results.exists():
        raise UserError(f"--results {results}: no such directory")
    if not results.is_dir():
        raise UserError(f"--results {results}: not a directory")
    if not any(results.rglob("*.json")):
        raise UserError(f"--results {results}: no run records (*.json) under it; run python -m bench.run or python -m bench.suite with --out {results}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_results(args.results)
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"--out {args.out}: exists and is not a directory")
        from bench.report.build import write_report
        from bench.report.loading import load_results

        results = load_results(args.results)
        for _, row in results.skipped.iterrows():
            print(f"{PROG}: skipped {row['file']}: {row['reason']}", file=sys.stderr)
        if results.empty:
            raise UserError(f"--results {args.results}: none of its {len(results.skipped)} .json file(s) is a readable run record")
        try:
            written = write_report(results, args.out)
        except OSError as err:
            raise UserError(f"--out {args.out}: cannot write the report ({err.strerror or err})") from None
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"{PROG}: {len(results.records)} record(s) read, {len(results.skipped)} skipped; "
          f"{len(written.tables)} table(s), {len(written.figures)} figure(s)")
    print(f"report: {written.markdown.resolve()}")
    print(f"report: {written.html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
