"""The compiled controller (env.fast_sim) against gym-hil's own: equal torques and equal trajectories, bit for bit."""

import numpy as np
import pytest
from gym_hil.controllers.opspace import opspace

from hilstudy.bench import physics_state, physics_trace
from hilstudy.fastsim import FastPandaPickCubeGymEnv
from hilstudy.operator import ScriptedOperator
from hilstudy.params import EnvParams, OperatorParams
from hilstudy.rollout import rollout
from hilstudy.sim import make_env


def operator_episode(env, seed: int) -> np.ndarray:
    out = []
    op = ScriptedOperator(OperatorParams(), action_scale=env.cfg.action_scale)
    for _ in rollout(env, operator=op, seed=seed):
        out.append(physics_state(env))
    return np.stack(out)


@pytest.fixture(scope="module")
def envs():
    with make_env(EnvParams(fast_sim=False)) as stock, make_env(EnvParams(fast_sim=True)) as fast:
        yield stock, fast


def test_fast_sim_is_the_default_and_a_gym_hil_env(envs):
    stock, fast = envs
    assert EnvParams().fast_sim is True
    assert type(fast._base) is FastPandaPickCubeGymEnv and type(stock._base).__name__ == "PandaPickCubeGymEnv"
    assert isinstance(fast._base, type(stock._base))


def test_torque_equals_gym_hils_opspace_along_a_trajectory(envs):
    _, fast = envs
    b = fast._base
    rng = np.random.default_rng(0)
    fast.reset(seed=3)
    for i in range(40):
        fast.step(rng.uniform(-1, 1, 4))
        d = b.data
        stock_tau = opspace(
            model=b.model, data=d, site_id=b._pinch_site_id, dof_ids=b._panda_dof_ids, pos=d.mocap_pos[0],
            ori=d.mocap_quat[0], joint=b._home_position, gravity_comp=True,
        )  # fmt: skip
        assert np.array_equal(b.opspace_torque(), stock_tau), f"step {i}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_action_trajectories_are_bit_identical(envs, seed):
    stock, fast = envs
    np.testing.assert_array_equal(physics_trace(fast, seed, steps=60), physics_trace(stock, seed, steps=60))


@pytest.mark.parametrize("seed", [0, 7])
def test_operator_episodes_are_bit_identical(envs, seed):
    stock, fast = envs
    a, b = operator_episode(stock, seed), operator_episode(fast, seed)
    assert a.shape == b.shape
    np.testing.assert_array_equal(b, a)


def test_the_compiled_arccos_is_numpys_bit_for_bit():
    """gym-hil's controller calls np.arccos, whose SIMD loop differs from libm's acos in the last bit for some inputs;
    the compiled loop calls numpy's own inner loop, so it must agree everywhere, including where libm does not."""
    import math

    from hilstudy.fastsim import _acos_all, _numpy_arccos_loop

    x = np.concatenate([np.random.default_rng(1).uniform(-1, 1, 20_000), np.cos(np.geomspace(1e-8, 0.5, 5_000))])
    ours = _acos_all(*_numpy_arccos_loop(), x)
    np.testing.assert_array_equal(ours, np.arccos(x))
    libm = np.array([math.acos(v) for v in x])
    assert (libm != ours).any(), "libm agrees everywhere here: the test would not tell numpy's arccos from libm's"


def test_gripper_and_workspace_clipping_are_gym_hils(envs):
    """apply_action's first half (mocap target clipped to the workspace, gripper command) is gym-hil's own code."""
    stock, fast = envs
    for env in envs:
        env.reset(seed=0)
        for _ in range(40):
            env.step(np.array([1.0, 1.0, 1.0, 1.0]))  # drive into the workspace corner, gripper fully closed
    np.testing.assert_array_equal(fast._base.data.mocap_pos, stock._base.data.mocap_pos)
    np.testing.assert_array_equal(fast._base.data.ctrl, stock._base.data.ctrl)


def test_a_cold_compile_prints_nothing(tmp_path):
    """The first use compiles (numba's cache empty here) and must print nothing: an executed notebook's output would
    otherwise differ between a first and a cached run (it did: a NumbaPerformanceWarning), and so its dvc.lock hash."""
    import os
    import subprocess
    import sys

    code = "from hilstudy.params import EnvParams; from hilstudy.sim import make_env\n" \
           "with make_env(EnvParams()) as e:\n    e.reset(seed=0); e.step([0.1, 0.0, -0.1, 0.5])\n"  # fmt: skip
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONWARNINGS": "default"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Numba" not in out.stderr + out.stdout, out.stderr
    assert any(tmp_path.rglob("*.nbi")), "the kernels were cached where NUMBA_CACHE_DIR points"


def test_hilstudy_pins_openblas_kernels_so_numpy_and_numba_agree():
    """On an AVX-512 CPU numpy's and scipy's OpenBLAS builds pick kernels that round differently; hilstudy, imported
    first, pins the Haswell ones on every AVX2 CPU, and the compiled sim checks the result before it runs."""
    import os
    import subprocess
    import sys

    flags = open("/proc/cpuinfo").read().split()
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = "import hilstudy, os, numpy; from hilstudy import fastsim; fastsim._check_blas(); print(os.environ.get('OPENBLAS_CORETYPE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == ("Haswell" if "avx2" in flags and "fma" in flags else "None")


def test_torch_kernels_are_pinned_too_and_checked():
    """MKL's code path and torch's vectorized kernels are pinned to AVX2 on AVX2 CPUs (a 400-step SAC run gave
    three different weight sets on this AVX-512 CPU with neither pin or one of them, and one with both); a
    process that used torch before importing hilstudy runs the CPU's own kernels, and the stages refuse it."""
    import os
    import subprocess
    import sys

    flags = open("/proc/cpuinfo").read()
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY")}
    code = "import hilstudy, os, torch; print(os.environ.get('MKL_CBWR'), torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == (["AVX2", "AVX2"] if "avx2" in flags and "fma" in flags else ["None", out.stdout.split()[-1]])
    if "avx512f" in flags:
        late = "import torch; torch.ones(2) + 1; import hilstudy; from hilstudy.seeding import seed_everything; seed_everything(0)"
        bad = subprocess.run([sys.executable, "-c", late], env=env, capture_output=True, text=True)
        assert bad.returncode != 0 and "import hilstudy before torch" in bad.stderr
