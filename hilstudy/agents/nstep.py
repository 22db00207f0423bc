"""n-step transitions for DrQ-v2: what the buffers store when `finetune.algorithm` is `drqv2`.

DrQ-v2 samples n-step returns from its episode store; here the sum is made when the transitions are stored,
which is the same for a fixed n: the transition from step t holds

    reward   = sum_{k<m} gamma^k r_{t+k}        next_state = s_{t+m}        discount = gamma^m
    done     = a termination within the window (then nothing is bootstrapped past it)

with m = n, or fewer where the episode ends (time limit, termination) or a stored `done` (a takeover that
ended the policy's attempt) cuts the window. The critic's target is reward + (1 - done) * discount * Q'.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Step:
    """One stored transition (what `add_transition` writes): done = termination (or a failed takeover)."""

    obs: Any
    action: Any
    reward: float
    next_obs: Any
    done: bool
    truncated: bool
    is_intervention: bool


@dataclass
class NStep:
    """An n-step transition: `first`'s obs and action, the window's reward sum, next_obs, done and discount."""

    first: Step
    reward: float
    next_obs: Any
    done: bool
    truncated: bool
    discount: float
    steps: int


class NStepWindow:
    """Turns a stream of one episode's steps into n-step transitions, each as soon as its window is known."""

    def __init__(self, n: int, gamma: float):
        if n < 1:
            raise ValueError(f"n-step needs n >= 1, got {n}")
        self.n, self.gamma = n, gamma
        self._window: deque[Step] = deque()

    def _emit_first(self) -> NStep:
        reward, g = 0.0, 1.0
        for s in self._window:
            reward += g * s.reward
            g *= self.gamma
        last = self._window[-1]
        first = self._window.popleft()
        return NStep(first, reward, last.next_obs, last.done, last.truncated and not last.done, g, len(self._window) + 1)

    def push(self, step: Step) -> list[NStep]:
        """Add the next step; returns the n-step transitions it completes (all of the window's on a `done`)."""
        self._window.append(step)
        if step.done:
            return self.flush()
        if len(self._window) == self.n:
            return [self._emit_first()]
        return []

    def flush(self) -> list[NStep]:
        """The episode ended (or a done cut it): every step left, each with the shorter window to the end."""
        out = []
        while self._window:
            out.append(self._emit_first())
        return out

    def __len__(self) -> int:
        return len(self._window)
