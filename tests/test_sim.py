import subprocess
import sys
import time

import mujoco
import numpy as np
import pytest

from hilstudy.params import EnvParams
from hilstudy.sim import PickCubeEnv, make_env

ACTIONS = np.random.default_rng(123).uniform(-1, 1, (30, 4)).astype(np.float32)
INFO_KEYS = {"success", "cube_pos", "tcp_pos", "gripper", "step"}


@pytest.fixture(scope="module")
def env():
    with make_env(EnvParams()) as e:
        yield e


def run(env, seed, actions=ACTIONS):
    obs, info = env.reset(seed=seed)
    states = [obs["observation.state"]]
    for a in actions:
        obs, *_ = env.step(a)
        states.append(obs["observation.state"])
    return info["cube_pos"], np.stack(states)


def test_spaces_and_normalized_state(env):
    obs, info = env.reset(seed=0)
    assert set(obs) == {"observation.state"} == set(env.observation_space.spaces)
    s = obs["observation.state"]
    assert s.dtype == np.float32 and s.shape == (env.state_dim,) == (21,) and len(env.STATE_NAMES) == 21
    assert env.STATE_NAMES[14:] == ["gripper", "tcp_x", "tcp_y", "tcp_z", "cube_x", "cube_y", "cube_z"]
    assert np.all(np.abs(s) <= 1.0)
    assert s[env.STATE_NAMES.index("gripper")] == -1.0  # raw 0..255 command, open, scaled
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert set(info) >= INFO_KEYS and info["step"] == 0 and info["success"] is False
    assert info["cube_pos"].dtype == np.float64 and info["cube_pos"].shape == (3,)


def test_state_stays_about_unit_range_under_random_actions(env):
    _, traj = run(env, 1)
    assert np.abs(traj).max() < 1.2  # fixed constants: the tcp can overshoot the workspace box a little
    obs, _, _, _, info = env.step(np.zeros(4))
    assert env.observation_space.contains(obs) and set(info) >= INFO_KEYS and info["step"] == len(ACTIONS) + 1


def test_same_seed_same_cube_and_trajectory(env):
    cube_a, traj_a = run(env, 7)
    cube_b, traj_b = run(env, 7)
    assert np.array_equal(cube_a, cube_b) and np.array_equal(traj_a, traj_b)
    cube_c, _ = run(env, 8)
    assert not np.allclose(cube_a[:2], cube_c[:2])


def test_unseeded_resets_follow_the_last_seed(env):
    def cubes(seed):
        first = env.reset(seed=seed)[1]["cube_pos"]
        return [first] + [env.reset()[1]["cube_pos"] for _ in range(3)]

    a, b = cubes(5), cubes(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({tuple(np.round(c[:2], 6)) for c in a}) == 4  # each plain reset draws a fresh cube


def test_cube_positions_cover_the_sampling_box(env):
    xy = np.array([env.reset(seed=s)[1]["cube_pos"][:2] for s in range(40)])
    assert xy[:, 0].min() >= 0.3 and xy[:, 0].max() <= 0.5 and xy[:, 1].min() >= -0.15 and xy[:, 1].max() <= 0.15
    assert xy[:, 0].std() > 0.04 and xy[:, 1].std() > 0.06


def test_moved_cube_rests_at_start_height(env):
    for seed in range(3):
        env.reset(seed=seed)
        s = env.sim_state()
        assert abs(s["cube_lift"]) < 1e-3 and not s["grasped"]  # z_init recomputed after placing the cube
        assert env.step(np.zeros(4))[1] == 0.0


def test_fixed_cube():
    with make_env(EnvParams(random_cube=False)) as e:
        assert np.allclose(e.reset(seed=3)[1]["cube_pos"][:2], [0.5, 0.0])
        assert np.allclose(e.reset(seed=4)[1]["cube_pos"][:2], [0.5, 0.0])


def test_action_is_clipped_and_scaled(env):
    env.reset(seed=0)
    before = env.sim_state()["ee_target"]
    env.step(np.array([5.0, 0.0, 0.0, 0.0]))
    moved = env.sim_state()["ee_target"] - before
    assert moved[0] == pytest.approx(EnvParams().action_scale) and abs(moved[1]) < 1e-12
    env.step(np.array([0.0, 0.0, 0.0, 3.0]))
    assert env.sim_state()["gripper"] == 1.0  # +1 closes fully
    env.step(np.array([0.0, 0.0, 0.0, -0.4]))
    assert env.sim_state()["gripper"] == pytest.approx(0.6)


def test_closed_gripper_away_from_the_cube_is_not_a_grasp(env):
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([0.0, 0.0, 0.0, 1.0]))
    s = env.sim_state()
    assert s["gripper"] == 1.0 and not s["grasped"]


