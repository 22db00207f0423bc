"""gym-hil's MuJoCo Panda pick-cube, made fit for a study.

What changes from stock gym-hil (`PandaPickCubeGymEnv`) and why:
- **Seeded cube.** gym-hil samples the cube with numpy's *global* RNG, so `reset(seed=...)` does not fix
  it. Here the cube's xy comes from `np.random.default_rng(seed)`: same seed, same cube, same trajectory.
- **One flat normalized state** (`observation.state`) with fixed constants, no dataset statistics:
  joint positions by the Panda's joint limits, joint velocities / 2 rad/s, the raw 0..255 gripper
  command scaled, tcp and cube xyz by the workspace bounds; all about [-1, 1]. With pixels, the cube
  position is left out of the state (the policy must see the cube) and 128x128 front/wrist images
  (`observation.images.front|wrist`, uint8 HWC) are added.
- **4-D action** in [-1, 1]: xyz times `action_scale` metres moves the end-effector target; the gripper
  value is the change of the normalized gripper command (+1 closes fully, -1 opens fully).
- **Time limit** counted here (`truncated` at `max_episode_steps`), never folded into `terminated`.
- No reset sleep, no viewer, headless EGL (set in `hilstudy/__init__.py`), and a clean `close()`.
"""

from __future__ import annotations

import hilstudy  # noqa: F401  (MUJOCO_GL before mujoco is imported)

import atexit
import weakref
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gym_hil.envs.panda_pick_gym_env import _CARTESIAN_BOUNDS, _SAMPLING_BOUNDS, PandaPickCubeGymEnv
from gym_hil.mujoco_gym_env import MAX_GRIPPER_COMMAND, GymRenderingSpec

from hilstudy.params import EnvParams

QVEL_SCALE = 2.0  # rad/s that map to 1.0 in the normalized state
IMAGE_KEYS = ("observation.images.front", "observation.images.wrist")

# Envs still open at interpreter exit are closed before Python tears modules down: an EGL context freed
# during teardown prints an EGLError (harmless, but noise in every notebook and log).
# The hook is registered after the first renderer exists: atexit runs hooks last-in first-out, and
# mujoco.egl registers its own (which terminates the EGL display) when the first context is made.
_OPEN_ENVS: weakref.WeakSet = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_open_envs() -> None:
    for env in list(_OPEN_ENVS):
        env.close()


