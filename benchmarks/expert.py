"""Figures for the simulated operator and the sim: expert success over 100 seeded cubes, env step rates.

    .venv/bin/python benchmarks/expert.py [--episodes 100] [--steps 1000] [--no-pixels]

Prints, per noise level (0 and the default `operator.noise_std`): the expert's success rate over seeds
0..episodes-1, its mean episode length (steps, successful or not) and the rate of the whole loop (env +
operator); then the bare state-obs env step rate (random actions, resets included) and, unless
--no-pixels, the pixel-obs step rate with the study's rendering (`env.lean_render`, `env.render_mesh_faces`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hilstudy.bench import step_rate
from hilstudy.operator import ScriptedOperator
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.sim import make_env


def expert(env, noise: float, episodes: int) -> tuple[float, float, float]:
    """(success rate, mean episode length, env+operator steps/s) over seeds 0..episodes-1."""
    op = ScriptedOperator(OperatorParams(noise_std=noise), action_scale=env.cfg.action_scale)
    t0, steps, eps = time.perf_counter(), 0, []
    for seed in range(episodes):
        tr = list(rollout(env, operator=op, seed=seed))
        steps += len(tr)
        eps.append(episode_metrics(tr))
    rate = steps / (time.perf_counter() - t0)
    return float(np.mean([e["success"] for e in eps])), float(np.mean([e["length"] for e in eps])), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1000, help="steps for the bare state-obs step rate")
    ap.add_argument("--no-pixels", action="store_true", help="skip the (slow) pixel-obs step rate")
    args = ap.parse_args()
    with make_env(EnvParams()) as env:
        for noise in (0.0, OperatorParams().noise_std):
            success, length, rate = expert(env, noise, args.episodes)
            print(f"expert noise_std={noise:<4} success {success:6.1%} over {args.episodes} seeds, "
                  f"mean length {length:5.1f} steps, {rate:6.0f} steps/s (env + operator)")
        print(f"state obs: {step_rate(env, args.steps, repeats=1):6.0f} env steps/s (random actions, {args.steps} steps)")
    if not args.no_pixels:
        cfg = EnvParams(obs="pixels")
        with make_env(cfg) as env:
            print(f"pixel obs {cfg.image_size}x{cfg.image_size} (2 cameras, lean_render + render_mesh_faces): "
                  f"{step_rate(env, 10, repeats=1):6.1f} env steps/s")


if __name__ == "__main__":
    main()
