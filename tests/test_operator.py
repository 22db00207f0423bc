import numpy as np
import pytest

from hilstudy.operator import ScriptedOperator, potential
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.sim import make_env

IDLE = np.zeros(4, dtype=np.float32)
CLOSE = np.array([0, 0, 0, 1.0], dtype=np.float32)
OPEN = np.array([0, 0, 0, -1.0], dtype=np.float32)
INFO_KEYS = {"is_intervention", "teleop_action", "intervention_start"}


def state(tcp=(0.5, 0.0, 0.08), cube=(0.4, 0.0, 0.02), gripper=0.0, lift=0.0, grasped=False):
    """A hand-made sim state: by default the tcp hovers 10 cm from the cube, gripper open."""
    tcp = np.array(tcp, dtype=float)
    return {
        "tcp_pos": tcp, "cube_pos": np.array(cube, dtype=float), "ee_target": tcp.copy(),
        "gripper": gripper, "cube_lift": lift, "grasped": grasped, "z_init": 0.02, "step": 0,
    }


def op(seed=0, **kw) -> ScriptedOperator:
    o = ScriptedOperator(OperatorParams(**{"reaction_delay_max": 0, **kw}))
    o.reset(seed)
    return o


def flags(o, n, s=None, action=IDLE):
    infos = [o.step(state() if s is None else s, action)[1] for _ in range(n)]
    return [i["is_intervention"] for i in infos], infos


@pytest.fixture(scope="module")
def env():
    with make_env(EnvParams()) as e:
        yield e


def expert_episodes(env, noise, seeds):
    o = ScriptedOperator(OperatorParams(noise_std=noise))
    return [list(rollout(env, operator=o, seed=s)) for s in seeds]


# ------------------------------------------------------------------------------------------- the expert
def test_expert_solves_30_seeded_cubes_without_noise(env):
    """30 cubes here (20 s); `make bench` (benchmarks/expert.py) measures 100, with and without noise."""
    eps = [episode_metrics(tr) for tr in expert_episodes(env, 0.0, range(30))]
    assert np.mean([e["success"] for e in eps]) >= 0.95
    assert np.mean([e["length"] for e in eps]) < 40


def test_expert_with_default_noise_is_seeded(env):
    a = expert_episodes(env, OperatorParams().noise_std, range(8))
    b = expert_episodes(env, OperatorParams().noise_std, range(8))
    for ta, tb in zip(a, b, strict=True):
        assert np.array_equal(np.stack([t.action for t in ta]), np.stack([t.action for t in tb]))
    assert np.mean([episode_metrics(tr)["success"] for tr in a]) >= 0.9
    assert not np.array_equal(a[0][0].action, expert_episodes(env, 0.0, [0])[0][0].action)  # noise is on


