"""`hilstudy` command line: run notebooks with params, check params.

    hilstudy run notebooks/10_demos.py -o data/demos/notebook.ipynb -p demos.num_episodes 5
    hilstudy check                      # validate params.yaml and exit
"""

from __future__ import annotations

import argparse
import sys

from hilstudy import params as P


def _run(args: argparse.Namespace) -> int:
    from hilstudy.runner import run_notebook

    overrides = {key: P.parse_value(value) for key, value in args.param}
    out = run_notebook(args.notebook, args.output, overrides, params_file=args.params)
    print(f"hilstudy: wrote {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    overrides = {key: P.parse_value(value) for key, value in args.param}
    P.load(args.params, overrides)
    print(f"hilstudy: {args.params} is valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hilstudy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_params(p: argparse.ArgumentParser) -> None:
        p.add_argument("--params", default=P.PARAMS_FILE, help="params file (default: params.yaml)")
        p.add_argument(
            "-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
            help="override: `section.key value` for params.yaml, or `name value` for a notebook parameter; "
            "VALUE is parsed as YAML",
        )

    run = sub.add_parser("run", help="execute a jupytext notebook with papermill in the hilstudy kernel")
    run.add_argument("notebook", help="notebook (.py percent script or .ipynb)")
    run.add_argument("-o", "--output", help="executed notebook path (.ipynb)")
    add_params(run)
    run.set_defaults(func=_run)

    check = sub.add_parser("check", help="validate params.yaml (and overrides) and exit")
    add_params(check)
    check.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hilstudy.runner import NotebookError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (P.ParamsError, NotebookError) as exc:
        print(f"hilstudy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
