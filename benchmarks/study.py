"""The default study's wall-clock (issue 8), from the record `hilstudy repro` keeps of every call.

    .venv/bin/python benchmarks/study.py [--root .]

`make study` (`hilstudy repro -j $(nproc)`) appends each call's wall-clock and stage times to
`data/repro-history.jsonl`; this prints the last successful call that ran every stage of the pipeline.
A 63-minute study is measured when it runs, not re-run by a benchmark: on a fresh clone, run `make study`
first (the record then includes nothing but the study; the venv is made before `hilstudy repro` starts).
"""

from __future__ import annotations

import argparse
import sys

from hilstudy import bench


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=".", help="the project (its dvc.yaml and data/)")
    args = ap.parse_args()
    w = bench.study_wall_clock(args.root)
    if w is None:
        print("study wall-clock: no complete `hilstudy repro` recorded here yet (run `make study`, then this again)")
        return 0
    print(f"study wall-clock: {w['wall_s'] / 60:.1f} min ({w['wall_s']:.0f} s) for all {w['stages']} stages, {w['jobs']} at a time "
          f"(started {w['started']}, commit {w['commit']}); stage times sum to {w['stage_time_sum_s'] / 60:.1f} min, "
          f"slowest {w['slowest_stage']} {w['slowest_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
