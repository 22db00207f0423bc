"""n-step transitions (DrQ-v2's returns) on hand-made trajectories."""

import numpy as np
import pytest

from hilstudy.agents.nstep import NStepWindow, Step

G = 0.9


def steps(rewards, done_at=None, truncated_at_end=True):
    n = len(rewards)
    return [Step(obs=t, action=np.full(4, t, dtype=np.float32), reward=r, next_obs=t + 1, done=(t == done_at),
                 truncated=truncated_at_end and t == n - 1 and done_at is None, is_intervention=t % 2 == 0)
            for t, r in enumerate(rewards)]  # fmt: skip


def run(window, trajectory):
    out = []
    for s in trajectory:
        out += window.push(s)
    return out + window.flush()


def test_three_step_returns_of_a_time_limited_episode():
    out = run(NStepWindow(3, G), steps([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert [o.first.obs for o in out] == [0, 1, 2, 3, 4]  # every step once, in order
    expect = [  # (reward sum, next_obs, discount): windows of 3, then shorter ones at the time limit
        (1 + G * 2 + G**2 * 3, 3, G**3),
        (2 + G * 3 + G**2 * 4, 4, G**3),
        (3 + G * 4 + G**2 * 5, 5, G**3),
        (4 + G * 5, 5, G**2),
        (5.0, 5, G),
    ]
    for o, (r, nxt, d) in zip(out, expect, strict=True):
        assert o.reward == pytest.approx(r) and o.next_obs == nxt and o.discount == pytest.approx(d) and not o.done
    assert [o.truncated for o in out] == [False, False, True, True, True]  # windows that reach the time limit
    assert [o.first.is_intervention for o in out] == [True, False, True, False, True]


def test_a_termination_ends_every_window_that_contains_it():
    out = run(NStepWindow(3, G), steps([0.0, 0.0, 0.0, 1.0], done_at=3))
    assert [(o.first.obs, o.next_obs, o.done) for o in out] == [(0, 3, False), (1, 4, True), (2, 4, True), (3, 4, True)]
    assert out[1].reward == pytest.approx(G**2 * 1.0) and out[3].reward == 1.0
    assert out[1].steps == 3 and out[2].steps == 2 and out[3].steps == 1


def test_windows_are_emitted_as_soon_as_they_are_known():
    w = NStepWindow(3, G)
    traj = steps([1.0] * 6)
    assert w.push(traj[0]) == [] and w.push(traj[1]) == []
    assert [o.first.obs for o in w.push(traj[2])] == [0]  # the third step completes the first window
    assert len(w) == 2


def test_a_done_mid_episode_cuts_the_window_and_the_episode_goes_on():
    """A failed takeover is stored as done mid-episode: nothing is bootstrapped across it."""
    traj = steps([0.0, 0.0, 0.0, 0.0, 0.0], done_at=1)
    out = run(NStepWindow(3, G), traj)
    assert [(o.first.obs, o.done) for o in out] == [(0, True), (1, True), (2, False), (3, False), (4, False)]
    assert out[0].next_obs == 2  # the window stopped at the done


def test_one_step_is_the_plain_transition():
    traj = steps([1.0, 2.0, 3.0])
    out = run(NStepWindow(1, G), traj)
    assert [(o.reward, o.next_obs, o.discount) for o in out] == [(1.0, 1, G), (2.0, 2, G), (3.0, 3, G)]
    with pytest.raises(ValueError, match="n >= 1"):
        NStepWindow(0, G)
