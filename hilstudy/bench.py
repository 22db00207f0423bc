"""Speed measurements against the stock stack, side by side in one process (issue 8).

Used by `benchmarks/speed.py`, `benchmarks/learner.py` (`make bench`) and `notebooks/90_speed.py`. Every
function returns numbers (or frames), never asserts on time: speed targets live here, not in unit tests.
"""

from __future__ import annotations

import copy
import dataclasses
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hilstudy.params import EnvParams, load, run_params
from hilstudy.sim import make_env

FRAME_ACTION = np.array([0.3, 0.2, -0.5, 0.0], dtype=np.float32)  # 8 steps of it from seed 3: a view with the arm down


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measured(fn_name: str, args: tuple, kwargs: dict) -> tuple[Any, float]:
    return globals()[fn_name](*args, **kwargs), peak_rss_mib()


def isolated(fn, *args, **kwargs) -> tuple[Any, float]:
    """(fn(*args, **kwargs), the peak resident memory in MiB of the fresh process it ran in): one measurement's
    memory, apart from what earlier measurements left in this process. `fn` is one of this module's functions."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if globals().get(fn.__name__) is not fn:
        raise ValueError(f"isolated() runs hilstudy.bench's own functions, not {fn!r}")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, fn.__name__, args, kwargs).result()


def baseline() -> None:
    """Nothing: `isolated(baseline)` gives the memory of a process that has imported hilstudy.bench (torch,
    MuJoCo, gym-hil), the floor under every measurement's figure."""
    import gym_hil  # noqa: F401
    import torch  # noqa: F401


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


def base_step_rate(env, steps: int, repeats: int = 3) -> float:
    """Best-of-`repeats` steps/s of the gym-hil env itself (`PandaPickCubeGymEnv.step` or the compiled subclass's),
    without hilstudy's wrapper: 7-D actions as hilstudy sends them (xyz in metres, no rotation, gripper)."""
    rng = np.random.default_rng(0)
    actions = np.zeros((steps, 7))
    actions[:, :3] = rng.uniform(-1, 1, (steps, 3)) * env.cfg.action_scale
    actions[:, 6] = rng.uniform(-1, 1, steps)
    base = env._base
    best = 0.0
    for _ in range(repeats):
        env.reset(seed=0)
        t0 = time.perf_counter()
        for i, a in enumerate(actions):
            _, _, terminated, _, _ = base.step(a)
            if terminated or i % 100 == 99:
                env.reset()
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def physics_state(env) -> np.ndarray:
    """The sim's whole dynamic state after a step: qpos, qvel, ctrl, act, the solver's warm start, time."""
    d = env._base.data
    return np.concatenate([d.qpos, d.qvel, d.ctrl, d.act, d.qacc_warmstart, [d.time]])


def physics_trace(env, seed: int, steps: int = 100) -> np.ndarray:
    """`physics_state` after every step of a seeded episode of random xyz actions with the gripper closing half
    the time (contacts, grasps, pushes: where chaos would amplify any difference)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for i in range(steps):
        a = rng.uniform(-1, 1, 4)
        if i % 30 < 15:
            a[3] = 1.0
        env.step(a)
        out.append(physics_state(env))
    return np.stack(out)


def sim_rates(steps: int = 2000, episodes: int = 100) -> dict[str, float]:
    """State-obs env steps/s of stock gym-hil and of `fast_sim`, and their trajectories compared. `*_steps_per_s`:
    hilstudy's env (`PickCubeEnv`, the same wrapper around both); `gym_hil_*`: the gym-hil env class alone."""
    with make_env(EnvParams(fast_sim=False)) as stock, make_env(EnvParams(fast_sim=True)) as fast:
        for env in (stock, fast):
            env.reset(seed=0)
            env.step(np.zeros(4, dtype=np.float32))  # warm-up (the kernels compiled or loaded when the env was made)
        r_stock, r_fast = step_rate(stock, steps), step_rate(fast, steps)
        b_stock, b_fast = base_step_rate(stock, steps), base_step_rate(fast, steps)
        worst, equal, total = 0.0, 0, 0
        for seed in range(episodes):
            a, b = physics_trace(stock, seed), physics_trace(fast, seed)
            worst = max(worst, float(np.abs(a - b).max()))
            equal += int((a == b).all(axis=1).sum())
            total += len(a)
    return {"stock_steps_per_s": r_stock, "fast_steps_per_s": r_fast, "ratio": r_fast / r_stock,
            "gym_hil_stock_steps_per_s": b_stock, "gym_hil_fast_steps_per_s": b_fast, "gym_hil_ratio": b_fast / b_stock,
            "episodes": episodes, "max_abs_difference": worst, "bitwise_equal_steps": equal, "steps_compared": total}  # fmt: skip


