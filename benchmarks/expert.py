"""Figures for the simulated operator and the sim: expert success over 100 seeded cubes, env step rate.

    python benchmarks/expert.py [--episodes 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hilstudy.operator import ScriptedOperator
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.sim import make_env


def expert(env, noise: float, episodes: int) -> tuple[float, float, float]:
    op = ScriptedOperator(OperatorParams(noise_std=noise), action_scale=env.cfg.action_scale)
    t0, steps, eps = time.perf_counter(), 0, []
    for seed in range(episodes):
        tr = list(rollout(env, operator=op, seed=seed))
        steps += len(tr)
        eps.append(episode_metrics(tr))
    rate = steps / (time.perf_counter() - t0)
    return float(np.mean([e["success"] for e in eps])), float(np.mean([e["length"] for e in eps])), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=100)
    args = ap.parse_args()
    with make_env(EnvParams()) as env:
        for noise in (0.0, OperatorParams().noise_std):
            success, length, rate = expert(env, noise, args.episodes)
            print(f"expert noise_std={noise:<4} success {success:6.1%} over {args.episodes} seeds, "
                  f"mean length {length:5.1f} steps, {rate:6.0f} env steps/s (state obs, incl. operator)")
    with make_env(EnvParams(obs="pixels")) as env:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for _ in range(10):
            env.step(np.zeros(4))
        print(f"pixels 128x128 (2 cameras, stock gym-hil rendering): {10 / (time.perf_counter() - t0):6.1f} env steps/s")


if __name__ == "__main__":
    main()