def test_time_limit_truncates_without_terminating():
    with make_env(EnvParams(max_episode_steps=5)) as e:
        e.reset(seed=0)
        flags = [e.step(np.zeros(4))[2:4] for _ in range(5)]
    assert flags[:4] == [(False, False)] * 4 and flags[4] == (False, True)


def test_no_reset_delay_and_base_env_direct(env):
    from gym_hil.envs import PandaPickCubeGymEnv

    from hilstudy.fastsim import FastPandaPickCubeGymEnv

    # not the registered ids: no viewer, no ResetDelayWrapper; gym-hil's class, its controller compiled (fast_sim)
    assert type(env._base) is FastPandaPickCubeGymEnv and FastPandaPickCubeGymEnv.__bases__ == (PandaPickCubeGymEnv,)
    t0 = time.perf_counter()
    env.reset(seed=0)
    assert time.perf_counter() - t0 < 0.5  # stock gym-hil sleeps 1 s here


def test_pixels():
    with make_env(EnvParams(obs="pixels", image_size=32)) as e:
        obs, _ = e.reset(seed=0)
        assert set(obs) == {"observation.state", "observation.images.front", "observation.images.wrist"}
        assert obs["observation.state"].shape == (18,) == (e.state_dim,)  # no privileged cube position with pixels
        assert "cube_x" not in e.STATE_NAMES
        for key in ("observation.images.front", "observation.images.wrist"):
            img = obs[key]
            assert img.dtype == np.uint8 and img.shape == (32, 32, 3) and img.max() > img.min()
        assert e.observation_space.contains(obs)
        # the reset image shows the seeded cube (rendered after placing it), the same as a fresh render
        assert np.array_equal(obs["observation.images.front"], e.render())
        obs2, *_ = e.step(np.zeros(4))
        assert e.observation_space.contains(obs2)


def test_lean_render_is_the_default_and_keeps_the_scene():
    """env.lean_render drops shadows, reflections, haze and multisampling; cameras, scene and sizes stay gym-hil's."""
    from hilstudy.sim import LeanRenderer

    stock_cfg = EnvParams(obs="pixels", image_size=32, lean_render=False, render_mesh_faces=0)
    with make_env(EnvParams(obs="pixels", image_size=32)) as lean, make_env(stock_cfg) as stock:
        a, _ = lean.reset(seed=1)
        b, _ = stock.reset(seed=1)
        assert type(lean._base._viewer) is LeanRenderer and type(stock._base._viewer) is not LeanRenderer
        assert lean._base._viewer.model.vis.quality.offsamples == 0 and stock._base._viewer.model.vis.quality.offsamples > 0
        assert all(lean._base._viewer.scene.flags[f] == 0 for f in LeanRenderer.OFF)
        assert stock._base._viewer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 1
        np.testing.assert_array_equal(a["observation.state"], b["observation.state"])
        for key in ("observation.images.front", "observation.images.wrist"):
            assert a[key].shape == b[key].shape == (32, 32, 3) and a[key].dtype == np.uint8
            # the same view, lit differently: the images correlate far more than with a shifted view
            corr = np.corrcoef(a[key].mean(-1).ravel(), b[key].mean(-1).ravel())[0, 1]
            shifted = np.corrcoef(a[key].mean(-1).ravel(), np.roll(b[key], 8, axis=1).mean(-1).ravel())[0, 1]
            assert corr > 0.5 and corr > shifted + 0.3, (key, corr, shifted)  # wrist ~0.6: the arm's shadow is gone


