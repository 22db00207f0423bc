"""HIL fine-tuning: lerobot 0.6.1's SAC (as `sac_bc`) with the simulated operator in the loop.

One process, CleanRL style: act, store, update, log, in one loop. What HIL-SERL / RLPD prescribe:
- two replay buffers mixed 50/50 per batch (`OnlineOfflineMixer`): the offline one starts with the demos;
  intervention transitions go to both, the policy's own transitions only online;
- the executed action is stored (the operator's during a takeover);
- `done` is the env's termination only; a time-limit truncation bootstraps (lerobot's SAC ignores
  `truncated`, so it must never be folded into `done`);
- **a takeover ends the policy's attempt**: the policy's last transition before the operator takes over is
  stored with `done = True` (reward 0). Otherwise stalling summons a rescue that ends in success, and a
  policy learns to stall (a prototype here went from 90% to 0% success on this alone).

Every `checkpoint_every` env steps, at the next episode end, the whole run state is saved in lerobot's
checkpoint layout (`checkpoint/pretrained_model/` + `training_state/`): policy, critics and temperature,
optimizers, both buffers, counters, logs so far and every RNG. A stopped run resumes from it and continues
exactly as the uninterrupted run would have (tested), and the resumed actor is checked against the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilstudy.faults import NumericalFault, check_finite
from hilstudy.io import dir_digest
from hilstudy.provenance import provenance
from hilstudy.params import StudyParams
from hilstudy.policy import (
    ActorPolicy,
    load_policy,
    make_policy,
    make_policy_config,
    observations,
    resolve_device,
    save_policy,
)
from hilstudy.agents.nstep import NStepWindow, Step
from hilstudy.rollout import EpisodeEndReward, Transition, episode_metrics, rollout
from hilstudy.seeding import seed_everything

EPISODE_SEED_STRIDE = 1_000_003  # episode i of seed s resets with s * stride + i: apart from demo and eval seeds
EVAL_SEED_STRIDE = 1_000  # run seed s evaluates on episodes eval_seed + s * stride + i: other cubes per seed


def eval_seed(cfg) -> int:
    """The first evaluation episode's seed for a run: the same at every evaluation of the run and for every run
    of one seed (treatment and control are paired on the same cubes), different between seeds (a seed's spread
    includes the evaluation cubes)."""
    return cfg.eval_seed + cfg.seed * EVAL_SEED_STRIDE


class StopRun(Exception):
    """Raised by `finetune(stop_at=...)` to simulate an interrupted run (tests)."""


# ---------------------------------------------------------------------------------------- buffers
def _obs_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    from hilstudy.policy import to_policy_batch

    return {k: v.unsqueeze(0) for k, v in to_policy_batch(obs).items()}


def add_nstep(buffer, item) -> None:
    """Store an n-step transition (`hilstudy.agents.nstep.NStep`), its discount gamma^m in complementary_info."""
    buffer.add(
        state=_obs_tensors(item.first.obs),
        action=torch.as_tensor(item.first.action, dtype=torch.float32).unsqueeze(0),
        reward=float(item.reward),
        next_state=_obs_tensors(item.next_obs),
        done=bool(item.done),
        truncated=bool(item.truncated),
        complementary_info={"is_intervention": torch.tensor([float(item.first.is_intervention)]),
                            "discount": torch.tensor([float(item.discount)])},  # fmt: skip
    )


def add_transition(buffer, tr: Transition, done: bool) -> None:
    buffer.add(
        state=_obs_tensors(tr.obs),
        action=torch.as_tensor(tr.action, dtype=torch.float32).unsqueeze(0),
        reward=float(tr.reward),
        next_state=_obs_tensors(tr.next_obs),
        done=bool(done),
        truncated=bool(tr.truncated),
        complementary_info={"is_intervention": torch.tensor([float(tr.is_intervention)])},
    )


def make_buffer(capacity: int, state_keys: list[str], pixels: bool, device: str = "cpu"):
    """lerobot's ReplayBuffer, stored in CPU memory; sampled batches land on `device` (the learner's).

    With images it augments them with lerobot's own `random_shift` (pad 4, DrQ's), run eagerly: left to itself the
    buffer wraps it in `torch.compile`, whose first call took 49 s here (and needs a C++ compiler) and whose
    compiled code was slower than eager on CPU (0.28 vs 0.23 s per batch of 256 128x128 images, one thread)."""
    import functools

    from lerobot.rl.buffer import ReplayBuffer, random_shift

    # optimize_memory reads next_state as states[idx + 1]: wrong for an intervention-only buffer
    return ReplayBuffer(capacity, device=device, state_keys=state_keys, use_drq=pixels, storage_device="cpu",
                        optimize_memory=False, image_augmentation_function=functools.partial(random_shift, pad=4))


def buffer_from_demos(demos, capacity: int, pixels: bool, device: str = "cpu", nstep: tuple[int, float] | None = None):
    """The offline buffer, from demo frames: next_state is the next frame of the same episode.

    The last frame of an episode has no next frame in the dataset; it is terminal (next.done) for every
    successful demo, where SAC ignores next_state. A failed demo kept with keep_failed ends truncated:
    its last next_state is its own state (an approximation, the one lerobot's own conversion makes).
    nstep (n, gamma): store n-step transitions instead (DrQ-v2), made per episode by `NStepWindow`.
    """
    from hilstudy.agents.nstep import NStepWindow, Step

    keys = list(demos.obs)
    buf = make_buffer(capacity, keys, pixels, device)
    n = len(demos)
    window = NStepWindow(*nstep) if nstep is not None else None
    for i in range(n):
        last = i == n - 1 or demos.episode[i + 1] != demos.episode[i]
        j = i if last else i + 1
        state = {k: demos.obs[k][i : i + 1] for k in keys}
        next_state = {k: demos.obs[k][j : j + 1] for k in keys}
        if window is not None:
            step = Step(state, demos.action[i], float(demos.reward[i]), next_state, bool(demos.done[i]),
                        bool(last and not demos.done[i]), bool(demos.intervention[i] > 0.5))  # fmt: skip
            for item in window.push(step) + (window.flush() if last else []):
                _add_demo_nstep(buf, item)
            continue
        buf.add(
            state=state,
            action=demos.action[i : i + 1],
            reward=float(demos.reward[i]),
            next_state=next_state,
            done=bool(demos.done[i]),
            truncated=bool(last and not demos.done[i]),
            complementary_info={"is_intervention": torch.tensor([float(demos.intervention[i])])},
        )
    return buf


def _add_demo_nstep(buf, item) -> None:
    buf.add(
        state=item.first.obs,
        action=torch.as_tensor(item.first.action, dtype=torch.float32).reshape(1, -1),
        reward=float(item.reward),
        next_state=item.next_obs,
        done=bool(item.done),
        truncated=bool(item.truncated),
        complementary_info={"is_intervention": torch.tensor([float(item.first.is_intervention)]),
                            "discount": torch.tensor([float(item.discount)])},  # fmt: skip
    )


BUFFER_FIELDS = ("actions", "rewards", "dones", "truncateds", "episode_ends")


def buffer_state(buf) -> dict[str, Any]:
    if not buf.initialized:
        return {"initialized": False}
    n = buf.size if buf.size < buf.capacity else buf.capacity
    return {
        "initialized": True,
        "position": buf.position,
        "size": buf.size,
        "states": {k: v[:n].clone() for k, v in buf.states.items()},
        "next_states": {k: v[:n].clone() for k, v in buf.next_states.items()},
        "complementary_info": {k: v[:n].clone() for k, v in buf.complementary_info.items()},
        **{f: getattr(buf, f)[:n].clone() for f in BUFFER_FIELDS},
    }


def load_buffer_state(buf, state: dict[str, Any]) -> None:
    if not state["initialized"]:
        return
    first_state = {k: v[:1] for k, v in state["states"].items()}
    buf._initialize_storage(
        state=first_state,
        action=state["actions"][:1],
        complementary_info={k: v[:1] for k, v in state["complementary_info"].items()} or None,
    )
    n = len(state["actions"])
    for k, v in state["states"].items():
        buf.states[k][:n] = v
    for k, v in state["next_states"].items():
        buf.next_states[k][:n] = v
    for k, v in state["complementary_info"].items():
        buf.complementary_info[k][:n] = v
    for f in BUFFER_FIELDS:
        getattr(buf, f)[:n] = state[f]
    buf.position, buf.size = state["position"], state["size"]


# -------------------------------------------------------------------------------------- the agent
def algorithm_config(params: StudyParams, policy_config):
    """sac_bc's config (lerobot's SAC + the BC term), or drqv2's with the same shared fields."""
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import CriticNetworkConfig

    from hilstudy.agents import DrQv2AlgorithmConfig, SACBCAlgorithmConfig

    f, p = params.finetune, params.policy
    # built field by field: lerobot's from_policy_config would drop the critic sizes
    shared = dict(
        policy_config=policy_config,
        critic_network_kwargs=CriticNetworkConfig(hidden_dims=list(p.critic_hidden_dims)),
        num_critics=p.num_critics,
        discount=f.discount,
        temperature_init=f.temperature_init,
        utd_ratio=f.utd_ratio,
        actor_lr=f.actor_lr,
        critic_lr=f.critic_lr,
        temperature_lr=f.temperature_lr,
        bc_weight=f.bc_weight,
        bc_mode=f.bc_mode,
        bc_alpha=f.bc_alpha,
        actor_warmup_updates=f.actor_warmup_updates,
    )
    if f.algorithm == "drqv2":
        return DrQv2AlgorithmConfig(**shared, n_step=f.n_step, std_init=f.std_init, std_final=f.std_final,
                                    std_steps=f.std_steps, std_clip=f.std_clip)  # fmt: skip
    return SACBCAlgorithmConfig(**shared)


