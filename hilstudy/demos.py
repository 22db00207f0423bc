"""Record demonstrations as a LeRobotDataset (lerobot 0.6.1 format) and load them back.

Frame t holds what lerobot's RL stack expects (`ReplayBuffer.from_lerobot_dataset` reads it):
  observation.state (+ observation.images.front / .wrist with pixels), action (the executed action),
  next.reward, next.done (the env's termination only: never the time limit, see below),
  next.truncated (the time limit), next.success, complementary_info.is_intervention, and the task.

lerobot's own recorder stores `done = terminated or truncated`, which makes a time-out look like a
terminal failure to SAC (no bootstrap). We keep the two apart.

The dataset is written into `<root>.partial` and moved into place only when complete, so an
interrupted or failed recording never leaves a half dataset where a finished one was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hilstudy.io import partial_dir, replace_dir
from hilstudy.params import StudyParams
from hilstudy.rollout import Transition, episode_metrics, rollout
from hilstudy.seeding import seed_everything

FPS = 10  # gym-hil pick-cube's control rate (control_dt = 0.1 s)
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]
IMAGE_KEYS = ("observation.images.front", "observation.images.wrist")


def dataset_features(env) -> dict:
    """lerobot feature spec for the env's observations plus the RL keys."""
    space = env.observation_space
    features: dict[str, dict] = {
        "observation.state": {
            "dtype": "float32",
            "shape": tuple(space["observation.state"].shape),
            "names": list(env.STATE_NAMES),
        },
    }
    for key in IMAGE_KEYS:
        if key in space.spaces:
            features[key] = {"dtype": "image", "shape": tuple(space[key].shape), "names": ["height", "width", "channels"]}
    features.update(
        {
            "action": {"dtype": "float32", "shape": (4,), "names": ACTION_NAMES},
            "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
            "next.done": {"dtype": "bool", "shape": (1,), "names": None},
            "next.truncated": {"dtype": "bool", "shape": (1,), "names": None},
            "next.success": {"dtype": "bool", "shape": (1,), "names": None},
            "complementary_info.is_intervention": {"dtype": "float32", "shape": (1,), "names": None},
        }
    )
    return features


def transition_frame(tr: Transition, task: str) -> dict:
    frame = {k: v for k, v in tr.obs.items() if k == "observation.state" or k in IMAGE_KEYS}
    frame.update(
        {
            "action": tr.action.astype(np.float32),
            "next.reward": np.array([tr.reward], dtype=np.float32),
            "next.done": np.array([tr.terminated], dtype=bool),
            "next.truncated": np.array([tr.truncated], dtype=bool),
            "next.success": np.array([tr.success], dtype=bool),
            "complementary_info.is_intervention": np.array([float(tr.is_intervention)], dtype=np.float32),
            "task": task,
        }
    )
    return frame


@dataclass
class Recording:
    root: Path
    episodes: list[dict]  # per kept episode: seed, cube position, episode_metrics(...)
    discarded: list[dict]  # episodes dropped because they failed (keep_failed false)

    def summary(self) -> dict[str, float]:
        eps = self.episodes
        attempts = len(eps) + len(self.discarded)
        return {
            "episodes": len(eps),
            "frames": int(sum(e["length"] for e in eps)),
            "success_rate": float(np.mean([e["success"] for e in eps])),
            "mean_length": float(np.mean([e["length"] for e in eps])),
            "attempts": attempts,
            "attempt_success_rate": float(
                (sum(e["success"] for e in eps) + sum(e["success"] for e in self.discarded)) / attempts
            ),
        }


def record_demos(params: StudyParams, root: str | Path, progress: bool = True) -> Recording:
    """Record `params.demos.num_episodes` operator-driven episodes into a LeRobotDataset at `root`.

    Episode attempt i resets env and operator with seed `demos.seed + i`; with keep_failed false a
    failed attempt is dropped and the next seed is tried (at most 3x num_episodes attempts).
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from tqdm import tqdm

    from hilstudy.operator import ScriptedOperator
    from hilstudy.sim import make_env

    cfg = params.demos
    root = Path(root)
    partial = partial_dir(root)
    seed_everything(cfg.seed)

    kept: list[dict] = []
    discarded: list[dict] = []
    with make_env(params.env) as env:
        operator = ScriptedOperator(params.operator, action_scale=params.env.action_scale)
        ds = LeRobotDataset.create(
            repo_id=cfg.repo_id, fps=FPS, root=partial, features=dataset_features(env), use_videos=False, robot_type="panda"
        )
        max_attempts = 3 * cfg.num_episodes
        bar = tqdm(total=cfg.num_episodes, desc="demos", disable=not progress)
        attempt = 0
        while len(kept) < cfg.num_episodes:
            if attempt >= max_attempts:
                raise RuntimeError(
                    f"only {len(kept)} of {cfg.num_episodes} demos succeeded in {attempt} attempts: "
                    "the operator fails too often (check operator.noise_std) or set demos.keep_failed: true"
                )
            seed = cfg.seed + attempt
            attempt += 1
            transitions = list(rollout(env, policy=None, operator=operator, seed=seed))
            # the cube has not moved after the first step (the gripper starts well above it)
            record = {"seed": seed, "cube_pos": [float(x) for x in transitions[0].info["cube_pos"]]}
            record.update(episode_metrics(transitions))
            if not record["success"] and not cfg.keep_failed:
                discarded.append(record)
                continue
            for tr in transitions:
                ds.add_frame(transition_frame(tr, cfg.task))
            ds.save_episode()
            kept.append(record)
            bar.update(1)
        bar.close()
        ds.finalize()

    replace_dir(partial, root)
    return Recording(root=root, episodes=kept, discarded=discarded)


def load_demos(root: str | Path, repo_id: str | None = None):
    """Open a recorded dataset with lerobot's own loader."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").exists():
        raise FileNotFoundError(f"{root}: no LeRobotDataset here (meta/info.json missing): run the demos stage first")
    if repo_id is None:
        import json

        repo_id = json.loads((root / "meta" / "info.json").read_text()).get("repo_id") or "hilstudy/demos"
    return LeRobotDataset(repo_id, root=root)
