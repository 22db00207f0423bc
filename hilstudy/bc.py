"""BC pretraining of the SAC actor on the demos: devlog 059's update, as a reproducible stage.

The actor (lerobot's GaussianActorPolicy) learns `tanh(mean(s)) ≈ a_demo` by MSE, on whole-episode
train/validation splits. Only what SAC's own actor optimizer would update is trained
(`policy.get_optim_params()["actor"]`): the critics do not exist yet, and with `shared_encoder: true`
the observation encoder belongs to the critic side (lerobot steps it with the critic loss only, and
detaches image features on the actor side), so BC leaves it at its initialization, as the devlog did
("freezes critic, only trains actor (and encoder if not frozen)").

Targets are compared with the squashed action `tanh(mean)`, never the pre-tanh mean (`Policy.forward`
returns pre-tanh means; the demo actions are in [-1, 1]).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hilstudy.params import StudyParams
from hilstudy.policy import (
    ActorPolicy,
    check_images,
    load_policy,
    make_policy,
    make_policy_config,
    observations,
    save_policy,
)
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.seeding import seed_everything

OBS_PREFIX = "observation."


@dataclass
class DemoTensors:
    obs: dict[str, torch.Tensor]  # observation.* stacked over frames (images CHW float [0, 1])
    action: torch.Tensor  # (N, 4) in [-1, 1]
    episode: np.ndarray  # (N,) episode index of each frame
    features: dict[str, dict]  # the dataset's lerobot features
    reward: np.ndarray  # (N,) next.reward
    done: np.ndarray  # (N,) next.done: the env's termination
    intervention: np.ndarray  # (N,) complementary_info.is_intervention

    def __len__(self) -> int:
        return len(self.action)

    def take(self, idx: np.ndarray) -> DemoTensors:
        t = torch.as_tensor(idx)
        return DemoTensors(
            {k: v[t] for k, v in self.obs.items()}, self.action[t], self.episode[idx], self.features,
            self.reward[idx], self.done[idx], self.intervention[idx],
        )


def load_demo_tensors(root: str | Path) -> DemoTensors:
    """Every frame of a demo dataset as tensors, read with lerobot's loader."""
    from hilstudy.demos import load_demos

    ds = load_demos(root)
    features = {k: dict(v) for k, v in ds.meta.features.items()}
    keys = [k for k in features if k.startswith(OBS_PREFIX)]
    image_keys = [k for k in keys if features[k]["dtype"] in ("image", "video")]
    cols = ds.hf_dataset.with_format("numpy")
    obs: dict[str, torch.Tensor] = {}
    for k in keys:
        if k in image_keys:  # lerobot decodes images to CHW float in [0, 1]
            obs[k] = torch.stack([ds[i][k] for i in range(len(ds))]).float()
        else:
            obs[k] = torch.as_tensor(np.stack(cols[k]), dtype=torch.float32)
    action = torch.as_tensor(np.stack(cols["action"]), dtype=torch.float32)
    if action.abs().max() > 1.0:
        raise ValueError(f"{root}: demo actions must lie in [-1, 1], found |a| up to {float(action.abs().max()):.3g}")
    return DemoTensors(
        obs,
        action,
        np.asarray(cols["episode_index"]).ravel(),
        features,
        np.asarray(cols["next.reward"], dtype=np.float32).ravel(),
        np.asarray(cols["next.done"]).astype(bool).ravel(),
        np.asarray(cols["complementary_info.is_intervention"], dtype=np.float32).ravel(),
    )


def check_features(demo_features: dict, env_features: dict, root: str | Path) -> None:
    """The demos must have been recorded with the observation layout the study now uses."""
    def layout(f: dict) -> dict:
        return {k: tuple(v["shape"]) for k, v in f.items() if k.startswith(OBS_PREFIX) or k == "action"}

    a, b = layout(demo_features), layout(env_features)
    if a != b:
        raise ValueError(f"{root}: demos have features {a} but the env (params `env`) gives {b}: re-record the demos")


