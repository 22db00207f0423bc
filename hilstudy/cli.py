"""`hilstudy` command line: run notebooks with params, check params.

    hilstudy run notebooks/10_demos.py -o /tmp/demos/notebook.ipynb -p demos.num_episodes 5 -p out_dir /tmp/demos
    hilstudy batch notebooks/30_finetune.py sets.yaml -o data/batch/ft   # one run per parameter set
    hilstudy repro -j 2                 # dvc repro, two independent stages at a time
    hilstudy record [classifier]        # real arm: a person records the demos (or labels classifier frames), then dvc commit
    hilstudy check                      # validate params.yaml and exit
    hilstudy summary data/finetune/*    # key numbers of fine-tuning runs (success, interventions, time)
"""

from __future__ import annotations

import argparse
import sys

from hilstudy import params as P


def _run(args: argparse.Namespace) -> int:
    from hilstudy.runner import run_notebook

    # `section.key value`: parsed as YAML here; `name value` (a notebook parameter): typed by the runner
    # after the notebook's default (text stays text where the default is a string)
    overrides = {key: P.parse_value(value) if "." in key else value for key, value in args.param}
    out = run_notebook(args.notebook, args.output, overrides, params_file=args.params)
    print(f"hilstudy: wrote {out}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from hilstudy.runner import run_batch

    sets = P.yaml_load(open(args.sets).read()) if args.sets != "-" else P.yaml_load(sys.stdin.read())
    outputs = run_batch(args.notebook, sets, args.output, params_file=args.params)
    print(f"hilstudy: ran {len(outputs)} parameter sets into {args.output}")
    return 0


def _repro(args: argparse.Namespace) -> int:
    from hilstudy.repro import repro

    P.load(args.params)  # a bad params.yaml fails here, before any stage
    return repro(P.project_root(), jobs=args.jobs, targets=args.targets)


RECORDED_STAGES = {  # stage -> (notebook, out_dir, what the person does)
    "demos": ("notebooks/10_demos.py", "data/demos", "the success key ends an episode as solved, the stop key ends it and "
              "holds the arm, re-record drops it"),
    "classifier": ("notebooks/15_classifier.py", "data/classifier", "press success once the cube is up and again "
                   "when it is down (the frames between are the positives), stop ends the episode, re-record drops it; "
                   "the classifier then trains on them"),
}


def _record(args: argparse.Namespace) -> int:
    """A stage whose data a person records at the real arm (the demos, or the classifier's labelled frames): the
    stage's own command, run here with the person at the arm for each seed's stage (`<stage>@<seed>`), then
    `dvc commit` of those stages, so `dvc repro` finds them up to date and never waits for anyone. With
    `runs.replicate_inputs` the person records one set per seed; without, one set, copied to every seed's stage."""
    import os
    import shutil
    import subprocess

    from hilstudy.runner import run_notebook

    study = P.load(args.params)
    if study.env.kind != "real":
        raise P.ParamsError(f"{args.params}: env.kind is '{study.env.kind}': in the sim `dvc repro` records (stages "
                            f"demos and classifier); `hilstudy record` is for env.kind: real")
    notebook, base_dir, keys = RECORDED_STAGES[args.stage]
    episodes = study.demos.num_episodes if args.stage == "demos" else study.classifier.episodes
    seeds = study.runs.seeds
    sets = len(seeds) if study.runs.replicate_inputs else 1
    root = P.project_root()
    os.environ[P.INTERACTIVE_ENV] = "1"  # the kernel inherits it
    print(f"hilstudy record {args.stage}: {sets} set(s) of {episodes} episodes "
          f"({'one per seed: runs.replicate_inputs' if sets > 1 else 'shared by every seed'}) on {study.real.robot} "
          f"with {study.real.teleop}; {keys}", flush=True)  # fmt: skip
    for k in seeds:
        out_dir = f"{base_dir}/s{k}"
        if study.runs.replicate_inputs or k == seeds[0]:
            print(f"hilstudy record {args.stage}: seed {k}", flush=True)
            run_notebook(root / notebook, root / out_dir / "notebook.ipynb", {"out_dir": out_dir, "input_seed": k},
                         params_file=args.params)  # fmt: skip
        else:  # the one recording, as every seed's stage output
            if (root / out_dir).exists():
                shutil.rmtree(root / out_dir)
            shutil.copytree(root / f"{base_dir}/s{seeds[0]}", root / out_dir)
    subprocess.run(["dvc", "commit", "--force", *(f"{args.stage}@{k}" for k in seeds)], cwd=root, check=True)
    print(f"hilstudy record: {args.stage} committed to DVC (dvc.lock); `dvc repro` now continues from it")
    return 0


def _check(args: argparse.Namespace) -> int:
    overrides = {key: P.parse_value(value) for key, value in args.param}
    P.load(args.params, overrides)
    print(f"hilstudy: {args.params} is valid")
    return 0


def _summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from hilstudy.report import INTERVENTION_BAR, SUCCESS_BAR, summarize

    table = summarize(args.runs)
    cols = [
        "run", "env_steps", "eval_success_start", "eval_success_mean", "eval_success_min_after_start", "eval_success_final",
        "eval_success_best", "step_eval_success_ge_bar", "eval_intervention_rate_mean",
        "intervention_rate_first20", "intervention_rate_last20", "step_intervention_lt_bar", "meets_bar", "train_time_s",
    ]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"step 0 is the start (eval_success_start); the other eval_* figures leave it out. "
          f"step_eval_success_ge_bar: first env step after 0 with eval success >= {SUCCESS_BAR}; step_intervention_lt_bar: "
          f"first env step with the 20-episode intervention rate < {INTERVENTION_BAR}")
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

    batch = sub.add_parser("batch", help="execute a notebook once per parameter set (papermill, outside DVC)")
    batch.add_argument("notebook", help="notebook (.py percent script or .ipynb)")
    batch.add_argument("sets", help="YAML file with a list of parameter sets, each a mapping `key: value` ('-': stdin)")
    batch.add_argument("-o", "--output", required=True, help="folder for the executed notebooks and sets.json")
    batch.add_argument("--params", default=P.PARAMS_FILE, help="params file (default: params.yaml)")
    batch.set_defaults(func=_batch)

    rep = sub.add_parser("repro", help="dvc repro with up to JOBS independent stages at once (then dvc commit)")
    rep.add_argument("targets", nargs="*", help="stages to reproduce with what they need (default: all)")
    rep.add_argument("-j", "--jobs", type=int, default=2, help="stages at once (default 2; 1: plain dvc repro)")
    rep.add_argument("--params", default=P.PARAMS_FILE, help="params file (default: params.yaml)")
    rep.set_defaults(func=_repro)

    record = sub.add_parser("record", help="real arm: record a stage's data with a person at the teleoperator "
                            "(the demos, or the classifier's labelled frames), then dvc commit")
    record.add_argument("stage", nargs="?", default="demos", choices=sorted(RECORDED_STAGES),
                        help="the stage to record (default: demos)")
    record.add_argument("--params", default=P.PARAMS_FILE, help="params file (default: params.yaml)")
    record.set_defaults(func=_record)

    check = sub.add_parser("check", help="validate params.yaml (and overrides) and exit")
    add_params(check)
    check.set_defaults(func=_check)

    summary = sub.add_parser("summary", help="print the key numbers of finished fine-tuning runs")
    summary.add_argument("runs", nargs="+", help="run folders, e.g. data/finetune/*")
    summary.set_defaults(func=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hilstudy.runner import NotebookError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (P.ParamsError, NotebookError, FileNotFoundError) as exc:
        print(f"hilstudy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