def camera_frames(cfg: EnvParams) -> np.ndarray:
    """Front | wrist images of one state (seed 3, 8 steps of FRAME_ACTION), side by side."""
    with make_env(cfg) as env:
        env.reset(seed=3)
        for _ in range(8):
            obs, *_ = env.step(FRAME_ACTION)
    return np.concatenate([obs["observation.images.front"], obs["observation.images.wrist"]], axis=1)


def pixel_rates(steps: int = 100, image_size: int = 128) -> dict[str, Any]:
    """Pixel-obs env steps/s with stock gym-hil rendering and with hilstudy's defaults (lean_render,
    render_mesh_faces, fast_sim), and one state's frames from each (`frames`: stock on top, hilstudy below)."""
    stock_cfg = EnvParams(obs="pixels", image_size=image_size, fast_sim=False, lean_render=False, render_mesh_faces=0)
    lean_cfg = EnvParams(obs="pixels", image_size=image_size)
    with make_env(stock_cfg) as stock, make_env(lean_cfg) as lean:
        r_stock, r_lean = step_rate(stock, steps, repeats=1), step_rate(lean, steps, repeats=1)
    frames = [camera_frames(stock_cfg), camera_frames(lean_cfg)]
    diff = float(np.abs(frames[0].astype(int) - frames[1].astype(int)).mean())
    return {"stock_steps_per_s": r_stock, "lean_steps_per_s": r_lean, "ratio": r_lean / r_stock,
            "mean_abs_pixel_difference": diff, "frames": np.concatenate(frames, axis=0)}  # fmt: skip


FINETUNE_SETUPS = {  # name: (env.fast_sim, finetune.overlap); "stock" is gym-hil's sim with updates in turn
    "stock": (False, False),
    "fast_sim": (True, False),
    "fast_sim+overlap": (True, True),  # hilstudy's defaults
}


def finetune_rates(steps: int = 1500, run: str = "scratch-bcloss") -> dict[str, Any]:
    """Env steps/s of a default-study fine-tuning run (seed 0, `steps` env steps, no evaluations; the training
    loop's `train_time_s`) for each of FINETUNE_SETUPS; the runs' results must be the same."""
    from hilstudy.demos import record_demos
    from hilstudy.finetune import finetune

    rates, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        record_demos(load(overrides={"demos.num_episodes": 5}), Path(tmp) / "demos", progress=False)
        for name, (fast, overlap) in FINETUNE_SETUPS.items():
            over = {"finetune.env_steps": steps, "finetune.eval_episodes": 0, "finetune.checkpoint_every": steps,
                    "env.fast_sim": fast, "finetune.overlap": overlap}  # fmt: skip
            summary, r = finetune(run_params(load(overrides=over), run, 0), Path(tmp) / "demos", Path(tmp) / name)
            rates[name] = steps / r.train_time
            results[name] = {k: summary[k] for k in ("updates", "episodes", "intervention_rate_mean", "success_last20", "jitter_last20")}
    default = rates["fast_sim+overlap"]
    return {"steps_per_s": rates, "stock_steps_per_s": rates["stock"], "fast_steps_per_s": default,
            "ratio": default / rates["stock"], "overlap_ratio": default / rates["fast_sim"],
            "same_results": all(r == results["stock"] for r in results.values()), "results": results["stock"]}  # fmt: skip