def test_render_model_decimates_a_copy_and_leaves_physics_alone():
    """The renderer's copy has at most render_mesh_faces triangles per mesh, is the same on every build, and
    differs from the physics model in mesh data only; the physics model keeps gym-hil's meshes."""
    from hilstudy.sim import render_model

    with make_env(EnvParams(obs="pixels", image_size=32)) as env, make_env(EnvParams()) as plain:
        physics, rmodel = env._base.model, env._base._viewer.model
        assert rmodel is not physics
        assert rmodel.mesh_facenum.max() <= 1000 < physics.mesh_facenum.max()
        assert rmodel.mesh_facenum.sum() < physics.mesh_facenum.sum() / 3
        for name in ("mesh_face", "mesh_vert", "mesh_facenum", "mesh_vertnum", "body_mass", "body_inertia", "geom_size"):
            np.testing.assert_array_equal(getattr(physics, name), getattr(plain._base.model, name), err_msg=name)
        for name in ("body_mass", "body_inertia", "geom_size", "geom_rgba", "cam_fovy", "geom_dataid"):
            np.testing.assert_array_equal(getattr(rmodel, name), getattr(physics, name), err_msg=name)
        again = render_model(physics, 1000)
        for name in ("mesh_face", "mesh_vert", "mesh_normal", "mesh_facenum"):
            np.testing.assert_array_equal(getattr(again, name), getattr(rmodel, name), err_msg=name)


def test_decimated_meshes_look_the_same_and_keep_the_physics():
    """Full vs decimated meshes, both lean: nearly the same images at 128x128, and physics bit for bit."""
    from hilstudy.bench import physics_trace

    full_cfg = EnvParams(obs="pixels", render_mesh_faces=0)
    with make_env(EnvParams(obs="pixels")) as lean, make_env(full_cfg) as full, make_env(EnvParams()) as state:
        np.testing.assert_array_equal(physics_trace(lean, 5, steps=20), physics_trace(state, 5, steps=20))
        a, _ = lean.reset(seed=2)
        b, _ = full.reset(seed=2)
        for _ in range(6):
            a, *_ = lean.step(np.array([0.4, -0.3, -0.6, 0.5]))
            b, *_ = full.step(np.array([0.4, -0.3, -0.6, 0.5]))
        for key in ("observation.images.front", "observation.images.wrist"):
            diff = np.abs(a[key].astype(int) - b[key].astype(int))
            assert diff.mean() < 2.0 and (diff > 32).mean() < 0.01, (key, diff.mean(), (diff > 32).mean())


def test_real_is_not_the_sim():
    with pytest.raises(ValueError, match="simulator"):
        PickCubeEnv(EnvParams(kind="real"))
    with pytest.raises(ValueError, match="needs its URDF"):
        make_env(EnvParams(kind="real"))
    from hilstudy.mock import MOCK_URDF
    from hilstudy.params import RealParams

    with pytest.raises(ConnectionError, match="/dev/ttyACM0"):  # an SO-101 follower, and no arm on this machine
        make_env(EnvParams(kind="real"), RealParams(urdf_path=str(MOCK_URDF)))


@pytest.mark.parametrize("close", [True, False])
def test_clean_exit_prints_nothing(close):
    code = (
        "import gc\n"
        "import numpy as np\n"
        "from hilstudy.params import EnvParams\n"
        "from hilstudy.sim import PickCubeEnv, make_env\n"
        "try:\n"
        "    PickCubeEnv(EnvParams(kind='real'))\n"  # a failed __init__ must not complain in __del__
        "except ValueError:\n"
        "    pass\n"
        "gc.collect()\n"
        "e = make_env(EnvParams())\n"
        "e.reset(seed=0)\n"
        "e.step(np.zeros(4))\n"
        + ("e.close()\ne.close()\n" if close else "")  # closed twice, or left for the atexit hook
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
