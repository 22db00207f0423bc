"""gym-hil's pick-cube with its operational-space controller compiled: the same physics, bit for bit, ~3x faster.

A 10 Hz env step of gym-hil runs 50 physics substeps; before each `mj_step` (~27 us here) it calls its numpy
`opspace` controller, ~60 us of small-array overhead (two 7x7 and 6x6 inverses, a dozen tiny matmuls). This
module runs the whole substep loop in one numba-compiled function that calls MuJoCo's C API directly
(`mj_jacSite`, `mj_fullM`, `mj_step`) on the env's own `MjModel`/`MjData`.

Identical, not merely close: chaotic contacts turn a 1-ulp difference in a torque into centimetres within an
episode, so every floating-point operation mirrors what numpy does in gym-hil's `opspace`:
- the Jacobian blocks are Fortran-ordered, as numpy's `J[:, dof_ids]` is, so BLAS sums in the same order;
- inverses are `solve(A, I)`: numpy's `inv` is LAPACK's gesv against the identity (numba's `inv` is getri);
  near a singular task inertia, the pseudo-inverse is numpy's formula (SVD, cutoff, V S^-1 U^T), not numba's;
- `arccos` is numpy's own (numpy's SIMD arccos differs from libm's in the last bit for ~9% of inputs): the
  compiled loop calls numpy's float64 arccos inner loop (the one `np.arccos` dispatches to on this CPU) through
  its address in the ufunc object, checked against `np.arccos` bit for bit when first used.
`tests/test_fastsim.py` checks trajectories and torques against gym-hil's code for equality, and
`benchmarks/speed.py` prints the max deviation over 100 seeded episodes and the speed-up.

The gains are read from the signature of gym-hil's `opspace`, with the arguments its `apply_action` passes,
so the two stay in step; the C functions are reached through ctypes addresses given to the compiled loop as
first-class functions, which keeps the compiled code cacheable on disk (numba's cache, `__pycache__/`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import inspect
import os
import warnings

import hilstudy  # noqa: F401  (MUJOCO_GL before mujoco is imported)

import numpy as np
from gym_hil.envs.panda_pick_gym_env import PandaPickCubeGymEnv
from numba import njit

_LIB: ctypes.CDLL | None = None
_FUNCS: tuple | None = None


def _mujoco_functions() -> tuple:
    """(mj_step, mj_jacSite, mj_fullM) from the libmujoco the `mujoco` package loaded, as numba functions."""
    global _LIB, _FUNCS
    if _FUNCS is not None:
        return _FUNCS
    import mujoco
    import numba.experimental.function_type  # noqa: F401  (registers numba's typeof for WrapperAddressProtocol)
    from numba import types

    here = os.path.dirname(mujoco.__file__)
    libs = sorted(glob.glob(os.path.join(here, "libmujoco.so*")) + glob.glob(os.path.join(here, "libmujoco*.dylib")))
    if not libs:
        raise RuntimeError(f"env.fast_sim: no libmujoco shared library next to {mujoco.__file__}; set env.fast_sim: false")
    _LIB = ctypes.CDLL(libs[0])

    class CFunction(types.WrapperAddressProtocol):
        def __init__(self, name: str, sig):
            self._addr = ctypes.cast(getattr(_LIB, name), ctypes.c_void_p).value
            self._sig = sig

        def __wrapper_address__(self) -> int:
            return self._addr

        def signature(self):
            return self._sig

    ptr = types.intp  # pointers travel as integers (MjModel._address, ndarray.ctypes.data)
    _FUNCS = (
        CFunction("mj_step", types.void(ptr, ptr)),  # (const mjModel*, mjData*)
        CFunction("mj_jacSite", types.void(ptr, ptr, ptr, ptr, types.int32)),  # (m, d, jacp, jacr, site)
        CFunction("mj_fullM", types.void(ptr, ptr, ptr)),  # (m, dst, M)
    )
    return _FUNCS


_ACOS: tuple | None = None


def _numpy_arccos_loop() -> tuple:
    """(loop, data): numpy's own float64 arccos inner loop (`void loop(char **args, npy_intp *dims, npy_intp *steps,
    void *data)`) as a numba function, read from the public `PyUFuncObject` struct (numpy's ufuncobject.h): the
    first 'd->d' entry of `np.arccos.types` is the loop numpy's type resolution picks. Checked bit for bit against
    `np.arccos` on 100k inputs, so a numpy whose struct or dispatch differs fails here, not in a trajectory."""
    global _ACOS
    if _ACOS is not None:
        return _ACOS
    import numba.experimental.function_type  # noqa: F401  (numba's typeof for WrapperAddressProtocol)
    from numba import types

    u = np.arccos
    base = id(u)
    fields = ctypes.c_void_p.from_address  # PyObject_HEAD (16 bytes); int nin, nout, nargs, identity; then:
    functions, data = fields(base + 32).value, fields(base + 40).value  # PyUFuncGenericFunction *, void **
    ntypes, name = ctypes.c_int.from_address(base + 48).value, ctypes.c_char_p(fields(base + 56).value).value
    if name != b"arccos" or ntypes != len(u.types) or "d->d" not in u.types:
        raise RuntimeError(f"env.fast_sim: numpy {np.__version__}'s ufunc struct is not the expected one; set env.fast_sim: false")
    i = u.types.index("d->d")
    loop_addr, data_ptr = fields(functions + 8 * i).value, fields(data + 8 * i).value or 0  # NULL data: None

    class Loop(types.WrapperAddressProtocol):
        def __wrapper_address__(self) -> int:
            return loop_addr

        def signature(self):
            return types.void(types.intp, types.intp, types.intp, types.intp)

    loop = Loop()
    x = np.concatenate([np.random.default_rng(0).uniform(-1, 1, 50_000), 1.0 - np.geomspace(1e-16, 1e-2, 50_000), [-1.0, 0.0, 1.0]])
    with _quiet_compile():
        same = np.array_equal(_acos_all(loop, data_ptr, x), np.arccos(x))
    if not same:
        raise RuntimeError(f"env.fast_sim: numpy {np.__version__}'s arccos loop differs from np.arccos; set env.fast_sim: false")
    _ACOS = (loop, data_ptr)
    return _ACOS


@njit(cache=True)
def _acos(loop, data_ptr, io, call):
    """numpy's arccos of io[0] into io[1]: one call of the ufunc loop, `call` = the addresses of its args, dims, steps."""
    loop(call[0], call[1], call[2], data_ptr)
    return io[1]


class _AcosBuffers:
    """The ufunc loop's arguments for one element: io = [x, arccos(x)], args = [&io[0], &io[1]], dims = [1],
    steps = [8, 8], all in arrays that live as long as this object; `call` holds their addresses."""

    def __init__(self):
        self.io = np.zeros(2)
        self._mem = np.array([self.io.ctypes.data, self.io.ctypes.data + 8, 1, 8, 8], dtype=np.intp)
        a = self._mem.ctypes.data
        self.call = np.array([a, a + 16, a + 24], dtype=np.intp)


@njit(cache=True)
def _acos_each(loop, data_ptr, x, io, call):
    out = np.empty_like(x)
    for k in range(x.shape[0]):
        io[0] = x[k]
        out[k] = _acos(loop, data_ptr, io, call)
    return out


def _acos_all(loop, data_ptr, x: np.ndarray) -> np.ndarray:
    b = _AcosBuffers()
    return _acos_each(loop, data_ptr, x, b.io, b.call)


@njit(cache=True)
def _blas_ops(a, v, m, j):
    """The linear algebra the compiled controller does (numba: scipy's BLAS/LAPACK), for `_check_blas`."""
    return a @ v, (j @ m) @ j.T, np.linalg.solve(m, np.eye(m.shape[0])), np.linalg.det(j @ j.T), _pinv(j, 1e-15)


_BLAS_CHECKED = False


def _openblas_cores() -> str:
    """Which kernels each OpenBLAS in the process runs (numpy's and scipy's builds), e.g. 'numpy: Haswell, ...'."""
    site = os.path.dirname(os.path.dirname(np.__file__))
    found = []
    for owner, pattern, suffix in (("numpy", "numpy.libs/libscipy_openblas64_*.so", "64_"),
                                   ("scipy", "scipy.libs/libscipy_openblas*.so", "")):
        for lib in glob.glob(os.path.join(site, pattern)):
            try:
                fn = getattr(ctypes.CDLL(lib), f"scipy_openblas_get_config{suffix}")
                fn.restype = ctypes.c_char_p
                found.append(f"{owner}: {fn().decode()}")
            except (OSError, AttributeError):
                continue
    return "; ".join(found) or "unknown"


def _check_blas() -> None:
    """The compiled controller's matrix products and solves give numpy's results bit for bit, or fail here. numpy
    and scipy (whose BLAS numba calls) ship different OpenBLAS builds; where they pick kernels that round differently
    (their AVX-512 ones) the compiled sim would drift from gym-hil's. hilstudy sets OPENBLAS_CORETYPE so they agree."""
    global _BLAS_CHECKED
    if _BLAS_CHECKED:
        return
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, v = rng.normal(size=(7, 7)), rng.normal(size=7)
        m = a @ a.T + 7 * np.eye(7)
        j = rng.normal(size=(6, 7))
        want = (a @ v, (j @ m) @ j.T, np.linalg.solve(m, np.eye(7)), np.linalg.det(j @ j.T), np.linalg.pinv(j, 1e-15))
        with _quiet_compile():
            got = _blas_ops(a, v, m, j)
        if not all(np.array_equal(x, y) for x, y in zip(got, want)):
            raise RuntimeError(
                "env.fast_sim: numba's BLAS (scipy's OpenBLAS) rounds differently from numpy's here, so the compiled sim "
                f"would not match gym-hil bit for bit ({_openblas_cores()}; OPENBLAS_CORETYPE="
                f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}). Import hilstudy before numpy (it sets "
                "OPENBLAS_CORETYPE=Haswell on AVX2 CPUs), start Python with OPENBLAS_CORETYPE=Haswell, "
                "or set env.fast_sim: false")
    _BLAS_CHECKED = True


@njit(cache=True)
def _pinv(a, rcond):
    """numpy.linalg.pinv(a, rcond) op for op (numba's own pinv rounds differently)."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    cutoff = rcond * np.max(s)
    s_inv = np.zeros_like(s)
    for i in range(s.shape[0]):
        if s[i] > cutoff:
            s_inv[i] = 1.0 / s[i]
    return vt.T @ (s_inv.reshape((-1, 1)) * u.T)


@njit(cache=True)
def mat_to_quat(mat):  # gym_hil.controllers.opspace.mat_to_quat
    trace = mat[0, 0] + mat[1, 1] + mat[2, 2]
    q = np.empty(4)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q[0] = 0.25 * s
        q[1] = (mat[2, 1] - mat[1, 2]) / s
        q[2] = (mat[0, 2] - mat[2, 0]) / s
        q[3] = (mat[1, 0] - mat[0, 1]) / s
    elif mat[0, 0] > mat[1, 1] and mat[0, 0] > mat[2, 2]:
        s = 2.0 * np.sqrt(1.0 + mat[0, 0] - mat[1, 1] - mat[2, 2])
        q[0] = (mat[2, 1] - mat[1, 2]) / s
        q[1] = 0.25 * s
        q[2] = (mat[0, 1] + mat[1, 0]) / s
        q[3] = (mat[0, 2] + mat[2, 0]) / s
    elif mat[1, 1] > mat[2, 2]:
        s = 2.0 * np.sqrt(1.0 + mat[1, 1] - mat[0, 0] - mat[2, 2])
        q[0] = (mat[0, 2] - mat[2, 0]) / s
        q[1] = (mat[0, 1] + mat[1, 0]) / s
        q[2] = 0.25 * s
        q[3] = (mat[1, 2] + mat[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + mat[2, 2] - mat[0, 0] - mat[1, 1])
        q[0] = (mat[1, 0] - mat[0, 1]) / s
        q[1] = (mat[0, 2] + mat[2, 0]) / s
        q[2] = (mat[1, 2] + mat[2, 1]) / s
        q[3] = 0.25 * s
    return q


@njit(cache=True)
def opspace_torque(acos_loop, acos_data, acos_io, acos_call, jac_site, full_m, m_ptr, d_ptr, jacp_ptr, jacr_ptr, full_ptr, qm_ptr, site, d0, n, jacp, jacr,
                   full, qpos, qvel, site_xpos, site_xmat, qfrc_bias, x_des, quat_des, q_des, kp_pos, kd_pos, kp_ori, kd_ori, kp_joint, kd_joint):  # fmt: skip
    """gym_hil.controllers.opspace.opspace(pos=x_des, ori=quat_des, joint=q_des, gravity_comp=True), op for op."""
    q = qpos[d0 : d0 + n].copy()
    dq = qvel[d0 : d0 + n].copy()
    jac_site(m_ptr, d_ptr, jacp_ptr, jacr_ptr, np.int32(site))  # into jacp, jacr
    J = np.empty((n, 6)).T  # Fortran order, as numpy's concatenate of J_v[:, dof_ids], J_w[:, dof_ids]
    J[:3] = jacp[:, d0 : d0 + n]
    J[3:] = jacr[:, d0 : d0 + n]
    J_v = np.asfortranarray(J[:3])
    J_w = np.asfortranarray(J[3:])
    # position PD (pd_control, no acceleration limit)
    dx = J_v @ dq
    ddx = (site_xpos[site] - x_des) * (-kp_pos) + dx * (-kd_pos)
    # orientation PD (pd_control_orientation)
    quat = mat_to_quat(site_xmat[site].reshape((3, 3)))
    if quat @ quat_des < 0.0:
        quat *= -1.0
    w = J_w @ dq
    w1, x1, y1, z1 = quat[0], quat[1], quat[2], quat[3]  # quat_diff_active(source=quat_des, target=quat)
    w2, x2, y2, z2 = quat_des[0], -quat_des[1], -quat_des[2], -quat_des[3]
    qw = w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2
    qx = w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2
    qy = w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2
    qz = w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2
    ori = np.zeros(3)  # quat_to_axisangle
    norm = np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    if norm >= 1e-10:
        qw /= norm
        qx /= norm
        qy /= norm
        qz /= norm
        c = min(max(qw, -1.0), 1.0)
        acos_io[0] = c  # numpy's arccos, not libm's: they differ in the last bit
        half = _acos(acos_loop, acos_data, acos_io, acos_call)
        angle = 2.0 * half
        sin_half = np.sqrt(1.0 - qw * qw)
        if sin_half < 1e-10:
            ori[0] = angle * qx
            ori[1] = angle * qy
            ori[2] = angle * qz
        else:
            ori[0] = angle * (qx / sin_half)
            ori[1] = angle * (qy / sin_half)
            ori[2] = angle * (qz / sin_half)
    dw = ori * (-kp_ori) + w * (-kd_ori)
    # task-space inertia
    full_m(m_ptr, full_ptr, qm_ptr)  # data.qM into full
    M = full[d0 : d0 + n, d0 : d0 + n].copy()
    M_inv = np.linalg.solve(M, np.eye(n))  # numpy's inv is gesv against the identity
    Mx_inv = (J @ M_inv) @ J.T
    if abs(np.linalg.det(Mx_inv)) >= 1e-2:
        Mx = np.linalg.solve(Mx_inv, np.eye(6))
    else:
        Mx = _pinv(Mx_inv, 1e-2)
    ddx_dw = np.concatenate((ddx, dw))
    tau = (J.T @ Mx) @ ddx_dw
    # joint task in the nullspace, then gravity compensation
    ddq = (q - q_des) * (-kp_joint) + dq * (-kd_joint)
    Jnull = (M_inv @ J.T) @ Mx
    tau += (np.eye(n) - J.T @ Jnull.T) @ ddq
    tau += qfrc_bias[d0 : d0 + n]
    return tau


@njit(cache=True, nogil=True)  # releases the GIL: fine-tuning's learner thread runs beside it (finetune.overlap)
def substeps(acos_loop, acos_data, acos_io, acos_call, mj_step, jac_site, full_m, steps, m_ptr, d_ptr, jacp_ptr, jacr_ptr, full_ptr, qm_ptr, site, d0, n, c0,
             jacp, jacr, full, qpos, qvel, ctrl, site_xpos, site_xmat, qfrc_bias, x_des, quat_des, q_des, kp_pos, kd_pos, kp_ori, kd_ori,
             kp_joint, kd_joint):  # fmt: skip
    """gym-hil's substep loop: torque from the controller into ctrl, then mj_step, `steps` times."""
    for _ in range(steps):
        ctrl[c0 : c0 + n] = opspace_torque(
            acos_loop, acos_data, acos_io, acos_call, jac_site, full_m, m_ptr, d_ptr, jacp_ptr, jacr_ptr, full_ptr, qm_ptr, site, d0, n, jacp, jacr, full,
            qpos, qvel, site_xpos, site_xmat, qfrc_bias, x_des, quat_des, q_des, kp_pos, kd_pos, kp_ori, kd_ori, kp_joint, kd_joint,
        )  # fmt: skip
        mj_step(m_ptr, d_ptr)


@contextlib.contextmanager
def _quiet_compile():
    """numba warns that '@' is faster on contiguous arrays when it compiles the kernels (the layouts mirror numpy's
    on purpose) and that first-class functions are experimental; either warning would make a first (compiling)
    run's output differ from a cached one's."""
    from numba.core.errors import NumbaExperimentalFeatureWarning, NumbaPerformanceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)  # first-class C functions
        yield


def _contiguous_start(ids, what: str) -> int:
    ids = np.asarray(ids)
    if not np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))):
        raise ValueError(f"env.fast_sim needs contiguous {what} ids, got {ids.tolist()}; set env.fast_sim: false")
    return int(ids[0])


class FastPandaPickCubeGymEnv(PandaPickCubeGymEnv):
    """gym-hil's PandaPickCubeGymEnv whose `apply_action` runs the compiled substep loop (same trajectories)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from gym_hil.controllers.opspace import opspace

        model, data = self._model, self._data
        self._d0 = _contiguous_start(self._panda_dof_ids, "panda dof")
        self._c0 = _contiguous_start(self._panda_ctrl_ids, "panda actuator")
        self._ndof = len(self._panda_dof_ids)
        # gains exactly as gym-hil's opspace computes them from its defaults (apply_action passes none)
        p = {k: v.default for k, v in inspect.signature(opspace).parameters.items()}
        if p["max_pos_acceleration"] is not None or p["max_ori_acceleration"] is not None or not p["gravity_comp"]:
            raise ValueError("env.fast_sim mirrors gym-hil's opspace without acceleration limits and with gravity compensation")
        ratio = p["damping_ratio"]
        self._kp_pos = np.asarray(p["pos_gains"])
        self._kd_pos = ratio * 2 * np.sqrt(self._kp_pos)
        self._kp_ori = np.asarray(p["ori_gains"])
        self._kd_ori = ratio * 2 * np.sqrt(self._kp_ori)
        self._kp_joint = np.full((self._ndof,), p["nullspace_stiffness"])
        self._kd_joint = ratio * 2 * np.sqrt(self._kp_joint)
        self._q_des = np.asarray(self._home_position, dtype=np.float64)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._full = np.zeros((model.nv, model.nv))
        # raw pointers for the C calls; MjData's arrays live as long as the env, the scratch arrays as self
        self._ptrs = (model._address, data._address, self._jacp.ctypes.data, self._jacr.ctypes.data,
                      self._full.ctypes.data, data.qM.ctypes.data)  # fmt: skip
        self._views = (data.qpos, data.qvel, data.ctrl, data.site_xpos, data.site_xmat, data.qfrc_bias)  # views of MjData
        self._functions = _mujoco_functions()
        self._acos_buffers = _AcosBuffers()  # the arccos loop's argument arrays, alive as long as the env
        self._acos = (*_numpy_arccos_loop(), self._acos_buffers.io, self._acos_buffers.call)
        _check_blas()
        with _quiet_compile():  # compile (or load from numba's cache) now
            self._run_substeps(0)

    def apply_action(self, action):
        """gym-hil's apply_action: its own code sets the mocap target and gripper, the compiled loop steps."""
        n_sub, self._n_substeps = self._n_substeps, 0
        try:
            super().apply_action(action)  # mocap target clipped to the workspace, gripper command; no substep
        finally:
            self._n_substeps = n_sub
        self._run_substeps(n_sub)

    def _targets(self) -> tuple:
        """The controller's targets and gains, as gym-hil's apply_action passes them to opspace."""
        d = self._data
        return (d.mocap_pos[0].copy(), d.mocap_quat[0].copy(), self._q_des, self._kp_pos, self._kd_pos, self._kp_ori,
                self._kd_ori, self._kp_joint, self._kd_joint)  # fmt: skip

    def _run_substeps(self, n: int) -> None:
        qpos, qvel, ctrl, site_xpos, site_xmat, qfrc_bias = self._views
        substeps(
            *self._acos, *self._functions, n, *self._ptrs, self._pinch_site_id, self._d0, self._ndof, self._c0, self._jacp,
            self._jacr, self._full, qpos, qvel, ctrl, site_xpos, site_xmat, qfrc_bias, *self._targets(),
        )  # fmt: skip

    def opspace_torque(self) -> np.ndarray:
        """The compiled controller's torque at the current state (for the equivalence tests)."""
        qpos, qvel, _, site_xpos, site_xmat, qfrc_bias = self._views
        with _quiet_compile():
            return opspace_torque(
                *self._acos, *self._functions[1:], *self._ptrs, self._pinch_site_id, self._d0, self._ndof, self._jacp, self._jacr,
                self._full, qpos, qvel, site_xpos, site_xmat, qfrc_bias, *self._targets(),
            )  # fmt: skip
