"""The learner's speed: hilstudy's `sac_bc` update against lerobot's stock `SACAlgorithm.update` (issue 8).

    .venv/bin/python benchmarks/learner.py [--updates 300] [--threads 1]

All three get the default study's config, the same initial weights and the same batch of 256 transitions
(state observations, 30% interventions) sampled once from hilstudy's two buffers and fed again at every
update, so only the update is timed (`hilstudy.bench.learner_rates`). Prints updates/s of stock SAC, of
`sac_bc` at bc_weight 0 (the same computation: its first losses must equal stock's) and at the study's 0.5,
the cost of sampling one batch, and the peak resident memory of the process the measurement ran in.
"""

from __future__ import annotations

import argparse

from hilstudy import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the study uses finetune.torch_threads = 1)")
    args = ap.parse_args()
    r, mem = bench.isolated(bench.learner_rates, args.updates, args.threads)
    base = r["rates"]["stock SAC"]
    for name, rate in r["rates"].items():
        print(f"{name:13s} {rate:6.1f} updates/s  ({1e3 / rate:5.1f} ms)  ratio to stock {rate / base:.2f}x")
    print(f"sac_bc w=0 losses equal stock SAC's on the same batch: {r['w0_equals_stock']}")
    for name, losses in r["losses"].items():
        print(f"  first-update losses {name:13s} " + "  ".join(f"{k} {v:.6f}" for k, v in losses.items()))
    print(f"sampling one batch of 256 from the two buffers: {r['sample_ms']:.2f} ms")
    print(f"torch threads {args.threads}; peak resident memory {mem:.0f} MiB")


if __name__ == "__main__":
    main()