def _to_unit(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map [lo, hi] affinely to [-1, 1]."""
    return 2.0 * (x - lo) / (hi - lo) - 1.0


class PickCubeEnv(gym.Env):
    """Pick up the cube and lift it 10 cm. Sparse reward: 1.0 on the step that succeeds, then terminated."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, cfg: EnvParams):
        if cfg.kind != "sim":
            raise ValueError(f"PickCubeEnv is the simulator; env.kind is {cfg.kind!r}")
        self.cfg = cfg
        self.pixels = cfg.obs == "pixels"
        self._base = PandaPickCubeGymEnv(
            render_spec=GymRenderingSpec(height=cfg.image_size, width=cfg.image_size),
            image_obs=self.pixels,
            reward_type="sparse",
            random_block_position=False,  # we place the cube ourselves, from the reset seed
        )
        model = self._base.model
        dof = self._base._panda_dof_ids
        self._qpos_lo = model.jnt_range[dof, 0].astype(np.float64)
        self._qpos_hi = model.jnt_range[dof, 1].astype(np.float64)
        self._box_lo, self._box_hi = _CARTESIAN_BOUNDS[0], _CARTESIAN_BOUNDS[1]

        names = [f"q{i}" for i in range(1, 8)] + [f"dq{i}" for i in range(1, 8)] + ["gripper", "tcp_x", "tcp_y", "tcp_z"]
        if not self.pixels:
            names += ["cube_x", "cube_y", "cube_z"]
        self.STATE_NAMES: list[str] = names
        self.state_dim = len(names)

        spaces: dict[str, gym.Space] = {
            "observation.state": gym.spaces.Box(-np.inf, np.inf, (self.state_dim,), dtype=np.float32)
        }
        if self.pixels:
            shape = (cfg.image_size, cfg.image_size, 3)
            for key in IMAGE_KEYS:
                spaces[key] = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)

        self._rng = np.random.default_rng(0)  # only for resets without a seed
        self._steps = 0
        self._closed = False
        _OPEN_ENVS.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_open_envs)
            _ATEXIT_REGISTERED = True

    # ----------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is None:
            seed = int(self._rng.integers(2**31))
        else:
            self._rng = np.random.default_rng(seed)
        # gym-hil and its wrappers draw from numpy's global RNG; seed it too so nothing escapes the seed.
        np.random.seed(seed % 2**32)
        super().reset(seed=seed)
        self._base.reset(seed=seed)
        data = self._base.data
        if self.cfg.random_cube:
            xy = np.random.default_rng(seed).uniform(*_SAMPLING_BOUNDS)
            data.jnt("block").qpos[:3] = (*xy, self._base._block_z)
            mujoco.mj_forward(self._base.model, data)
            self._base._z_init = data.sensor("block_pos").data[2]
            self._base._z_success = self._base._z_init + 0.1
        self._steps = 0
        return self._observation(self._base._compute_observation()), self._info(success=False)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        base_action = np.zeros(7)
        base_action[:3] = a[:3] * self.cfg.action_scale
        base_action[6] = a[3]
        raw_obs, reward, terminated, _, info = self._base.step(base_action)
        self._steps += 1
        truncated = (not terminated) and self._steps >= self.cfg.max_episode_steps
        return (
            self._observation(raw_obs),
            float(reward),
            bool(terminated),
            bool(truncated),
            self._info(success=bool(info["succeed"])),
        )

    def close(self) -> None:
        """Release the renderer (its EGL context) now, so nothing complains at interpreter exit."""
        if not self._closed:
            self._closed = True
            self._base.close()

    def __enter__(self) -> PickCubeEnv:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown: nothing left to release)
            pass

    # ---------------------------------------------------------------------------------- observations
    def _observation(self, raw: dict) -> dict[str, np.ndarray]:
        agent = np.asarray(raw["agent_pos"], dtype=np.float64)
        qpos, qvel, grip, tcp = agent[:7], agent[7:14], agent[14:15], agent[15:18]
        parts = [
            _to_unit(qpos, self._qpos_lo, self._qpos_hi),
            qvel / QVEL_SCALE,
            2.0 * grip / MAX_GRIPPER_COMMAND - 1.0,
            _to_unit(tcp, self._box_lo, self._box_hi),
        ]
        if not self.pixels:
            parts.append(_to_unit(np.asarray(raw["environment_state"], dtype=np.float64), self._box_lo, self._box_hi))
        obs = {"observation.state": np.concatenate(parts).astype(np.float32)}
        if self.pixels:
            obs["observation.images.front"] = np.ascontiguousarray(raw["pixels"]["front"], dtype=np.uint8)
            obs["observation.images.wrist"] = np.ascontiguousarray(raw["pixels"]["wrist"], dtype=np.uint8)
        return obs

    def sim_state(self) -> dict[str, Any]:
        """Privileged simulator state for the scripted operator (a real arm has no such thing)."""
        data = self._base.data
        tcp = data.sensor("2f85/pinch_pos").data.copy()
        cube = data.sensor("block_pos").data.copy()
        gripper = float(data.ctrl[self._base._gripper_ctrl_id] / MAX_GRIPPER_COMMAND)
        lift = float(cube[2] - self._base._z_init)
        near = float(np.linalg.norm(cube - tcp)) < 0.02
        return {
            "tcp_pos": tcp,
            "cube_pos": cube,
            "ee_target": data.mocap_pos[0].copy(),  # where the controller is driving the tcp
            "gripper": gripper,
            "cube_lift": lift,
            "grasped": bool(near and gripper > 0.5),
            "z_init": float(self._base._z_init),
            "step": self._steps,
        }

    def _info(self, success: bool) -> dict[str, Any]:
        s = self.sim_state()
        return {"success": success, "cube_pos": s["cube_pos"], "tcp_pos": s["tcp_pos"], "gripper": s["gripper"], "step": self._steps}


def make_env(cfg: EnvParams) -> PickCubeEnv:
    """The study's env for `cfg.kind`: the MuJoCo pick-cube, or (issue 10) a real lerobot arm."""
    if cfg.kind == "sim":
        return PickCubeEnv(cfg)
    raise NotImplementedError("env.kind 'real' (a lerobot robot + teleoperator) is not implemented yet")