def build_agent(params: StudyParams, features: dict, bc_dir: str | Path | None, device: str = "cpu"):
    """(algorithm, preprocessor, postprocessor): the policy from scratch or from the BC weights, on `device`."""
    from hilstudy.agents import make_algorithm

    config = make_policy_config(features, params.policy, device)
    if params.finetune.init == "bc":
        if bc_dir is None:
            raise ValueError("finetune.init is 'bc' but no BC policy folder was given")
        policy, pre, post = load_policy(bc_dir, expected_config=config, device=device)  # strict, features checked, tensors compared
    else:
        policy, pre, post = make_policy(config)
    policy.train()
    return make_algorithm(policy, algorithm_config(params, policy.config)), pre, post


def params_digest(params: StudyParams, inputs: dict[str, str] | None = None, device: str = "cpu",
                  made_with: dict[str, str] | None = None) -> str:
    """What a checkpoint must match to be resumed: the sections that shape the run, the device the learner
    actually ran on (CPU and GPU round differently), the digests of the input files it learns from (demos;
    BC actor; classifier), and `made_with`, the code the stage runs and the installed versions
    (`hilstudy.provenance`, taken when the run started). A checkpoint made from other inputs (re-recorded
    demos, a retrained BC actor or classifier), on another device, by other code or other package versions is
    not resumed: the run starts over."""
    keep = {k: getattr(params, k).model_dump(mode="json") for k in ("env", "operator", "policy", "finetune")}
    del keep["finetune"]["overlap"]  # how updates are scheduled, not what they compute: either mode may resume
    keep["finetune"]["device"] = device  # resolved ('auto' is cpu or cuda)
    keep["inputs"] = inputs or {}
    keep["made_with"] = made_with if made_with is not None else provenance("hilstudy.finetune")
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------------- the run
class Run:
    """All state of one fine-tuning run: what a checkpoint holds."""

    def __init__(
        self,
        params: StudyParams,
        demos_root: str | Path,
        bc_dir: str | Path | None,
        out_dir: str | Path,
        classifier_dir: str | Path | None = None,
    ):
        from lerobot.rl.data_sources.data_mixer import OnlineOfflineMixer
        from lerobot.rl.trainer import RLTrainer

        from hilstudy.bc import load_demo_tensors

        self.params, self.cfg = params, params.finetune
        self.device = resolve_device(self.cfg.device)  # before any compute: 'cuda' without one fails here
        self.made_with = provenance("hilstudy.finetune")  # the code this process runs, as it was when it started
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.bc_dir = bc_dir
        seed_everything(self.cfg.seed)
        demos = load_demo_tensors(demos_root)
        self.features = demos.features
        self.algorithm, self.pre, self.post = build_agent(params, demos.features, bc_dir, self.device)
        self.inputs = {"demos": dir_digest(demos_root)}
        if self.cfg.init == "bc":
            self.inputs["bc"] = dir_digest(Path(bc_dir) / "model.safetensors")
        self.reward_fn = None
        if self.cfg.reward == "classifier":  # loaded (and verified) before any compute; it must read what the env gives
            from hilstudy.reward import load_classifier

            if classifier_dir is None:
                raise ValueError("finetune.reward is 'classifier' but no classifier folder was given")
            self.reward_fn = load_classifier(classifier_dir, expected_inputs=self.algorithm.policy.config.input_features)
            self.inputs["classifier"] = dir_digest(classifier_dir)
        self.pixels = params.env.obs == "pixels"
        demos.obs = observations(self.pre(dict(demos.obs)))
        self.drqv2 = self.cfg.algorithm == "drqv2"
        nstep = (self.cfg.n_step, self.cfg.discount) if self.drqv2 else None
        self.offline = buffer_from_demos(demos, len(demos) + self.cfg.env_steps, self.pixels, self.device, nstep)
        self.window = NStepWindow(*nstep) if nstep is not None else None  # drqv2: n-step transitions as stored
        self.online = make_buffer(self.cfg.buffer_capacity, list(demos.obs), self.pixels, self.device)
        self.mixer = OnlineOfflineMixer(self.online, self.offline, online_ratio=self.cfg.online_ratio)
        self.trainer = RLTrainer(self.algorithm, self.mixer, self.cfg.batch_size, preprocessor=self.pre)
        self.env_step = 0
        self.episode = 0
        self.updates = 0
        self.logs: dict[str, list[dict]] = {"updates": [], "episodes": [], "evals": []}
        self._acc: dict[str, list[float]] = {}
        self.train_time = 0.0
        self._learner: ThreadPoolExecutor | None = None  # overlapped mode: the thread the updates run in
        self._inflight: Future | None = None  # the update running beside the env step
        self._pending: Transition | None = None  # the last transition, stored once the next step is decided

    # -------------------------------------------------------------------------------- checkpoints
    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint"

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        tmp = self.out / "checkpoint.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        save_policy(self.algorithm.policy, self.pre, self.post, tmp / "pretrained_model")
        (tmp / "algorithm").mkdir(parents=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.algorithm.state_dict().items()}, str(tmp / "algorithm" / "model.safetensors"))
        ts = tmp / "training_state"
        ts.mkdir()
        torch.save({k: o.state_dict() for k, o in self.algorithm.get_optimizers().items()}, ts / "optimizers.pt")
        torch.save({"online": buffer_state(self.online), "offline": buffer_state(self.offline)}, ts / "buffers.pt")
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if self.device == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, ts / "rng.pt")
        state = {
            "params_digest": params_digest(self.params, self.inputs, self.device, self.made_with),
            "env_step": self.env_step,
            "episode": self.episode,
            "updates": self.updates,
            "optimization_step": self.algorithm.optimization_step,
            "logs": self.logs,
            "acc": self._acc,
        }
        (ts / "training_step.json").write_text(json.dumps(state))
        # wall-clock stays outside the checkpoint, which must be byte-identical from run to run
        (self.out / "timing.json").write_text(json.dumps({"train_time_s": self.train_time, "env_step": self.env_step}))
        # swap by renames: a kill at any point leaves `checkpoint` or, between the renames, `checkpoint.old`
        old = self.out / "checkpoint.old"
        if old.exists():
            shutil.rmtree(old)
        if self.ckpt.exists():
            os.replace(self.ckpt, old)
        os.replace(tmp, self.ckpt)
        shutil.rmtree(old, ignore_errors=True)

    def resume(self) -> bool:
        """Load the checkpoint if there is one for these params; verify what was loaded."""
        from safetensors.torch import load_file

        old = self.out / "checkpoint.old"
        if not self.ckpt.exists() and old.exists():  # killed between the two renames of save_checkpoint
            os.replace(old, self.ckpt)
        state_file = self.ckpt / "training_state" / "training_step.json"
        if not state_file.exists():
            return False
        state = json.loads(state_file.read_text())
        if state["params_digest"] != params_digest(self.params, self.inputs, self.device, self.made_with):
            self.progress(f"not resuming {self.ckpt}: made by other params, inputs, code or package versions; starting over")
            return False  # another run's checkpoint: start over (it is replaced at the first checkpoint)
        policy, _, _ = load_policy(self.ckpt / "pretrained_model", expected_config=self.algorithm.policy.config, device=self.device)
        self.algorithm.policy.load_state_dict(policy.state_dict(), strict=True)
        algo = load_file(str(self.ckpt / "algorithm" / "model.safetensors"), device=self.device)
        self.algorithm.load_state_dict(algo)
        for name, sd in (("policy", policy.state_dict()), ("algorithm", algo)):  # verify, don't assume
            current = self.algorithm.policy.state_dict() if name == "policy" else self.algorithm.state_dict()
            for k, v in sd.items():
                if not torch.equal(current[k].cpu(), v.cpu()):
                    raise RuntimeError(f"resume: {name} tensor {k} did not load")
        ts = self.ckpt / "training_state"
        for k, sd in torch.load(ts / "optimizers.pt", weights_only=False).items():
            self.algorithm.get_optimizers()[k].load_state_dict(sd)
        bufs = torch.load(ts / "buffers.pt", weights_only=False)
        load_buffer_state(self.online, bufs["online"])
        self.offline.position = self.offline.size = 0
        load_buffer_state(self.offline, bufs["offline"])
        rng = torch.load(ts / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and self.device == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.env_step, self.episode, self.updates = state["env_step"], state["episode"], state["updates"]
        self.algorithm.optimization_step = state["optimization_step"]
        self.logs, self._acc = state["logs"], state["acc"]
        timing = self.out / "timing.json"
        self.train_time = json.loads(timing.read_text()).get("train_time_s", 0.0) if timing.exists() else 0.0
        self.trainer.reset_data_iterator()
        self.progress(f"resumed from {self.ckpt} at env step {self.env_step}")
        return True

    # ------------------------------------------------------------------------------------ logging
    def _update(self, env_step: int):
        """One learner step at `env_step` (lerobot's trainer: critic, actor and temperature updates, at the UTD
        ratio; drqv2's std schedule reads the step, passed in so that a learner thread never reads a counter
        the env loop is changing).

        A NaN that enters mid-step (e.g. a corrupt transition) can make lerobot raise before any loss comes
        back (a NaN actor fails its Gaussian's Cholesky); that failure is reported as the numerical fault it
        is, naming the non-finite tensors."""
        if self.drqv2:
            self.algorithm.env_step = env_step
        try:
            stats = self.trainer.training_step()
        except (RuntimeError, ValueError) as err:
            bad = [k for k, v in self.algorithm.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if not bad:
                raise
            raise NumericalFault(
                f"fine-tuning {self.out}: update {self.updates + 1} (env step {self.env_step}): non-finite weights in "
                f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''} ({type(err).__name__}); stopped, {self._kept()}"
            ) from err
        self.updates += 1
        return stats

    def _log_update(self, stats) -> None:
        values = {k: float(v) for k, v in {**stats.losses, **stats.extra}.items()}
        check_finite(values, f"fine-tuning {self.out}: update {self.updates} (env step {self.env_step})", self._kept)
        for k, v in values.items():
            self._acc.setdefault(k, []).append(v)
        if self.updates % self.cfg.log_every == 0:
            row = {"env_step": self.env_step, "update": self.updates, **{k: float(np.mean(v)) for k, v in self._acc.items()}}
            self.logs["updates"].append(row)
            self._acc = {}

    def _kept(self) -> str:
        state = self.ckpt / "training_state" / "training_step.json"
        if not state.exists():
            return "no checkpoint was saved yet"
        return f"the last good checkpoint is kept ({self.ckpt}, env step {json.loads(state.read_text())['env_step']})"

    def evaluate(self, env: Any = None) -> None:
        from hilstudy.bc import evaluate

        was_training = self.algorithm.policy.training
        if self.params.env.kind == "real":  # one arm: evaluate on the training env's connection
            env = self._env
        seed = eval_seed(self.cfg)
        m = evaluate(self.algorithm.policy, self.pre, self.params, self.cfg.eval_episodes, seed, env=env)
        row = {"env_step": self.env_step, "success_rate": m["eval_success_rate"], "mean_length": m["eval_mean_length"], "jitter": m["eval_jitter"]}
        if self.cfg.eval_with_operator:  # the deterministic policy with the operator in the loop: how much help it needs
            mo = evaluate(self.algorithm.policy, self.pre, self.params, self.cfg.eval_episodes, seed, env=env, with_operator=True)
            row["intervention_rate"], row["success_with_operator"] = mo["eval_intervention_rate"], mo["eval_success_rate"]
        self.algorithm.policy.train(was_training)
        self.logs["evals"].append(row)
        extra = f", intervention rate with the operator {row['intervention_rate']:.0%}" if "intervention_rate" in row else ""
        self.progress(f"env step {self.env_step}: eval success {row['success_rate']:.0%}{extra}")

    def progress(self, line: str) -> None:
        """A progress line to `<out>/progress.log` (tail -f it), not to stdout: the executed notebook must
        be the same whether the run went straight through or resumed from a checkpoint."""
        with open(self.out / "progress.log", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    # ------------------------------------------------------------------------------------ the loop
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        from hilstudy.real import make_operator
        from hilstudy.sim import make_env

        cfg = self.cfg
        with make_env(self.params.env, self.params.real) as base:
            self._env = base
            try:
                return self._run(base, make_operator(self.params, base) if cfg.interventions else None, stop_at)
            finally:
                self._env = None

    def _run(self, base: Any, operator: Any, stop_at: int | None) -> dict[str, Any]:
        cfg = self.cfg
        if self.drqv2:  # tanh(mean) + scheduled noise, by the env steps taken so far
            from hilstudy.agents import NoisyActor

            act = NoisyActor(self.algorithm.policy, self.pre, self.algorithm.config, lambda: self.env_step)
        else:
            act = ActorPolicy(self.algorithm.policy, self.pre, deterministic=False)
        if self.env_step == 0 and cfg.eval_episodes > 0 and not self.logs["evals"]:
            self.evaluate()  # success at step 0: what the start (scratch or BC) is worth
        next_ckpt = (self.env_step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        # reward `episode_end`: success is judged once, at the time limit (devlog 059's terminal-only signal)
        env = EpisodeEndReward(base, self.params.env.max_episode_steps) if cfg.reward == "episode_end" else base
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner") as learner:
            self._learner = learner if cfg.overlap else None
            while self.env_step < cfg.env_steps:
                t0 = time.perf_counter()
                seed = cfg.seed * EPISODE_SEED_STRIDE + self.episode
                episode: list[Transition] = []
                self._pending = None
                for tr in rollout(env, policy=act, operator=operator, seed=seed, reward_fn=self.reward_fn, before_step=self._before_step):
                    if self._learner is None:  # sequential: store the previous transition, then update
                        self._store_pending(tr.intervention_start)
                    self._pending = tr
                    episode.append(tr)
                    self.env_step += 1
                    if self._learner is not None:  # overlapped: the update ran beside this env step
                        stats = self._inflight.result() if self._inflight is not None else None
                        self._inflight = None
                    else:
                        stats = self._update(self.env_step) if self.env_step > cfg.learning_starts else None
                    if stats is not None:
                        self._log_update(stats)
                    if cfg.eval_episodes > 0 and self.env_step % cfg.eval_every == 0:
                        self.evaluate()
                    if self.env_step >= cfg.env_steps:
                        break
                self._store_pending(False)
                self.train_time += time.perf_counter() - t0
                m = episode_metrics(episode)
                self.logs["episodes"].append({"episode": self.episode, "env_step": self.env_step, "seed": seed, **m})
                self.episode += 1
                if self.env_step >= next_ckpt or self.env_step >= cfg.env_steps:
                    self.save_checkpoint()
                    next_ckpt = (self.env_step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
                    if stop_at is not None and self.env_step >= stop_at:
                        raise StopRun(f"stopped at env step {self.env_step}")
        return self.summary()

    def _before_step(self, intervention_start: bool) -> None:
        """Overlapped mode, called once the coming step's action is chosen and before the env steps: the previous
        transition is complete now (whether this step starts a takeover is known), so store it and start this
        step's update in the learner thread. The update sees the same buffer and weights as in sequential mode,
        and the next action waits for it, so results are the same bit for bit; the env and the operator use
        their own RNGs, never torch's, which the update draws from."""
        if self._learner is None:
            return
        self._store_pending(intervention_start)
        if self.env_step + 1 > self.cfg.learning_starts:
            self._inflight = self._learner.submit(self._update, self.env_step + 1)

    def _store_pending(self, next_starts_takeover: bool) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._store(pending, failed_takeover=next_starts_takeover and not pending.is_intervention)

    def _store(self, tr: Transition, failed_takeover: bool) -> None:
        """Online gets everything; offline gets the interventions (HIL-SERL). done = termination only."""
        done = tr.terminated
        reward = tr.reward
        if failed_takeover and self.cfg.takeover_is_failure:
            done, reward = True, 0.0  # the operator had to take over: the policy's attempt failed here
        stored = tr if reward == tr.reward else Transition(**{**tr.__dict__, "reward": reward})
        if self.window is not None:  # drqv2: n-step transitions, each stored once its window is known
            step = Step(tr.obs, tr.action, reward, tr.next_obs, done, tr.truncated, tr.is_intervention)
            for item in self.window.push(step) + (self.window.flush() if tr.done else []):
                add_nstep(self.online, item)
                if item.first.is_intervention:
                    add_nstep(self.offline, item)
            return
        add_transition(self.online, stored, done)
        if tr.is_intervention:
            add_transition(self.offline, stored, done)

    def summary(self) -> dict[str, Any]:
        """metrics.json: counters, buffer sizes and `hilstudy.report.log_summary` of the logs."""
        import pandas as pd

        from hilstudy.report import log_summary

        episodes = pd.DataFrame(self.logs["episodes"])
        logged = log_summary(episodes, pd.DataFrame(self.logs["evals"]))
        if "reward_disagreements" in episodes:  # classifier reward: how often it disagreed with the sim's truth
            steps = float(episodes["length"].sum())
            logged["reward_disagreement_rate"] = float(episodes["reward_disagreements"].sum()) / steps
            logged["reward_false_pos"] = int(episodes["reward_false_pos"].sum())
            logged["reward_false_neg"] = int(episodes["reward_false_neg"].sum())
        return {
            "env_steps": self.env_step,
            "updates": self.updates,
            **logged,
            "episodes": self.episode,
            "online_buffer": len(self.online),
            "offline_buffer": len(self.offline),
        }


def finetune(
    params: StudyParams,
    demos_root: str | Path,
    out_dir: str | Path,
    bc_dir: str | Path | None = None,
    stop_at: int | None = None,
    classifier_dir: str | Path | None = None,
) -> tuple[dict[str, Any], Run]:
    """Run (or resume) one fine-tuning variant; returns its summary metrics and the run (logs, agent).

    Writes `<out_dir>/policy/` (final actor), `checkpoint/`, and the dvclive curves under `live/`.
    """
    from hilstudy.bc import torch_threads

    with torch_threads(params.finetune.torch_threads):
        run = Run(params, demos_root, bc_dir, out_dir, classifier_dir=classifier_dir)
        resumed = run.resume()
        summary = run.run(stop_at=stop_at)
    summary["resumed"] = resumed
    save_policy(run.algorithm.policy, run.pre, run.post, Path(out_dir) / "policy")
    write_live(run.logs, Path(out_dir) / "live")
    return summary, run


def write_live(logs: dict[str, list[dict]], directory: Path) -> None:
    """The run's curves as dvclive files (step = env step), written in one go from the checkpointed logs,
    so a resumed run's curves are the uninterrupted run's curves (no duplicated or missing rows)."""
    from dvclive import Live

    points: dict[int, dict[str, float]] = {}
    for row in logs["updates"]:
        points.setdefault(row["env_step"], {}).update({f"train/{k}": v for k, v in row.items() if k not in ("env_step", "update")})
    for row in logs["evals"]:
        points.setdefault(row["env_step"], {})["eval/success_rate"] = row["success_rate"]
    for row in logs["episodes"]:
        points.setdefault(row["env_step"], {}).update(
            {"episode/intervention_rate": row["intervention_rate"], "episode/success": row["success"], "episode/jitter": row["jitter"]}
        )
    with Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None) as live:
        for step in sorted(points):
            live.step = step
            for k, v in points[step].items():
                live.log_metric(k, v)


def critic_sizes(algorithm) -> list[list[int]]:
    """The hidden widths of each critic head as built (to prove the params reached the networks)."""
    sizes = []
    for head in algorithm.critic_ensemble.critics:
        sizes.append([m.out_features for m in head.net.net if isinstance(m, torch.nn.Linear)])
    return sizes