def test_expert_action_is_4d_float32_in_range():
    a = op().expert_action(state(tcp=(0.2, 0.3, 0.5)))
    assert a.shape == (4,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
    assert a[0] > 0 and a[1] < 0 and a[3] == -1.0  # heads for the cube, gripper open


def test_grasp_then_lift_is_seen_in_sim_state(env):
    env.reset(seed=4)
    o = op(noise_std=0.0)
    o.reset(4)
    grasped, potentials = [], []
    for _ in range(40):
        s = env.sim_state()
        grasped.append(s["grasped"])
        potentials.append(potential(s))
        *_, term, _, info = env.step(o.step(s, None)[0])
        if term:
            break
    assert info["success"]
    first = grasped.index(True)
    assert all(grasped[first:])  # grasped from the close until success
    assert potentials[-1] > 0.07 and max(potentials[:first]) < 0  # distance before, lift after


# ------------------------------------------------------------------------------------ intervention rule
def test_recording_mode_always_intervenes():
    o = op()
    infos = [o.step(state(), None)[1] for _ in range(3)]
    assert all(set(i) == INFO_KEYS for i in infos)
    assert all(i["is_intervention"] for i in infos)
    assert [i["intervention_start"] for i in infos] == [True, False, False]
    assert all(i["teleop_action"].dtype == np.float32 and i["teleop_action"].shape == (4,) for i in infos)
    assert o.intervention_steps == 3 and o.num_takeovers == 1


def test_no_progress_triggers_after_k_steps_and_lasts_takeover_steps():
    o = op(no_progress_steps=4, takeover_steps=3, harmful_gripper=False)
    f, infos = flags(o, 10)
    # step 0 sets the best potential; steps 1-4 stall; the 4th stall triggers, takeover starts at once (no delay)
    assert f == [False] * 4 + [True] * 3 + [False] * 3
    assert [i["intervention_start"] for i in infos] == [False] * 4 + [True] + [False] * 5
    assert all(set(i) == INFO_KEYS for i in infos)
    assert infos[4]["teleop_action"] is not None and infos[0]["teleop_action"] is None
    assert o.num_takeovers == 1 and o.intervention_steps == 3 and o.last_trigger == "no_progress"


def test_window_restarts_after_a_takeover():
    o = op(no_progress_steps=4, takeover_steps=3, harmful_gripper=False)
    f, _ = flags(o, 7 + 3 + 3)
    # handing back restarts the window from the last takeover state: 4 more stalled steps (the 4th is the
    # trigger, as at the episode's start, where step 0 only sets the best), then the next takeover
    assert f == [False] * 4 + [True] * 3 + [False] * 3 + [True] * 3 and o.num_takeovers == 2


def test_reaction_delay_lets_the_policy_act_first():
    for seed in range(10):
        o = op(seed, no_progress_steps=2, takeover_steps=3, reaction_delay_max=4, harmful_gripper=False)
        f, infos = flags(o, 12)
        start = f.index(True)
        assert 2 <= start <= 2 + 4  # trigger at step 2, then 0..4 policy steps
        assert f[start : start + 3] == [True] * 3 and not any(f[:start]) and not f[start + 3]
        assert infos[start]["intervention_start"]


def test_progress_prevents_takeover():
    o = op(no_progress_steps=3)
    for k in range(20):  # the tcp approaches the cube by 5 mm a step: progress every step
        _, info = o.step(state(tcp=(0.5 - 0.005 * k, 0.0, 0.08)), IDLE)
        assert not info["is_intervention"]


def test_slow_progress_counts_against_the_best_not_the_last_step():
    # 3 mm a step is below progress_eps (5 mm) step by step, but beats the best every other step
    o = op(no_progress_steps=3)  # the tcp heads straight for the cube
    assert not any(o.step(state(tcp=(0.5 - 0.003 * k, 0.0, 0.08), cube=(0.3, 0.0, 0.08)), IDLE)[1]["is_intervention"] for k in range(25))


def test_losing_the_cube_is_no_progress():
    o = op(no_progress_steps=3, harmful_gripper=False)
    held = state(tcp=(0.4, 0.0, 0.1), cube=(0.4, 0.0, 0.1), gripper=1.0, lift=0.08, grasped=True)
    dropped = state(tcp=(0.4, 0.0, 0.1), cube=(0.4, 0.0, 0.02), gripper=1.0, lift=0.0, grasped=False)
    o.step(held, IDLE)
    f, _ = flags(o, 4, dropped)
    assert f == [False, False, True, True]


def test_policy_action_passes_through_when_not_intervening():
    o = op()
    a = np.array([0.1, -0.2, 0.3, -1.0], dtype=np.float32)
    executed, info = o.step(state(), a)
    assert np.array_equal(executed, a) and executed.dtype == np.float32
    assert info == {"is_intervention": False, "teleop_action": None, "intervention_start": False}


def test_harmful_gripper_triggers():
    o = op(no_progress_steps=100)
    executed, info = o.step(state(), CLOSE)  # closing 10 cm from the cube
    assert info["is_intervention"] and info["intervention_start"] and o.last_trigger == "harmful_gripper"
    assert np.array_equal(executed, info["teleop_action"]) and executed[3] == -1.0  # the expert opens
    o = op(no_progress_steps=100)
    assert o.step(state(gripper=1.0), CLOSE)[1]["is_intervention"]  # keeping it closed far away, too
    held = state(tcp=(0.4, 0.0, 0.1), cube=(0.4, 0.0, 0.1), gripper=1.0, lift=0.08, grasped=True)
    o = op(no_progress_steps=100)
    assert o.step(held, OPEN)[1]["is_intervention"]  # dropping the lifted cube
    o = op(no_progress_steps=100)
    assert not o.step(held, CLOSE)[1]["is_intervention"]  # holding it is fine
    o = op(no_progress_steps=100)
    near = state(tcp=(0.4, 0.0, 0.03), cube=(0.4, 0.0, 0.02))
    assert not o.step(near, CLOSE)[1]["is_intervention"]  # closing at the cube is fine
    o = op(no_progress_steps=100, harmful_gripper=False)
    assert not o.step(state(), CLOSE)[1]["is_intervention"]


def test_budget_caps_intervention_steps():
    o = op(no_progress_steps=1, takeover_steps=5, budget_steps=7, harmful_gripper=False)
    f, infos = flags(o, 40)
    assert sum(f) == 7 and o.intervention_steps == 7 and o.num_takeovers == 2
    second = [i for i, x in enumerate(infos) if x["intervention_start"]][1]
    assert f[second : second + 3] == [True, True, False]  # the second takeover is cut to the 2 steps left
    o = op(no_progress_steps=1, budget_steps=0)
    f, _ = flags(o, 20, action=CLOSE)
    assert not any(f) and o.intervention_steps == 0 and o.num_takeovers == 0


def test_reset_clears_the_episode():
    o = op(no_progress_steps=1, takeover_steps=5, budget_steps=5, harmful_gripper=False)
    assert sum(flags(o, 20)[0]) == 5
    o.reset(1)
    assert o.intervention_steps == 0 and o.num_takeovers == 0 and o.last_trigger is None
    assert sum(flags(o, 20)[0]) == 5  # a fresh budget


def test_reaction_delay_is_seeded_and_bounded():
    def first_takeover(seed, noise=0.1):
        o = ScriptedOperator(OperatorParams(no_progress_steps=1, reaction_delay_max=5, harmful_gripper=False, noise_std=noise))
        o.reset(seed)
        return flags(o, 20)[0].index(True)

    delays = [first_takeover(s) for s in range(12)]
    assert delays == [first_takeover(s) for s in range(12)]
    assert delays == [first_takeover(s, noise=0.0) for s in range(12)]  # its own stream, apart from the noise
    assert min(delays) >= 1 and max(delays) <= 1 + 5 and len(set(delays)) > 1


def test_potential_is_distance_then_lift():
    assert potential(state(tcp=(0.5, 0, 0.02), cube=(0.4, 0, 0.02))) == pytest.approx(-0.1)
    assert potential(state(lift=0.05, grasped=True)) == 0.05


def test_an_expert_like_policy_is_never_taken_over(env):
    # the default rule watching the (noisy) expert itself: no false alarms along a good pick
    for seed in range(10):
        expert = ScriptedOperator(OperatorParams())
        watcher = ScriptedOperator(OperatorParams())
        tr = list(rollout(env, policy=lambda obs: expert.expert_action(env.sim_state()), operator=watcher, seed=seed))
        assert tr[-1].success and not any(t.is_intervention for t in tr)


def test_operator_rescues_an_idle_policy_in_sim(env):
    o = ScriptedOperator(OperatorParams(no_progress_steps=5, takeover_steps=100, budget_steps=100))
    tr = list(rollout(env, policy=lambda obs: np.zeros(4), operator=o, seed=3))
    m = episode_metrics(tr)
    assert m["success"] == 1.0 and m["takeovers"] == 1 and 0 < m["intervention_rate"] < 1
    assert not tr[0].is_intervention and tr[-1].is_intervention
    assert all(t.info is not None for t in tr)


def test_no_takeover_while_the_task_is_solved():
    """Only a reward that does not end the episode on success (episode_end) lets a policy hold the cube up;
    a person does not take over from it, but does when the cube is still below the success height."""
    held = state(tcp=(0.4, 0.0, 0.13), cube=(0.4, 0.0, 0.13), gripper=1.0, lift=0.11, grasped=True)
    assert not any(flags(op(), 40, held)[0])
    low = state(tcp=(0.4, 0.0, 0.07), cube=(0.4, 0.0, 0.07), gripper=1.0, lift=0.05, grasped=True)
    assert any(flags(op(), 40, low)[0])
