"""Speed of the study's sim against stock gym-hil, measured side by side in one run (issue 8).

    .venv/bin/python benchmarks/speed.py [--episodes 100] [--steps 2000] [--no-pixels]

Prints:
- state-observation env steps/s: stock gym-hil (`env.fast_sim: false`) and hilstudy's compiled controller
  (`env.fast_sim: true`, the default), on the same seeded random actions, best of 3, and their ratio;
- equivalence: the largest |difference| in qpos, qvel and ctrl between the two over `--episodes` seeded
  100-step episodes of random actions with the gripper closing half the time (contacts: where chaos would
  amplify any difference), and how many steps were bitwise equal;
- pixel-observation env steps/s: stock gym-hil rendering vs hilstudy's (`env.lean_render` and `fast_sim`,
  the defaults), and the mean absolute pixel difference of their images; `--frames F.png` saves both
  cameras' frames of one state side by side (top: stock, bottom: lean);
- the process's peak resident memory.
Each env is built once and warmed up (the compiled kernel loads from numba's cache, or compiles, first).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from hilstudy.params import EnvParams
from hilstudy.sim import make_env


def step_rate(env, steps: int, repeats: int = 3) -> float:
    """Best-of-`repeats` env steps/s under seeded uniform random actions (resets when an episode ends)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4)).astype(np.float32)
    best = 0.0
    for _ in range(repeats):
        env.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def physics_trace(env, seed: int, steps: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    d = env._base.data
    out = []
    for i in range(steps):
        a = rng.uniform(-1, 1, 4)
        if i % 30 < 15:
            a[3] = 1.0
        env.step(a)
        out.append(np.concatenate([d.qpos, d.qvel, d.ctrl]))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=100, help="seeded episodes compared for equivalence")
    ap.add_argument("--steps", type=int, default=2000, help="env steps per rate measurement")
    ap.add_argument("--no-pixels", action="store_true")
    ap.add_argument("--frames", default=None, help="save stock and lean camera frames of one state to this PNG")
    args = ap.parse_args()

    with make_env(EnvParams(fast_sim=False)) as stock, make_env(EnvParams(fast_sim=True)) as fast:
        for env in (stock, fast):
            env.reset(seed=0)
            env.step(np.zeros(4, dtype=np.float32))  # warm-up: numba cache load / compile
        r_stock, r_fast = step_rate(stock, args.steps), step_rate(fast, args.steps)
        print(f"state obs  env steps/s: stock gym-hil {r_stock:7.1f}   hilstudy fast_sim {r_fast:7.1f}   ratio {r_fast / r_stock:.2f}x")

        worst, equal, total = 0.0, 0, 0
        for seed in range(args.episodes):
            a, b = physics_trace(stock, seed), physics_trace(fast, seed)
            worst = max(worst, float(np.abs(a - b).max()))
            equal += int((a == b).all(axis=1).sum())
            total += len(a)
        print(f"equivalence over {args.episodes} seeded episodes: max |d(qpos, qvel, ctrl)| = {worst:.3g}, bitwise equal steps {equal}/{total}")

    if not args.no_pixels:
        n = max(args.steps // 20, 30)
        stock_cfg = EnvParams(obs="pixels", fast_sim=False, lean_render=False)
        with make_env(stock_cfg) as pix_stock, make_env(EnvParams(obs="pixels")) as pix_lean:
            r_stock_pix, r_lean_pix = step_rate(pix_stock, n, repeats=1), step_rate(pix_lean, n, repeats=1)
            frames = []
            for env in (pix_stock, pix_lean):  # the same state in both (bit-identical physics)
                env.reset(seed=3)
                for _ in range(8):
                    obs, *_ = env.step(np.array([0.3, 0.2, -0.5, 0.0], dtype=np.float32))
                frames.append(np.concatenate([obs["observation.images.front"], obs["observation.images.wrist"]], axis=1))
        diff = float(np.abs(frames[0].astype(int) - frames[1].astype(int)).mean())
        print(f"pixel obs  env steps/s: stock gym-hil {r_stock_pix:7.1f}   hilstudy lean_render+fast_sim {r_lean_pix:7.1f}   "
              f"ratio {r_lean_pix / r_stock_pix:.1f}x   (mean |pixel difference| {diff:.1f} of 255)")
        if args.frames:
            from PIL import Image

            Image.fromarray(np.concatenate(frames, axis=0)).save(args.frames)
            print(f"frames (top: stock, bottom: lean; front | wrist) -> {args.frames}")

    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
