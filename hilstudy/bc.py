"""BC pretraining of the SAC actor on the demos: devlog 059's update, as a reproducible stage.

The actor (lerobot's GaussianActorPolicy) learns `tanh(mean(s)) ≈ a_demo` by MSE, on whole-episode
train/validation splits. Targets are compared with the squashed action `tanh(mean)`, never the pre-tanh
mean (`policy.actor(...)` / `Policy.forward` return pre-tanh means; demo actions are in [-1, 1]).

**What trains.** Exactly what SAC's own actor optimizer would update, `policy.get_optim_params()["actor"]`;
every other parameter is frozen (`requires_grad = False`) for the duration of BC:
- the critics: not even built (they live in `SACAlgorithm`, which BC never creates);
- the observation encoder when `policy.shared_encoder` is true (lerobot's default). lerobot 0.6.1 shares
  one encoder module between actor and critic and gives it to the *critic* optimizer only: the actor's
  forward detaches the image features (after the conv stack, spatial embedding and post-encoder), so no
  actor loss reaches them; the state/env-state encoders are *not* detached, so an actor loss does put
  gradients in them, but `get_optim_params()["actor"]` leaves all `actor.encoder.*` parameters out and
  SAC zeroes the critic's gradients before each critic step, so only the critic loss moves the encoder.
  BC therefore leaves a shared encoder at its (seeded) initialization, as the devlog's script did
  ("freezes critic, only trains actor (and encoder if not frozen)"): the actor learns on top of random
  features, and fine-tuning later moves those features under it through the critic loss;
- with `shared_encoder: false` the actor has its own encoder, and BC trains it (lerobot's from-scratch
  conv encoder included: `hilstudy.policy` builds it with `freeze_vision_encoder=False`).

**Evaluated twice**, on the policy loaded back from disk, without an operator: with the deterministic
action `tanh(mean)` (`eval_*`), and with sampled actions (`eval_sampled_*`), which is what lerobot's
actor does with these weights (`select_action` samples). MSE on the mean never trains the std head, so
the samples are as noisy as at initialization (pre-tanh std about 1): compare the two jitters.

**Reproducible.** `seed_everything(bc.seed)` before the network is built; batches come from a torch
Generator seeded with `bc.seed`; the validation episodes from numpy's `default_rng(bc.seed)`; torch runs
with `bc.torch_threads` CPU threads (the losses change in the last digits with the thread count). Same
params and demos on the same machine give the same losses, the same weights and the same bytes on disk.
Wall-clock time is the only nondeterministic figure and goes to `timing.json` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hilstudy.faults import check_finite
from hilstudy.io import dir_digest
from hilstudy.params import StudyParams
from hilstudy.policy import (
    ActorPolicy,
    actor_outputs,
    load_policy,
    make_policy,
    make_policy_config,
    observations,
    save_policy,
)
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.seeding import seed_everything

OBS_PREFIX = "observation."
TRAIN_LOSS = "bc/train_loss"  # dvclive metric names: data/bc/s<seed>/live/plots/metrics/bc/{train,val}_loss.tsv
VAL_LOSS = "bc/val_loss"


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
    """MSE between the actor's deterministic (squashed) action tanh(mean) and the demo action.

    obs: what the policy's preprocessor produced (images float in [0, 1]: anything else fails).
    """
    _, _, means = actor_outputs(policy, obs)
    return F.mse_loss(torch.tanh(means), action)


def freeze_all_but_actor(policy) -> tuple[list[torch.nn.Parameter], dict[int, bool]]:
    """requires_grad only on SAC's actor-optimizer parameters (see the module docstring).

    Returns (trainable parameters, the previous requires_grad flags by parameter id) for `restore_flags`.
    """
    trainable = [p for p in policy.get_optim_params()["actor"] if p.requires_grad]
    ids = {id(p) for p in trainable}
    flags = {id(p): p.requires_grad for p in policy.parameters()}
    for p in policy.parameters():
        p.requires_grad_(id(p) in ids)
    return trainable, flags


def restore_flags(policy, flags: dict[int, bool]) -> None:
    for p in policy.parameters():
        p.requires_grad_(flags[id(p)])


def evaluate(
    policy, preprocessor, params: StudyParams, episodes: int, seed: int, deterministic: bool = True, env: Any = None,
    with_operator: bool = False,
) -> dict[str, float]:
    """The policy over seeded sim episodes seed, seed+1, ...: success, length, jitter; alone, or with the operator
    in the loop (`with_operator`: a fresh operator of `params`, reset per episode from its seed), which adds the
    intervention rate the policy needs.

    deterministic: act with tanh(mean) (the default), or sample the tanh-Gaussian as lerobot's actor does
    (`select_action`); sampling draws from torch's global RNG, seeded here with `seed`. env: an open env to
    evaluate in (the real arm's one connection, shared with training); None: a fresh one of `params.env`.
    """
    from hilstudy.real import make_operator
    from hilstudy.sim import make_env

    if episodes == 0:
        return {}
    if not deterministic:
        torch.manual_seed(seed)
    act = ActorPolicy(policy, preprocessor, deterministic=deterministic)
    per_episode = []
    with contextlib.nullcontext(env) if env is not None else make_env(params.env, params.real) as env:
        operator = make_operator(params, env) if with_operator else None
        for i in range(episodes):
            per_episode.append(episode_metrics(list(rollout(env, policy=act, operator=operator, seed=seed + i))))
    out = {
        "eval_success_rate": float(np.mean([m["success"] for m in per_episode])),
        "eval_mean_length": float(np.mean([m["length"] for m in per_episode])),
        "eval_jitter": float(np.mean([m["jitter"] for m in per_episode])),
        "eval_episodes": episodes,
    }
    if with_operator:
        out["eval_intervention_rate"] = float(np.mean([m["intervention_rate"] for m in per_episode]))
    return out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's CPU thread count set to n inside the block, restored after.

    Measured here (2 shared cores, another job running): 200 BC steps took 0.8-1.0 s with 1 thread and
    14-57 s with 2 (OpenMP threads spinning against the other job); the losses also differ in the last
    digits between 1 and 2 threads, so the thread count is a parameter of the result.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _replace_dir(partial: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def bc_digest(params: StudyParams, demos_root: str | Path) -> str:
    """What a BC checkpoint must match to be resumed: the sections that shape training, the demos, and the
    code and package versions it runs with (`hilstudy.provenance`)."""
    from hilstudy.provenance import provenance

    keep = {k: getattr(params, k).model_dump(mode="json") for k in ("env", "policy", "bc")}
    keep["demos"] = dir_digest(demos_root)
    keep["made_with"] = provenance("hilstudy.bc")
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


class BCCheckpoint:
    """`<out>/checkpoint.pt`: the actor's weights, Adam's state, the batch generator's and the global RNGs'
    states, the step, the loss history and the training time so far. One file, replaced atomically (tmp +
    rename), so a kill leaves the previous checkpoint or the new one. A checkpoint of other params or demos
    is not resumed (the run starts over and replaces it)."""

    def __init__(self, path: Path, digest: str):
        self.path, self.digest = path, digest

    def save(self, policy, optimizer, gen: torch.Generator, step: int, history: dict, train_time: float) -> None:
        state = {
            "digest": self.digest, "step": step, "history": history, "train_time": train_time,
            "policy": policy.state_dict(), "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }  # fmt: skip
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self, policy, optimizer, gen: torch.Generator) -> dict | None:
        """Restore a checkpoint of these params into policy, optimizer, generator and RNGs; None if there is none."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, weights_only=False)
        if state.get("digest") != self.digest:
            return None
        policy.load_state_dict(state["policy"], strict=True)
        mine = policy.state_dict()
        for key, tensor in state["policy"].items():  # verify, don't assume
            if not torch.equal(mine[key], tensor):
                raise RuntimeError(f"bc resume: tensor {key} did not load from {self.path}")
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        return state

    def kept(self) -> str:
        if not self.path.exists():
            return "no checkpoint was saved yet (the previous outputs stay)"
        return f"the last good checkpoint is kept ({self.path}, step {torch.load(self.path, weights_only=False)['step']})"

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def train_bc(params: StudyParams, demos_root: str | Path, out_dir: str | Path, live: Any | None = None) -> dict[str, Any]:
    """Train, validate, evaluate and save the BC actor (with `bc.torch_threads` torch threads). Returns the
    metrics, with the loss curves under `history` and the wall-clock times under `timing`.

    Writes `<out_dir>/policy/` (lerobot format: config, safetensors, processors) atomically, loads it back
    with `load_policy` (strict, every tensor compared) and evaluates *that* loaded policy in the sim.
    live: a dvclive `Live` (optional): train loss at steps 1..steps, val loss at step 0 (before training),
    every `bc.val_every` steps and at the last step.
    """
    with torch_threads(params.bc.torch_threads):
        return _train_bc(params, demos_root, out_dir, live)


def _train_bc(params: StudyParams, demos_root: str | Path, out_dir: str | Path, live: Any | None) -> dict[str, Any]:
    from hilstudy.demos import dataset_features
    from hilstudy.sim import make_env

    cfg = params.bc
    out_dir = Path(out_dir)
    seed_everything(cfg.seed)
    demos = load_demo_tensors(demos_root)
    with make_env(params.env, params.real) as env:
        check_features(demos.features, dataset_features(env), demos_root)
    train_idx, val_idx = split_episodes(demos.episode, cfg.val_episodes, cfg.seed)

    config = make_policy_config(demos.features, params.policy)
    policy, pre, post = make_policy(config)
    # train on exactly what the saved processors produce (identity normalization, batched, on device)
    demos.obs = observations(pre(dict(demos.obs)))
    train, val = demos.take(train_idx), demos.take(val_idx)

    trainable, flags = freeze_all_but_actor(policy)
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = BCCheckpoint(out_dir / "checkpoint.pt", bc_digest(params, demos_root))

    def log(name: str, step: int, value: float) -> None:
        if live is not None:
            live.step = step
            live.log_metric(name, value)

    def val_loss() -> float:
        policy.eval()
        with torch.no_grad():
            loss = float(bc_loss(policy, val.obs, val.action))
        policy.train()
        return loss

    resumed = ckpt.load(policy, optimizer, gen)  # verified: every tensor equal to the file's
    if resumed is None:
        history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
        start, train_time = 1, 0.0
        history["val_step"].append(0)
        history["val_loss"].append(val_loss())
    else:
        history, start, train_time = resumed["history"], resumed["step"] + 1, resumed["train_time"]
    initial_val = history["val_loss"][0]
    for step, v in zip(history["val_step"], history["val_loss"], strict=True):  # a resumed run's curves, again
        log(VAL_LOSS, step, v)
    for step, v in zip(history["step"], history["train_loss"], strict=True):
        log(TRAIN_LOSS, step, v)
    policy.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps + 1):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
        loss = bc_loss(policy, {k: v[idx] for k, v in train.obs.items()}, train.action[idx])
        check_finite({"bc train loss": loss.item()}, f"bc: step {step}", ckpt.kept)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        log(TRAIN_LOSS, step, history["train_loss"][-1])
        if step % cfg.val_every == 0 or step == cfg.steps:
            v = val_loss()
            history["val_step"].append(step)
            history["val_loss"].append(v)
            log(VAL_LOSS, step, v)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            ckpt.save(policy, optimizer, gen, step, history, train_time + time.perf_counter() - t0)
    train_time += time.perf_counter() - t0
    restore_flags(policy, flags)  # back to lerobot's own flags (what fine-tuning expects)
    policy.eval()
    if live is not None:
        live.make_summary()

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
    _replace_dir(partial, final)
    ckpt.remove()  # the trained weights are in policy/ now

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
        "best_val_loss": min(history["val_loss"]),
        "trainable_parameters": int(sum(p.numel() for p in trainable)),
        "frozen_parameters": int(sum(p.numel() for p in policy.parameters()) - sum(p.numel() for p in trainable)),
    }
    metrics.update(evaluate(reloaded, reloaded_pre, params, cfg.eval_episodes, cfg.eval_seed))
    # how lerobot's actor would act with these weights: it samples, and BC never trained the std
    sampled = evaluate(reloaded, reloaded_pre, params, cfg.eval_episodes, cfg.eval_seed, deterministic=False)
    metrics.update({f"eval_sampled_{k[5:]}": v for k, v in sampled.items() if k != "eval_episodes"})
    metrics["timing"] = {"train_time_s": train_time, "eval_time_s": time.perf_counter() - t1}
    metrics["history"] = history
    return metrics