def split_episodes(episode: np.ndarray, val_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (train, val), holding out `val_episodes` whole episodes chosen by `seed`."""
    episodes = np.unique(episode)
    if val_episodes >= len(episodes):
        raise ValueError(f"bc.val_episodes ({val_episodes}) must be smaller than the number of demo episodes ({len(episodes)})")
    held = np.random.default_rng(seed).permutation(episodes)[:val_episodes]
    val = np.isin(episode, held)
    return np.flatnonzero(~val), np.flatnonzero(val)


def bc_loss(policy, obs: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
    """MSE between the actor's deterministic (squashed) action and the demo action."""
    check_images(obs)
    _, _, means = policy.actor(obs, None)
    return F.mse_loss(torch.tanh(means), action)


def evaluate(policy, preprocessor, params: StudyParams, episodes: int, seed: int) -> dict[str, float]:
    """Success of the deterministic policy alone (no operator) over seeded sim episodes."""
    from hilstudy.sim import make_env

    if episodes == 0:
        return {}
    act = ActorPolicy(policy, preprocessor, deterministic=True)
    per_episode = []
    with make_env(params.env) as env:
        for i in range(episodes):
            per_episode.append(episode_metrics(list(rollout(env, policy=act, seed=seed + i))))
    return {
        "eval_success_rate": float(np.mean([m["success"] for m in per_episode])),
        "eval_mean_length": float(np.mean([m["length"] for m in per_episode])),
        "eval_jitter": float(np.mean([m["jitter"] for m in per_episode])),
        "eval_episodes": episodes,
    }


def train_bc(params: StudyParams, demos_root: str | Path, out_dir: str | Path, live: Any | None = None) -> dict[str, Any]:
    """Train, validate, evaluate and save the BC actor. Returns the metrics (timing under `timing`).

    Writes `<out_dir>/policy/` (lerobot format: config, safetensors, processors) atomically, and loads it
    back to prove the saved weights are the trained ones.
    """
    from hilstudy.demos import dataset_features
    from hilstudy.sim import make_env

    cfg = params.bc
    out_dir = Path(out_dir)
    seed_everything(cfg.seed)
    demos = load_demo_tensors(demos_root)
    with make_env(params.env) as env:
        check_features(demos.features, dataset_features(env), demos_root)
    train_idx, val_idx = split_episodes(demos.episode, cfg.val_episodes, cfg.seed)

    config = make_policy_config(demos.features, params.policy)
    policy, pre, post = make_policy(config)
    # the processors the saved policy will carry (identity normalization, batching) applied to the data
    demos.obs = observations(pre(dict(demos.obs)))
    train, val = demos.take(train_idx), demos.take(val_idx)

    trainable = policy.get_optim_params()["actor"]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)

    def val_loss() -> float:
        policy.eval()
        with torch.no_grad():
            loss = float(bc_loss(policy, val.obs, val.action))
        policy.train()
        return loss

    history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
    initial_val = val_loss()
    history["val_step"].append(0)
    history["val_loss"].append(initial_val)
    policy.train()
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
        loss = bc_loss(policy, {k: v[idx] for k, v in train.obs.items()}, train.action[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        if live is not None:
            live.log_metric("bc/train_loss", history["train_loss"][-1])
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = val_loss()
            history["val_step"].append(step)
            history["val_loss"].append(v)
            if live is not None:
                live.log_metric("bc/val_loss", v)
        if live is not None:
            live.next_step()
    train_time = time.perf_counter() - t0
    policy.eval()

    # save atomically, then prove the saved weights are the trained ones
    final = out_dir / "policy"
    partial = out_dir / "policy.partial"
    if partial.exists():
        shutil.rmtree(partial)
    save_policy(policy, pre, post, partial)
    reloaded, reloaded_pre, _ = load_policy(partial, expected_config=config)
    trained = policy.state_dict()
    for key, tensor in reloaded.state_dict().items():
        if not torch.equal(tensor, trained[key]):
            raise RuntimeError(f"saved BC policy differs from the trained one at {key}")
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)

    t1 = time.perf_counter()
    metrics: dict[str, Any] = {
        "steps": cfg.steps,
        "epochs": cfg.steps * cfg.batch_size / len(train),
        "samples": len(train),
        "val_samples": len(val),
        "train_episodes": int(len(np.unique(train.episode))),
        "val_episodes": int(len(np.unique(val.episode))),
        "final_train_loss": history["train_loss"][-1],
        "initial_val_loss": initial_val,
        "final_val_loss": history["val_loss"][-1],
        "trainable_parameters": int(sum(p.numel() for p in trainable)),
    }
    metrics.update(evaluate(reloaded, reloaded_pre, params, cfg.eval_episodes, cfg.eval_seed))
    metrics["timing"] = {"train_time_s": train_time, "eval_time_s": time.perf_counter() - t1}
    metrics["history"] = history
    return metrics
