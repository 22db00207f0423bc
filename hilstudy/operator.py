"""The simulated human: a scripted expert plus the rule that decides when it takes over.

The expert solves pick-cube from privileged sim state (hover over the cube, descend, close, lift),
with seeded Gaussian noise on its xyz action. The intervention rule watches the policy the way a
person at the teleoperator would, and takes over when

1. **no progress**: the task potential (see `potential`) has not risen by more than `progress_eps`
   above its best value for `no_progress_steps` consecutive steps, while the task is not solved (a
   policy holding the cube up, which only happens when success does not end the episode, is left to it), or
2. **harmful gripper** (optional): the policy commands close (gripper > 0.5) with the tcp more than
   3 cm from the cube, or commands open (gripper < -0.5) while holding the cube 1 cm or more up;

then, after a seeded **reaction delay** d (uniform in [0, reaction_delay_max] steps; the policy still
acts during it, d = 0 replaces the triggering action itself), the expert drives for `takeover_steps`
steps and hands back, and the no-progress window restarts. A per-episode **budget** caps the
intervention steps (a takeover is cut short when it runs out; budget 0 never intervenes). What it
reports is what a real teleoperator reports: `is_intervention` and `teleop_action` in `info`, plus
`intervention_start` on the first step of a takeover.

A real-arm operator (a person at a lerobot teleoperator) has the same `reset(seed)` and
`step(state, policy_action) -> (action, info)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hilstudy.params import OperatorParams

# The expert's script (metres, steps)
HOVER = 0.04  # m above the cube's centre while aligning in xy
XY_TOL = 0.008  # m: aligned enough to descend
Z_TOL = 0.008  # m: low enough to close
CLOSE_STEPS = 3  # steps the fingers get to close before lifting
HOLD_DIST = 0.02  # m: tcp this close to the cube with the gripper closed counts as holding it
LIFT_TO = 0.16  # m above the cube's start height (success is at 0.10)
# The harmful-gripper rule
CLOSE_CMD, OPEN_CMD = 0.5, -0.5  # policy gripper actions that count as "close" / "open"
FAR_FROM_CUBE = 0.03  # m: closing farther than this from the cube is harmful
LIFTED = 0.01  # m: opening while holding the cube this high is harmful
SUCCESS_LIFT = 0.1  # m: gym-hil's success (sparse reward) is the cube more than 10 cm above its start; no one takes over then

WATCH, WAIT, TAKEOVER = "watch", "wait", "takeover"  # the rule's states


def potential(state: dict[str, Any]) -> float:
    """Task progress in metres, one number that rises along a successful pick.

    Before the grasp: minus the tcp-to-cube distance (<= 0, rises to about -0.003 at the grasp). Grasped:
    the cube's lift (about 0 at the grasp, 0.1 at success). Losing the cube drops it back below zero, so
    the best value seen is not beaten again until the cube is re-grasped and lifted higher.
    """
    if state["grasped"]:
        return float(state["cube_lift"])
    return -float(np.linalg.norm(np.asarray(state["cube_pos"]) - np.asarray(state["tcp_pos"])))


class ScriptedOperator:
    """Scripted expert + intervention rule; `step` has the signature of any operator (sim or teleop).

    Counters for the current episode: `intervention_steps`, `num_takeovers`; `last_trigger` names what
    set off the latest takeover ("no_progress" or "harmful_gripper").
    """

    def __init__(self, cfg: OperatorParams, action_scale: float = 0.025):
        self.cfg = cfg
        self.action_scale = action_scale  # metres one unit of xyz action moves the target (the env's)
        self.reset(0)

    def reset(self, seed: int) -> None:
        """New episode: reseed noise and reaction delays from the episode seed, clear the counters."""
        # Two streams, apart from each other and from the env's streams for the same seed: the delays do
        # not change when noise_std does.
        self._noise_rng = np.random.default_rng([seed, 0x0E7A, 0])
        self._delay_rng = np.random.default_rng([seed, 0x0E7A, 1])
        self._closed_steps = 0  # expert: steps the gripper has been closed on the cube
        self._first = True
        self._mode = WATCH
        self._best = -np.inf  # best potential in the current no-progress window
        self._stalled = 0  # consecutive steps without beating it by progress_eps
        self._wait = 0  # reaction-delay steps left (WAIT)
        self._left = 0  # takeover steps left (TAKEOVER)
        self.intervention_steps = 0
        self.num_takeovers = 0
        self.last_trigger: str | None = None

    # ------------------------------------------------------------------------------------- the expert
    def expert_action(self, state: dict[str, Any]) -> np.ndarray:
        """The scripted pick, from sim state, with seeded noise on xyz. 4-D float32 in [-1, 1].

        Proportional control of the end-effector target: xyz = (goal - target) / action_scale, clipped.
        Goals: above the cube (rising first when low and off to the side), then the cube's centre, close,
        hold CLOSE_STEPS, then LIFT_TO above the start height. The gripper is open (-1) unless closing or
        holding (+1); a closed gripper away from the cube opens, so the script recovers from any state.
        """
        tcp, cube = np.asarray(state["tcp_pos"]), np.asarray(state["cube_pos"])
        target = np.asarray(state.get("ee_target", tcp))
        grip = -1.0
        if state["gripper"] > 0.5 and np.linalg.norm(cube - tcp) < HOLD_DIST:
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
            xyz = xyz + self._noise_rng.normal(0.0, self.cfg.noise_std, 3)
        return np.clip(np.append(xyz, grip), -1.0, 1.0).astype(np.float32)

    # ---------------------------------------------------------------------------- intervention rule
    def _no_progress(self, state: dict[str, Any]) -> bool:
        """Track the potential; True once it has not beaten its best by progress_eps for k steps (never
        while the cube is held up at the success height: holding it there is the task)."""
        p = potential(state)
        if state["cube_lift"] > SUCCESS_LIFT:
            self._best, self._stalled = p, 0
            return False
        if p > self._best + self.cfg.progress_eps:
            self._best, self._stalled = p, 0
        else:
            self._stalled += 1
        return self._stalled >= self.cfg.no_progress_steps

    def _harmful(self, state: dict[str, Any], policy_action: np.ndarray) -> bool:
        """The policy closes the gripper far from the cube, or opens it while holding the cube up."""
        g = float(policy_action[3])
        far = np.linalg.norm(np.asarray(state["cube_pos"]) - np.asarray(state["tcp_pos"])) > FAR_FROM_CUBE
        closing_far = g > CLOSE_CMD and far
        dropping = g < OPEN_CMD and state["grasped"] and state["cube_lift"] >= LIFTED
        return bool(closing_far or dropping)

    def step(self, state: dict[str, Any], policy_action: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
        """Choose the executed action and report it as a teleoperator would.

        `policy_action` None (recording demos): the operator drives every step. Otherwise the rule's
        states: WATCH (policy acts; check triggers) -> WAIT (reaction delay; policy acts) -> TAKEOVER
        (expert acts for takeover_steps, or until the budget is spent) -> WATCH (window restarted).
        """
        expert = self.expert_action(state)  # every step: keeps the expert's counters and noise in step
        first, self._first = self._first, False
        if policy_action is None:
            self.intervention_steps += 1
            self.num_takeovers += int(first)
            return expert, {"is_intervention": True, "teleop_action": expert.copy(), "intervention_start": first}

        budget_left = self.cfg.budget_steps - self.intervention_steps
        if self._mode == WATCH and budget_left > 0:
            trigger = None
            if self._no_progress(state):
                trigger = "no_progress"
            elif self.cfg.harmful_gripper and self._harmful(state, policy_action):
                trigger = "harmful_gripper"
            if trigger is not None:
                self.last_trigger = trigger
                self._mode, self._wait = WAIT, int(self._delay_rng.integers(0, self.cfg.reaction_delay_max + 1))

        start = False
        if self._mode == WAIT:
            if self._wait == 0:  # the operator has reacted: take over from this step on
                self._mode, self._left, start = TAKEOVER, min(self.cfg.takeover_steps, budget_left), True
                self.num_takeovers += 1
            else:
                self._wait -= 1

        if self._mode == TAKEOVER:
            self._left -= 1
            self.intervention_steps += 1
            if self._left == 0:  # hand back; the no-progress window restarts from here
                self._mode, self._best, self._stalled = WATCH, potential(state), 0
            return expert, {"is_intervention": True, "teleop_action": expert.copy(), "intervention_start": start}

        return np.asarray(policy_action, dtype=np.float32), {
            "is_intervention": False,
            "teleop_action": None,
            "intervention_start": False,
        }