def learner_rates(updates: int = 300, threads: int = 1, batch_size: int = 256) -> dict[str, Any]:
    """Updates/s of lerobot's stock `SACAlgorithm.update` and of `sac_bc` (bc_weight 0 and 0.5) on the same config
    (the default study's), the same initial weights and the same batch (fed again at every update), and the
    first update's losses of each (bc_weight 0 must equal stock's)."""
    import torch
    from lerobot.rl.algorithms.sac.configuration_sac import SACAlgorithmConfig
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    from hilstudy.agents import SACBCAlgorithm
    from hilstudy.bc import torch_threads
    from hilstudy.demos import dataset_features
    from hilstudy.finetune import algorithm_config
    from hilstudy.policy import make_policy, make_policy_config

    study = load()
    with make_env(study.env) as env:
        features, state_dim = dataset_features(env), env.state_dim
    with torch_threads(threads):
        torch.manual_seed(0)
        policy, _, _ = make_policy(make_policy_config(features, study.policy))
        policy.train()
        mixer = synthetic_mixer(state_dim, 2000)
        t0 = time.perf_counter()
        for _ in range(200):
            mixer.sample(batch_size)
        sample_ms = (time.perf_counter() - t0) / 200 * 1e3
        torch.manual_seed(1)
        batch = mixer.sample(batch_size)
        out: dict[str, Any] = {"sample_ms": sample_ms, "rates": {}, "losses": {}}
        for name, weight in (("stock SAC", None), ("sac_bc w=0", 0.0), ("sac_bc w=0.5", 0.5)):
            params = run_params(study, "scratch", 0) if weight is None else load(overrides={"finetune.bc_weight": weight})
            cfg = algorithm_config(params, policy.config)
            torch.manual_seed(3)  # the critics are made in the algorithm's constructor: the same for all three
            if weight is None:  # lerobot's own config class and algorithm, the same field values
                fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(SACAlgorithmConfig)}
                algorithm = SACAlgorithm(copy.deepcopy(policy), SACAlgorithmConfig(**fields))
            else:
                algorithm = SACBCAlgorithm(copy.deepcopy(policy), cfg)
            algorithm.make_optimizers_and_scheduler()  # as lerobot's RLTrainer does
            torch.manual_seed(2)
            it = _repeat(batch)
            out["losses"][name] = dict(algorithm.update(it).losses)  # also the warm-up
            t0 = time.perf_counter()
            for _ in range(updates):
                algorithm.update(it)
            out["rates"][name] = updates / (time.perf_counter() - t0)
    stock, w0 = out["losses"]["stock SAC"], out["losses"]["sac_bc w=0"]
    out["w0_equals_stock"] = all(stock[k] == w0[k] for k in stock)
    return out


def synthetic_mixer(state_dim: int, n: int, seed: int = 0):
    """hilstudy's two buffers, n random transitions each (normalized ranges, 30% interventions), mixed 50/50."""
    import torch
    from lerobot.rl.data_sources.data_mixer import OnlineOfflineMixer

    from hilstudy.finetune import make_buffer

    g = torch.Generator().manual_seed(seed)
    bufs = []
    for _ in range(2):
        buf = make_buffer(n, ["observation.state"], pixels=False)
        for _ in range(n):
            buf.add(
                state={"observation.state": torch.rand(1, state_dim, generator=g) * 2 - 1},
                action=torch.rand(1, 4, generator=g) * 2 - 1,
                reward=float(torch.rand(1, generator=g) < 0.05),
                next_state={"observation.state": torch.rand(1, state_dim, generator=g) * 2 - 1},
                done=bool(torch.rand(1, generator=g) < 0.05),
                truncated=False,
                complementary_info={"is_intervention": (torch.rand(1, generator=g) < 0.3).float()},
            )
        bufs.append(buf)
    return OnlineOfflineMixer(bufs[0], bufs[1], online_ratio=0.5)


def _repeat(batch):
    while True:  # a fresh top-level dict per update: lerobot's update may replace entries
        yield {k: (dict(v) if isinstance(v, dict) else v) for k, v in batch.items()}


def study_records(root: str | Path) -> list[dict[str, Any]]:
    """`hilstudy repro`'s records in `<root>/data/repro-history.jsonl`, oldest first ([] if it never ran here)."""
    import json

    from hilstudy.repro import HISTORY

    path = Path(root) / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pipeline_stages(root: str | Path) -> list[str]:
    """Every stage of the project's pipeline (dvc.yaml, foreach expanded)."""
    import contextlib

    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        return [s.addressing for s in repo.index.stages if s.cmd]


def study_wall_clock(root: str | Path) -> dict[str, Any] | None:
    """The last successful `hilstudy repro` that ran the whole pipeline here: its wall-clock, jobs, the sum of
    its stage times and the slowest stage; None if there was none (run `make study`)."""
    stages = set(pipeline_stages(root))
    full = [r for r in study_records(root) if r["returncode"] == 0 and r.get("stages") and set(r["stages"]) >= stages]
    if not full:
        return None
    r = full[-1]
    slowest = max(r["stages"], key=r["stages"].get)
    return {"started": r["started"], "commit": r["commit"], "wall_s": r["wall_s"], "jobs": r["jobs"], "stages": len(r["stages"]),
            "stage_time_sum_s": round(sum(r["stages"].values()), 1), "slowest_stage": slowest, "slowest_s": r["stages"][slowest]}  # fmt: skip
