import numpy as np
import pytest

from hilstudy.operator import ScriptedOperator, potential
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.sim import make_env

IDLE = np.zeros(4, dtype=np.float32)


def state(tcp=(0.5, 0.0, 0.08), cube=(0.4, 0.0, 0.02), gripper=0.0, lift=0.0, grasped=False):
    tcp = np.array(tcp, dtype=float)
    return {
        "tcp_pos": tcp, "cube_pos": np.array(cube, dtype=float), "ee_target": tcp.copy(),
        "gripper": gripper, "cube_lift": lift, "grasped": grasped, "z_init": 0.02, "step": 0,
    }


def op(**kw) -> ScriptedOperator:
    o = ScriptedOperator(OperatorParams(**{"reaction_delay_max": 0, **kw}))
    o.reset(0)
    return o


@pytest.fixture(scope="module")
def env():
    with make_env(EnvParams()) as e:
        yield e


def expert_success(env, noise, seeds):
    o = ScriptedOperator(OperatorParams(noise_std=noise))
    return [episode_metrics(list(rollout(env, operator=o, seed=s))) for s in seeds]


def test_expert_solves_100_seeded_cubes_without_noise(env):
    eps = expert_success(env, 0.0, range(100))
    assert np.mean([e["success"] for e in eps]) >= 0.95
    assert np.mean([e["length"] for e in eps]) < 40


def test_expert_with_default_noise_is_seeded(env):
    a = expert_success(env, OperatorParams().noise_std, range(10))
    b = expert_success(env, OperatorParams().noise_std, range(10))
    assert a == b and np.mean([e["success"] for e in a]) >= 0.9


def test_recording_mode_always_intervenes():
    o = op()
    flags = [o.step(state(), None)[1] for _ in range(3)]
    assert all(f["is_intervention"] for f in flags)
    assert [f["intervention_start"] for f in flags] == [True, False, False]
    assert all(f["teleop_action"] is not None for f in flags)


def test_no_progress_triggers_after_k_steps_and_lasts_takeover_steps():
    o = op(no_progress_steps=4, takeover_steps=3, harmful_gripper=False)
    s = state()
    infos = [o.step(s, IDLE)[1] for _ in range(10)]
    flags = [i["is_intervention"] for i in infos]
    # step 0 sets the best potential; steps 1-4 stall; the 4th stall triggers, takeover starts at once (no delay)
    assert flags == [False] * 4 + [True] * 3 + [False] * 3
    assert [i["intervention_start"] for i in infos].index(True) == 4
    assert infos[4]["teleop_action"] is not None and infos[0]["teleop_action"] is None
    assert o.num_takeovers == 1 and o.intervention_steps == 3 and o.last_trigger == "no_progress"


def test_progress_prevents_takeover():
    o = op(no_progress_steps=3)
    for k in range(20):  # the tcp approaches the cube by 1 cm a step: progress every step
        _, info = o.step(state(tcp=(0.5 - 0.005 * k, 0.0, 0.08)), IDLE)
        assert not info["is_intervention"]


def test_policy_action_passes_through_when_not_intervening():
    o = op()
    a = np.array([0.1, -0.2, 0.3, -1.0], dtype=np.float32)
    executed, info = o.step(state(), a)
    assert np.array_equal(executed, a) and not info["is_intervention"]


def test_harmful_gripper_triggers():
    o = op(no_progress_steps=100)
    close_far = np.array([0, 0, 0, 1.0], dtype=np.float32)
    _, info = o.step(state(), close_far)
    assert info["is_intervention"] and o.last_trigger == "harmful_gripper"
    o = op(no_progress_steps=100)
    held = state(tcp=(0.4, 0.0, 0.1), cube=(0.4, 0.0, 0.1), gripper=1.0, lift=0.08, grasped=True)
    _, info = o.step(held, np.array([0, 0, 0, -1.0], dtype=np.float32))
    assert info["is_intervention"]
    o = op(no_progress_steps=100, harmful_gripper=False)
    assert not o.step(state(), close_far)[1]["is_intervention"]


def test_budget_caps_intervention_steps():
    o = op(no_progress_steps=1, takeover_steps=5, budget_steps=7, harmful_gripper=False)
    flags = [o.step(state(), IDLE)[1]["is_intervention"] for _ in range(40)]
    assert sum(flags) == 7 and o.intervention_steps == 7
    o = op(no_progress_steps=1, budget_steps=0)
    assert not any(o.step(state(), np.array([0, 0, 0, 1.0]))[1]["is_intervention"] for _ in range(20))


def test_reaction_delay_is_seeded_and_bounded():
    def first_takeover(seed):
        o = ScriptedOperator(OperatorParams(no_progress_steps=1, reaction_delay_max=5, harmful_gripper=False))
        o.reset(seed)
        flags = [o.step(state(), IDLE)[1]["is_intervention"] for _ in range(20)]
        return flags.index(True)

    delays = [first_takeover(s) for s in range(12)]
    assert delays == [first_takeover(s) for s in range(12)]
    assert min(delays) >= 1 and max(delays) <= 1 + 5 and len(set(delays)) > 1


def test_potential_is_distance_then_lift():
    assert potential(state(tcp=(0.5, 0, 0.02), cube=(0.4, 0, 0.02))) == pytest.approx(-0.1)
    assert potential(state(lift=0.05, grasped=True)) == 0.05


def test_operator_rescues_an_idle_policy_in_sim(env):
    o = ScriptedOperator(OperatorParams(no_progress_steps=5, takeover_steps=100, budget_steps=100))
    tr = list(rollout(env, policy=lambda obs: np.zeros(4), operator=o, seed=3))
    m = episode_metrics(tr)
    assert m["success"] == 1.0 and m["takeovers"] == 1 and 0 < m["intervention_rate"] < 1
    assert not tr[0].is_intervention and tr[-1].is_intervention
    assert all(t.info is not None for t in tr)
