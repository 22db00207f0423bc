"""The simulated human: a scripted expert plus the rule that decides when it takes over.

The expert solves pick-cube from privileged sim state (hover over the cube, descend, close, lift),
with seeded Gaussian noise on its xyz action. The intervention rule watches the policy the way a
person at the teleoperator would, and takes over when

1. **no progress**: the task potential (see `potential`) has not improved by more than
   `progress_eps` for `no_progress_steps` steps, or
2. **harmful gripper** (optional): the policy closes the gripper far from the cube, or opens it while
   holding the cube off the table;

then, after a seeded **reaction delay** (uniform in [0, reaction_delay_max] steps, the policy still
acting), the expert drives for `takeover_steps` steps and hands back. A per-episode **budget** caps the
intervention steps. What it reports is what a real teleoperator reports: `is_intervention` and
`teleop_action` in `info` (plus `intervention_start` on the first step of a takeover).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hilstudy.params import OperatorParams

HOVER = 0.04  # m above the cube's centre while aligning in xy
XY_TOL = 0.008  # m: aligned enough to descend
Z_TOL = 0.008  # m: low enough to close
CLOSE_STEPS = 3  # steps the fingers get to close before lifting
LIFT_TO = 0.16  # m above the cube's start height (success is at 0.10)
FAR_FROM_CUBE = 0.03  # m: closing farther than this from the cube is harmful


def potential(state: dict[str, Any]) -> float:
    """One monotone measure of task progress (metres): -distance to the cube before the grasp, lift after."""
    if state["grasped"]:
        return float(state["cube_lift"])
    return -float(np.linalg.norm(state["cube_pos"] - state["tcp_pos"]))


class ScriptedOperator:
    """Scripted expert + intervention rule; `step` has the signature of any operator (sim or teleop)."""

    def __init__(self, cfg: OperatorParams, action_scale: float = 0.025):
        self.cfg = cfg
        self.action_scale = action_scale
        self.reset(0)

    def reset(self, seed: int) -> None:
        """New episode: reseed noise and delays from the episode seed, clear counters."""
        self._rng = np.random.default_rng([seed, 0x0E7A])  # apart from the env's streams for the same seed
        self._closed_steps = 0
        self._best = -np.inf
        self._stalled = 0
        self._pending: int | None = None  # steps left before a triggered takeover starts
        self._takeover_left = 0
        self._first = True
        self.intervention_steps = 0
        self.num_takeovers = 0
        self.last_trigger: str | None = None

    # ------------------------------------------------------------------------------------- the expert
    def expert_action(self, state: dict[str, Any]) -> np.ndarray:
        """The scripted pick, from sim state, with seeded noise on xyz. 4-D float32 in [-1, 1]."""
        tcp, cube, target = state["tcp_pos"], state["cube_pos"], state["ee_target"]
        grip = -1.0
        if state["gripper"] > 0.5 and np.linalg.norm(cube - tcp) < 0.02:
            # holding (or closing on) the cube: give the fingers a moment, then lift
            grip = 1.0
            self._closed_steps += 1
            goal = tcp.copy() if self._closed_steps < CLOSE_STEPS else np.array([tcp[0], tcp[1], state["z_init"] + LIFT_TO])
        else:
            self._closed_steps = 0
            if np.linalg.norm(cube[:2] - tcp[:2]) > XY_TOL:
                goal = np.array([cube[0], cube[1], cube[2] + HOVER])
                if tcp[2] < cube[2] + HOVER / 2:  # low and misaligned: rise before moving sideways
                    goal[:2] = tcp[:2] + np.clip(cube[:2] - tcp[:2], -0.01, 0.01)
            else:
                goal = cube.copy()
                if tcp[2] - cube[2] < Z_TOL:
                    grip = 1.0
        xyz = (goal - target) / self.action_scale
        if self.cfg.noise_std > 0:
            xyz = xyz + self._rng.normal(0.0, self.cfg.noise_std, 3)
        return np.clip(np.append(xyz, grip), -1.0, 1.0).astype(np.float32)

    # ---------------------------------------------------------------------------- intervention rule
    def _harmful(self, state: dict[str, Any], policy_action: np.ndarray) -> bool:
        far = np.linalg.norm(state["cube_pos"] - state["tcp_pos"]) > FAR_FROM_CUBE
        closing_far = policy_action[3] > 0.5 and far and state["gripper"] < 0.5
        dropping = policy_action[3] < -0.5 and state["grasped"] and state["cube_lift"] > 0.01
        return bool(closing_far or dropping)

    def step(self, state: dict[str, Any], policy_action: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
        """Choose the executed action. `policy_action` None: recording demos, the operator drives throughout."""
        expert = self.expert_action(state)  # always computed: keeps the noise stream independent of the rule
        first, self._first = self._first, False
        if policy_action is None:
            self.intervention_steps += 1
            return expert, {"is_intervention": True, "teleop_action": expert, "intervention_start": first}

        budget_left = self.cfg.budget_steps - self.intervention_steps
        start = False
        if self._takeover_left == 0 and self._pending is None and budget_left > 0:
            p = potential(state)
            if p > self._best + self.cfg.progress_eps:
                self._best, self._stalled = p, 0
            else:
                self._stalled += 1
            trigger = None
            if self._stalled >= self.cfg.no_progress_steps:
                trigger = "no_progress"
            elif self.cfg.harmful_gripper and self._harmful(state, policy_action):
                trigger = "harmful_gripper"
            if trigger is not None:
                self.last_trigger = trigger
                self._pending = int(self._rng.integers(0, self.cfg.reaction_delay_max + 1))
        if self._pending is not None and self._takeover_left == 0:
            if self._pending == 0:
                self._pending = None
                if budget_left > 0:
                    self._takeover_left = self.cfg.takeover_steps
                    self.num_takeovers += 1
                    start = True
            else:
                self._pending -= 1
        if self._takeover_left > 0 and budget_left > 0:
            self._takeover_left -= 1
            self.intervention_steps += 1
            if self._takeover_left == 0 or self.intervention_steps >= self.cfg.budget_steps:
                self._takeover_left = 0
                self._best, self._stalled = potential(state), 0  # the no-progress window restarts
            return expert, {"is_intervention": True, "teleop_action": expert, "intervention_start": start}
        self._takeover_left = 0
        return np.asarray(policy_action, dtype=np.float32), {
            "is_intervention": False,
            "teleop_action": None,
            "intervention_start": False,
        }
