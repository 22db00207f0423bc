"""Speed of the study's sim against stock gym-hil, measured side by side in one run (issue 8).

    .venv/bin/python benchmarks/speed.py [--episodes 100] [--steps 2000] [--no-pixels] [--frames F.png]
                                         [--finetune-steps 1500]

Prints (the measurements are `hilstudy.bench`'s; `notebooks/90_speed.py` shows the same with frames):
- state-observation env steps/s: stock gym-hil (`env.fast_sim: false`) and hilstudy's compiled controller
  (`env.fast_sim: true`, the default), on the same seeded random actions, best of 3, and their ratio: through
  hilstudy's env wrapper, and of the gym-hil env class alone;
- equivalence: the largest |difference| in the physics state (qpos, qvel, ctrl, act, warm start, time)
  between the two over `--episodes` seeded 100-step episodes of random actions with the gripper closing half
  the time, and how many steps were bitwise equal;
- pixel-observation env steps/s: stock gym-hil rendering vs hilstudy's (`env.lean_render` + `fast_sim`, the
  defaults) and the mean absolute pixel difference of one state's images; `--frames` saves them (top: stock);
- fine-tuning env steps/s end to end (run `scratch-bcloss`, seed 0, `--finetune-steps` env steps, updates
  from step 300, no evaluations): stock sim with updates in turn, compiled sim, and compiled sim with the
  update beside the env step (`finetune.overlap`, the default), and whether all runs' results are equal;
- the peak resident memory of each measurement: each runs in a fresh process (`bench.isolated`), beside the
  floor of a process that only imported torch, MuJoCo and gym-hil.
"""

from __future__ import annotations

import argparse

from hilstudy import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=100, help="seeded episodes compared for equivalence")
    ap.add_argument("--steps", type=int, default=2000, help="env steps per state-obs rate measurement")
    ap.add_argument("--no-pixels", action="store_true")
    ap.add_argument("--frames", default=None, help="save stock and lean camera frames of one state to this PNG")
    ap.add_argument("--finetune-steps", type=int, default=1500, help="env steps per fine-tuning measurement (0: skip)")
    args = ap.parse_args()

    _, floor = bench.isolated(bench.baseline)
    print(f"peak resident memory of a process that imported torch, MuJoCo and gym-hil: {floor:.0f} MiB")
    s, mem = bench.isolated(bench.sim_rates, args.steps, args.episodes)
    print(f"state obs  env steps/s: stock gym-hil {s['stock_steps_per_s']:7.1f}   hilstudy fast_sim {s['fast_steps_per_s']:7.1f}   "
          f"ratio {s['ratio']:.2f}x")
    print(f"  gym-hil env class alone: stock {s['gym_hil_stock_steps_per_s']:7.1f}   compiled subclass {s['gym_hil_fast_steps_per_s']:7.1f}   "
          f"ratio {s['gym_hil_ratio']:.2f}x")
    print(f"equivalence over {s['episodes']} seeded episodes: max |d(physics state)| = {s['max_abs_difference']:.3g}, "
          f"bitwise equal steps {s['bitwise_equal_steps']}/{s['steps_compared']}   [peak memory {mem:.0f} MiB]")
    if not args.no_pixels:
        p, mem = bench.isolated(bench.pixel_rates, max(args.steps // 20, 30))
        print(f"pixel obs  env steps/s: stock gym-hil {p['stock_steps_per_s']:7.1f}   hilstudy (lean_render, render_mesh_faces, fast_sim) "
              f"{p['lean_steps_per_s']:7.1f}   ratio {p['ratio']:.1f}x   (mean |pixel difference| {p['mean_abs_pixel_difference']:.1f} of 255)"
              f"   [peak memory {mem:.0f} MiB]")
        if args.frames:
            from PIL import Image

            Image.fromarray(p["frames"]).save(args.frames)
            print(f"frames (top: stock, bottom: lean; front | wrist) -> {args.frames}")
    if args.finetune_steps:
        f, mem = bench.isolated(bench.finetune_rates, args.finetune_steps)
        rates = "   ".join(f"{name} {r:.1f}" for name, r in f["steps_per_s"].items())
        print(f"fine-tuning env steps/s ({args.finetune_steps} steps, updates from 300): {rates}   "
              f"ratio {f['ratio']:.2f}x (overlap alone {f['overlap_ratio']:.2f}x)   (same results: {f['same_results']})   "
              f"[peak memory {mem:.0f} MiB]")


if __name__ == "__main__":
    main()
