import numpy as np
import pytest

from hilstudy.operator import ScriptedOperator
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import Transition, episode_metrics, rollout
from hilstudy.sim import make_env


@pytest.fixture(scope="module")
def env():
    with make_env(EnvParams(max_episode_steps=30)) as e:
        yield e


def test_policy_alone_runs_to_the_time_limit(env):
    tr = list(rollout(env, policy=lambda obs: np.array([0.0, 0.0, 0.5, -1.0]), seed=0))
    assert len(tr) == 30 and tr[-1].truncated and not tr[-1].terminated
    assert not any(t.is_intervention for t in tr)
    for a, b in zip(tr, tr[1:]):  # transitions chain
        assert a.next_obs is b.obs
    assert [t.step for t in tr] == list(range(30))


def test_executed_action_is_stored_and_clipped(env):
    o = ScriptedOperator(OperatorParams(no_progress_steps=3, takeover_steps=4, reaction_delay_max=0))
    tr = list(rollout(env, policy=lambda obs: np.array([2.0, 0, 0, -1.0]), operator=o, seed=1))
    for t in tr:
        assert np.all(np.abs(t.action) <= 1.0)
        np.testing.assert_array_equal(t.policy_action, np.clip([2.0, 0, 0, -1.0], -1, 1))
        if not t.is_intervention:
            np.testing.assert_array_equal(t.action, t.policy_action)
    takeovers = [t for t in tr if t.is_intervention]
    assert takeovers and not np.array_equal(takeovers[0].action, takeovers[0].policy_action)
    assert sum(t.intervention_start for t in tr) == o.num_takeovers >= 1


def test_needs_someone_to_act(env):
    with pytest.raises(ValueError):
        next(rollout(env, seed=0))


def test_episode_metrics_by_hand():
    def t(a, r=0.0, intervene=False, start=False, success=False):
        return Transition(obs={}, action=np.array(a, dtype=np.float32), reward=r, next_obs={}, terminated=success,
                          truncated=False, is_intervention=intervene, intervention_start=start, success=success,
                          policy_action=None, step=0)

    m = episode_metrics([t([0, 0, 0, 0]), t([1, 0, 0, 0], intervene=True, start=True), t([1, 1, 0, 0], 1.0, True, success=True)])
    assert m == {"return": 1.0, "success": 1.0, "length": 3.0, "intervention_steps": 2.0,
                 "intervention_rate": pytest.approx(2 / 3), "takeovers": 1.0, "jitter": pytest.approx(2 / 8)}


# ----------------------------------------------------------------------- reward `episode_end` (devlog 059's terminal-only)
def test_episode_end_reward_judges_success_once_at_the_time_limit(env):
    from hilstudy.rollout import EpisodeEndReward

    judged = EpisodeEndReward(env, 30)
    # the operator picks the cube (success near step 17) and holds it: the episode does not end there
    tr = list(rollout(judged, operator=ScriptedOperator(OperatorParams(noise_std=0.0)), seed=0))
    first = next(i for i, t in enumerate(tr) if t.success)
    assert first < 29 and len(tr) == 30
    assert [t.reward for t in tr] == [0.0] * 29 + [1.0] and tr[-1].success
    assert tr[-1].terminated and not tr[-1].truncated  # the verdict ends the task: nothing to bootstrap
    assert not any(t.terminated or t.truncated for t in tr[:-1])
    # a policy that never lifts the cube: no reward at all, the same end
    idle = list(rollout(judged, policy=lambda obs: np.zeros(4), seed=0))
    assert len(idle) == 30 and sum(t.reward for t in idle) == 0.0 and idle[-1].terminated and not idle[-1].success
    # the plain env on the same pick: reward 1 on the success step, which ends the episode (a per-step check)
    plain = list(rollout(env, operator=ScriptedOperator(OperatorParams(noise_std=0.0)), seed=0))
    assert len(plain) == first + 1 and plain[-1].reward == 1.0 and plain[-1].terminated


def test_a_classifier_reward_alone_judges_success(env):
    """No leak of the sim's truth: with a reward classifier that never fires, the operator's episode runs to the
    time limit even though the sim says the cube is up (it would have ended there with the sim's reward), and
    no step is stored as terminal; the sim's success stays in `success` for the metrics. A classifier that fires
    ends the episode on that step."""
    op = lambda: ScriptedOperator(OperatorParams(noise_std=0.0, reaction_delay_max=0))  # noqa: E731
    plain = list(rollout(env, operator=op(), seed=3))
    assert plain[-1].terminated and plain[-1].success and len(plain) < 30  # the sim's own end: success
    never = list(rollout(env, operator=op(), seed=3, reward_fn=lambda obs: (0.0, False)))
    assert len(never) == 30 and never[-1].truncated and not any(t.terminated for t in never)
    assert any(t.success for t in never) and all(t.reward == 0.0 for t in never)
    assert [t.info["env_reward"] for t in never[: len(plain)]] == [t.reward for t in plain]
    at = len(plain) - 3
    fires = list(rollout(env, operator=op(), seed=3, reward_fn=lambda obs, n=iter(range(10**6)): (1.0, True) if next(n) == at else (0.0, False)))
    assert len(fires) == at + 1 and fires[-1].terminated and fires[-1].reward == 1.0 and not fires[-1].success
