"""Record demonstrations as a LeRobotDataset (lerobot 0.6.1 format) and load them back.

Frame t holds what lerobot's RL stack expects (`ReplayBuffer.from_lerobot_dataset` reads it):
  observation.state (+ observation.images.front / .wrist with pixels), action (the executed action),
  next.reward, next.done (the env's termination only: never the time limit, see below),
  next.truncated (the time limit), next.success, complementary_info.is_intervention, and the task.

lerobot's own recorder stores `done = terminated or truncated`, which makes a time-out look like a
terminal failure to SAC (no bootstrap). We keep the two apart.

Recording survives being killed. The dataset grows in `<root>.partial`, one committed episode at a time:
each kept episode is appended to a copy (`.partial.next`, lerobot's `LeRobotDataset.resume`, one data file
per episode), which then replaces `.partial` by two renames. At any instant `.partial` (or, between the two
renames, `.partial.old`) is a LeRobotDataset that loads, holding every completed episode and no partial one,
with `recording.json`: the params digest, the attempts so far and the RNG states. Run again with the same
params, recording resumes after the last committed attempt and ends with the same files, byte for byte, as
an uninterrupted run (tested with SIGKILL at random points). Other params start over. The finished dataset
replaces `<root>` only when complete, so a failed recording never touches a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hilstudy.io import canonical_stats, replace_dir
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


RECORDING_STATE = "recording.json"  # in `<root>.partial`: what a resumed recording continues from


def recording_digest(params: StudyParams) -> str:
    """What a partial recording must match to be resumed: the sections that shape its episodes, and the code
    and package versions that record them (`hilstudy.provenance`)."""
    from hilstudy.provenance import provenance

    keep = {k: getattr(params, k).model_dump(mode="json") for k in ("env", "operator", "demos")}
    if params.env.kind == "real":
        keep["real"] = params.real.model_dump(mode="json")
    keep["made_with"] = provenance("hilstudy.demos")
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"numpy": [name, keys.tolist(), pos, has_gauss, gauss], "python": [random.getstate()[0], list(random.getstate()[1]), None],
            "torch": torch.get_rng_state().tolist()}  # fmt: skip


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, _ = state["python"]
    random.setstate((version, tuple(internal), None))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """recording.json, atomically, floats exact (repr round-trips; `io.write_json` rounds for reports)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def _siblings(partial: Path) -> tuple[Path, Path]:
    return partial.with_name(partial.name + ".next"), partial.with_name(partial.name + ".old")


def recover_partial(partial: Path, digest: str, keep_other: bool = False) -> dict[str, Any] | None:
    """The state of a killed recording of these params in `partial`, made whole again; None (and nothing left
    behind) if there is none to resume. A kill between the commit's two renames left it as `.partial.old`.
    A partial recording of other params, code or versions is deleted (sim: it is re-recorded), or with
    `keep_other` (a person's recording on the real arm) kept and refused with what to do."""
    nxt, old = _siblings(partial)
    if not partial.exists() and old.exists():
        os.replace(old, partial)
    for leftover in (nxt, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    state_file = partial / RECORDING_STATE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("digest") == digest:
            return state
        if keep_other:
            raise RuntimeError(
                f"{partial}: a partial recording of {len(state.get('kept', []))} episodes was made with other params, "
                f"code or package versions; it is kept. Move it away to record anew, or restore what recorded it to resume it"
            )
    if partial.exists():
        shutil.rmtree(partial)
    return None


def _commit_episode(partial: Path, repo_id: str, features: dict, frames: list[dict], state: dict[str, Any],
                    fps: int = FPS, robot_type: str = "panda") -> None:
    """Append one episode: to a copy of the committed dataset, which then replaces it (two renames)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    nxt, old = _siblings(partial)
    if nxt.exists():
        shutil.rmtree(nxt)
    if (partial / "meta" / "info.json").exists():
        shutil.copytree(partial, nxt)
        ds = LeRobotDataset.resume(repo_id, root=nxt)
    else:  # the first kept episode
        ds = LeRobotDataset.create(repo_id=repo_id, fps=fps, root=nxt, features=features, use_videos=False, robot_type=robot_type)
    for frame in frames:
        ds.add_frame(frame)
    ds.save_episode()
    ds.finalize()
    canonical_stats(nxt)
    _write_state(nxt / RECORDING_STATE, state)
    if partial.exists():
        os.replace(partial, old)
    os.replace(nxt, partial)
    if old.exists():
        shutil.rmtree(old)


def record_demos(params: StudyParams, root: str | Path, progress: bool = True) -> Recording:
    """Record `params.demos.num_episodes` operator-driven episodes into a LeRobotDataset at `root`.

    Episode attempt i resets env and operator with seed `demos.seed + i`; with keep_failed false a
    failed attempt is dropped and the next seed is tried (at most 3x num_episodes attempts). A recording of
    the same params killed earlier resumes after its last committed attempt (see the module's docstring).
    """
    from tqdm import tqdm

    from hilstudy.real import make_operator, require_a_person
    from hilstudy.sim import make_env

    cfg = params.demos
    require_a_person(params, "demos are recorded", "`hilstudy record` (it records, then `dvc commit`s the demos stage)")
    root = Path(root)
    partial = root.with_name(root.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    digest = recording_digest(params)
    state = recover_partial(partial, digest, keep_other=params.env.kind == "real")
    if state is None:
        seed_everything(cfg.seed)
        state = {"digest": digest, "attempts": 0, "kept": [], "discarded": []}
    else:
        _set_rng_state(state["rng"])
    kept: list[dict] = state["kept"]
    discarded: list[dict] = state["discarded"]

    with make_env(params.env, params.real) as env:
        operator = make_operator(params, env)
        features = dataset_features(env)
        max_attempts = 3 * cfg.num_episodes
        bar = tqdm(total=cfg.num_episodes, initial=len(kept), desc="demos", disable=not progress)
        while len(kept) < cfg.num_episodes:
            attempt = state["attempts"]
            if attempt >= max_attempts:
                raise RuntimeError(
                    f"only {len(kept)} of {cfg.num_episodes} demos succeeded in {attempt} attempts: "
                    "the operator fails too often (check operator.noise_std) or set demos.keep_failed: true"
                )
            seed = cfg.seed + attempt
            transitions = list(rollout(env, policy=None, operator=operator, seed=seed))
            record: dict[str, Any] = {"seed": seed}
            if "cube_pos" in transitions[0].info:  # sim: the cube has not moved after the first step
                record["cube_pos"] = [float(x) for x in transitions[0].info["cube_pos"]]
            record.update(episode_metrics(transitions))
            if transitions[-1].info.get("rerecord", False):  # the person's re-record key (real arm): discard it
                record["rerecord"] = True
            keep = (record["success"] or cfg.keep_failed) and not record.get("rerecord", False)
            (kept if keep else discarded).append(record)
            state["attempts"] = attempt + 1
            state["rng"] = _rng_state()
            if keep:
                _commit_episode(partial, cfg.repo_id, features, [transition_frame(tr, cfg.task) for tr in transitions], state,
                                *((params.real.fps, params.real.robot) if params.env.kind == "real" else ()))
                bar.update(1)
            else:
                partial.mkdir(exist_ok=True)
                _write_state(partial / RECORDING_STATE, state)  # atomic; the dataset itself is unchanged
        bar.close()

    (partial / RECORDING_STATE).unlink()
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