def run_bc(params: StudyParams, demos_root: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """The `bc` stage: train_bc with dvclive curves, then metrics.json and timing.json. Returns the metrics
    (with `history` and `timing`).

    Writes under out_dir: `policy/` (lerobot format), `live/` (dvclive: `metrics.json` with the last
    losses and step, `plots/metrics/bc/train_loss.tsv` and `val_loss.tsv`, columns step and value),
    `metrics.json` (deterministic) and `timing.json` (wall-clock seconds). dvclive is told not to save a
    DVC experiment (`save_dvc_exp=False`), not to write a dvc.yaml (`dvcyaml=None`: the project's
    dvc.yaml declares the plots) and not to make a report; the curves are written into `live.partial/`
    and moved into place only when the stage succeeded.
    """
    from dvclive import Live

    from hilstudy.io import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    live_partial = out_dir / "live.partial"
    if live_partial.exists():
        shutil.rmtree(live_partial)
    with Live(dir=str(live_partial), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        metrics = train_bc(params, demos_root, out_dir, live=live)
    _replace_dir(live_partial, out_dir / "live")
    scalar = {k: v for k, v in metrics.items() if k not in ("history", "timing")}
    write_json(out_dir / "metrics.json", scalar)
    write_json(out_dir / "timing.json", metrics["timing"])
    return metrics
