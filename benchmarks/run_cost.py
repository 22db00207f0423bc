"""What one fine-tuning run costs under the study's params, to size a study before running it (issue 19).

    .venv/bin/python benchmarks/run_cost.py [--runs scratch bcinit] [--env-steps 3000] [--eval-every 1000]

Needs seed 0's inputs (`hilstudy repro demos@0 bc@0 classifier@0`). Runs the given runs side by side, as
`make study` does on two cores, each for `--env-steps` with the study's other params, in a temporary folder;
prints each run's wall-clock, its time per 1000 env steps, and the time of each evaluation (from progress.log).
A study of R runs at N env steps costs about R x N / 1000 x (per-1k time) / jobs, plus its input stages.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ONE = """
import sys
from hilstudy import params as P
from hilstudy.finetune import finetune
run, steps, every, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
study = P.load("params.yaml", {"finetune.env_steps": steps, "finetune.eval_every": every, "finetune.checkpoint_every": steps})
finetune(P.run_params(study, run, 0), "data/demos/s0/dataset", out, bc_dir="data/bc/s0/policy",
         classifier_dir="data/classifier/s0/model")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["scratch", "bcinit"], help="runs of params.yaml, run side by side")
    ap.add_argument("--env-steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=1000)
    args = ap.parse_args()
    missing = [p for p in ("data/demos/s0/dataset", "data/bc/s0/policy", "data/classifier/s0/model") if not Path(p).exists()]
    if missing:
        print(f"missing inputs {missing}: run `hilstudy repro demos@0 bc@0 classifier@0` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t0, procs = time.time(), {}
        for run in args.runs:
            cmd = [sys.executable, "-c", ONE, run, str(args.env_steps), str(args.eval_every), f"{tmp}/{run}"]
            procs[run] = subprocess.Popen(cmd)
        walls = {}
        while len(walls) < len(procs):
            for run, p in procs.items():
                if run not in walls and p.poll() is not None:
                    if p.returncode:
                        print(f"{run}: failed (exit {p.returncode})", file=sys.stderr)
                        return 1
                    walls[run] = time.time() - t0
            time.sleep(0.5)
        for run, wall in walls.items():
            stamps = [datetime.strptime(line[:8], "%H:%M:%S") for line in Path(f"{tmp}/{run}/progress.log").read_text().splitlines()
                      if "eval success" in line]
            gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
            print(f"{run:16s} wall {wall:6.1f} s for {args.env_steps} env steps, {len(args.runs)} side by side: "
                  f"{1000 * wall / args.env_steps:5.1f} s per 1k env steps overall; between evaluations "
                  f"(every {args.eval_every}, evaluation included): {', '.join(f'{g:.0f}' for g in gaps)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
