"""The one loop that steps env, policy and operator into transitions.

Every stage uses it: recording demos (no policy, the operator drives), fine-tuning (the policy drives,
the operator may take over), evaluation (the policy drives, no operator). What it yields is what the
stages store: the *executed* action (the operator's during a takeover), the env's reward,
`terminated` (the env's own end: success or failure) kept apart from `truncated` (the time limit),
and the operator's `is_intervention` flag, as a real teleoperator reports it in `info`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Obs = dict[str, np.ndarray]
Policy = Callable[[Obs], np.ndarray]  # observation dict -> 4-D action in [-1, 1]
RewardFn = Callable[[Obs], tuple[float, bool]]  # observation after a step -> (reward, success), e.g. a classifier


class Operator(Protocol):
    """A human stand-in (sim) or a person with a teleoperator (real arm)."""

    def reset(self, seed: int) -> None: ...

    def step(self, state: dict[str, Any], policy_action: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]: ...


@dataclass
class Transition:
    obs: Obs  # observation the action was chosen from
    action: np.ndarray  # executed action, float32 (4,) in [-1, 1]: the operator's during a takeover
    reward: float  # the env's reward for this step
    next_obs: Obs  # observation after the step
    terminated: bool  # the env ended the episode (success, or cube out of bounds): SAC's `done`
    truncated: bool  # the time limit ended it: bootstrap from next_obs
    is_intervention: bool  # the operator chose this action
    intervention_start: bool  # the first step of a takeover (the policy's attempt ends here)
    success: bool  # the task is solved after this step
    policy_action: np.ndarray | None  # what the policy proposed (None when recording demos)
    step: int  # index of this step in its episode
    info: dict[str, Any] = field(default_factory=dict)  # the env's step info

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class EpisodeEndReward:
    """Reward `episode_end`, devlog 059's terminal-only signal: success is judged once, when the time is up.

    Success does not end the episode: it runs to `max_steps` (or until the env ends it otherwise, e.g. the
    cube leaving the table, a failure rewarded 0). Only the last step is rewarded: 1 if the task is solved
    then (the cube still up), 0 otherwise, like a person who presses success or failure when the episode's
    time is up. That step is `terminated`, not `truncated`: the verdict ends the task and nothing is
    bootstrapped past it. Compare the sim's own reward (`terminal`), which is a per-step success check: 1 on
    the step the cube is lifted, which ends the episode, as a perfect reward classifier would.
    """

    def __init__(self, env: Any, max_steps: int):
        self.env, self.max_steps, self._t = env, max_steps, 0
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def reset(self, seed: int | None = None):
        self._t = 0
        return self.env.reset(seed=seed)

    def step(self, action: np.ndarray):
        obs, _, terminated, truncated, info = self.env.step(action)
        self._t += 1
        if info["success"]:
            terminated = False  # the env ends on success; here only the time limit ends a solved task
        end = self._t >= self.max_steps
        reward = float(end and info["success"])
        return obs, reward, bool(terminated or end), False, info

    def sim_state(self) -> dict[str, Any]:
        return self.env.sim_state()


def rollout(
    env: Any,
    policy: Policy | None = None,
    operator: Operator | None = None,
    seed: int | None = None,
    reward_fn: RewardFn | None = None,
    before_step: Callable[[bool], None] | None = None,
) -> Iterator[Transition]:
    """Run one episode and yield its transitions.

    policy None: the operator drives every step (demo recording). operator None: the policy drives
    alone (evaluation). Both: the policy drives and the operator intervenes by its rule.
    reward_fn (e.g. a reward classifier): replaces the env's reward every step and ends the episode when it
    says success, as lerobot's classifier processor step does. It is then the only judge of success, as on a
    real arm where nothing else knows: the env's own success check does not end the episode (it would leak the
    sim's truth into training, and store a success the classifier missed as a terminal step with reward 0);
    only the verdict, the time limit (`info["time_up"]`) and the env's other ends (genuine failures: the cube
    off the table, the person's stop key) do. `success` stays the env's ground truth, for the metrics;
    `info` keeps the env's reward (`env_reward`) and the verdict (`reward_fn_success`).
    """
    if policy is None and operator is None:
        raise ValueError("rollout needs a policy, an operator, or both")
    obs, _ = env.reset(seed=seed)
    if operator is not None:
        operator.reset(0 if seed is None else seed)
    t = 0
    while True:
        policy_action = None if policy is None else np.clip(np.asarray(policy(obs), dtype=np.float32), -1.0, 1.0)
        if operator is not None:
            action, op_info = operator.step(env.sim_state(), policy_action)
            is_int = bool(op_info.get("is_intervention", False))
            start = bool(op_info.get("intervention_start", False))
        else:
            action, is_int, start = policy_action, False, False
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        if before_step is not None:
            before_step(start)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if reward_fn is not None:
            fn_reward, fn_success = reward_fn(next_obs)
            info = {**info, "env_reward": float(reward), "reward_fn_success": bool(fn_success)}
            failed = terminated and not info.get("success", False)  # an end that is not the env's success check
            time_up = truncated or bool(info.get("time_up", False))
            reward, terminated = fn_reward, bool(failed or fn_success)
            truncated = bool(time_up and not terminated)
        yield Transition(
            obs=obs,
            action=action,
            reward=float(reward),
            next_obs=next_obs,
            terminated=bool(terminated),
            truncated=bool(truncated),
            is_intervention=is_int,
            intervention_start=start,
            success=bool(info.get("success", False)),
            policy_action=policy_action,
            step=t,
            info=info,
        )
        obs = next_obs
        t += 1
        if terminated or truncated:
            return


def episode_metrics(transitions: list[Transition]) -> dict[str, float]:
    """Per-episode figures every stage reports: return, success, length, interventions, action jitter.

    jitter is mean |a_t - a_{t-1}| over the episode's executed actions (the devlog's "shaking").
    """
    n = len(transitions)
    if n == 0:
        raise ValueError("empty episode")
    actions = np.stack([t.action for t in transitions])
    jitter = float(np.abs(np.diff(actions, axis=0)).mean()) if n > 1 else 0.0
    n_int = sum(t.is_intervention for t in transitions)
    extra = {}
    if "reward_fn_success" in transitions[0].info:  # a reward classifier judged every step: how often it was wrong
        said = np.array([t.info["reward_fn_success"] for t in transitions])
        truth = np.array([t.success for t in transitions])
        extra = {"reward_false_pos": float(np.sum(said & ~truth)), "reward_false_neg": float(np.sum(~said & truth)),
                 "reward_disagreements": float(np.sum(said != truth))}
    return {
        "return": float(sum(t.reward for t in transitions)),
        "success": float(transitions[-1].success or any(t.success for t in transitions)),
        "length": float(n),
        "intervention_steps": float(n_int),
        "intervention_rate": n_int / n,
        "takeovers": float(sum(t.intervention_start for t in transitions)),
        "jitter": jitter,
        **extra,
    }
