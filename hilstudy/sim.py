"""gym-hil's MuJoCo Panda pick-cube, made fit for a study.

What changes from stock gym-hil (`PandaPickCubeGymEnv`, used directly: the registered ids open a viewer
and their `ResetDelayWrapper` sleeps 1 s on every reset) and why:
- **Seeded cube.** gym-hil samples the cube with numpy's *global* RNG, so `reset(seed=...)` does not fix
  it. Here the cube's xy comes from `np.random.default_rng(seed)`: same seed, same cube, same trajectory.
- **One flat normalized state** (`observation.state`) with fixed constants, no dataset statistics:
  joint positions by the Panda's joint limits, joint velocities / 2 rad/s, the raw 0..255 gripper
  command scaled, tcp and cube xyz by the workspace bounds; all about [-1, 1]. With pixels, the cube
  position is left out of the state (the policy must see the cube) and front/wrist images
  (`observation.images.front|wrist`, uint8 HWC, `image_size` square) are added.
- **4-D action** in [-1, 1]: xyz times `action_scale` metres moves the end-effector target; the gripper
  value is the change of the normalized gripper command (+1 closes fully, -1 opens fully).
- **Time limit** counted here (`truncated` at `max_episode_steps`), never folded into `terminated`.
- No reset sleep, no viewer, headless EGL (set in `hilstudy/__init__.py`), and a clean `close()`.
- **Compiled controller** (`env.fast_sim`, default): gym-hil's operational-space controller and substep loop
  run compiled (`hilstudy/fastsim.py`), ~3x the env step rate with bit-identical trajectories.
- **Lean camera images** (`env.lean_render`, default, pixels only): a 128x128 policy image needs no shadows,
  floor reflections, haze or 8x multisampling, which cost software (EGL on CPU) rendering ~8x its time.
  The scene and cameras are gym-hil's; the images differ in lighting detail (see `benchmarks/speed.py`).
- **Lighter meshes for the cameras** (`env.render_mesh_faces`, default 1000, pixels only): the renderer draws
  from its own copy of the model whose meshes are welded and decimated to at most that many triangles (the
  Panda's 192k are ~1 per pixel of a 128x128 image); physics keeps gym-hil's model untouched. Twice the
  render rate again, images within ~1/255 on average of the full meshes'.
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

from hilstudy.params import EnvParams, RealParams

QVEL_SCALE = 2.0  # rad/s that map to 1.0 in the normalized state
IMAGE_KEYS = ("observation.images.front", "observation.images.wrist")
FIXED_CUBE_XY = (0.5, 0.0)  # gym-hil's cube position when it is not sampled
GRASP_MIN_COMMAND = 0.5  # normalized gripper command from which the fingers count as closing
GRASP_MAX_DIST = 0.03  # m: tcp (pinch point) to cube centre for a grasp (cube half-size is 2 cm)
_LEFT_PADS, _RIGHT_PADS = ("left_pad1", "left_pad2"), ("right_pad1", "right_pad2")

# Envs still open at interpreter exit are closed before Python tears modules down: an EGL context freed
# during teardown prints an EGLError (harmless, but noise in every notebook and log).
# The hook is registered after the first renderer exists: atexit runs hooks last-in first-out, and
# mujoco.egl registers its own (which terminates the EGL display) when the first context is made.
_OPEN_ENVS: weakref.WeakSet = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def render_model(model: mujoco.MjModel, max_faces: int) -> mujoco.MjModel:
    """A copy of `model` for a renderer: every mesh with more than `max_faces` triangles is welded (shared
    vertices: the stored meshes are triangle soups at seams) and quadric-decimated (fast-simplification) to at
    most `max_faces`, with smooth normals; everything else is `model`'s. Deterministic. Rendering only: the
    copy's meshes no longer match its collision and inertia data, so it must never be stepped."""
    import copy

    import fast_simplification

    out = copy.deepcopy(model)
    for mesh in range(out.nmesh):
        nface = int(out.mesh_facenum[mesh])
        if nface <= max_faces:
            continue
        v0, nvert, f0 = out.mesh_vertadr[mesh], out.mesh_vertnum[mesh], out.mesh_faceadr[mesh]
        verts, weld = np.unique(out.mesh_vert[v0 : v0 + nvert].astype(np.float64), axis=0, return_inverse=True)
        faces = weld.reshape(-1)[out.mesh_face[f0 : f0 + nface]].astype(np.int64)
        verts, faces = fast_simplification.simplify(verts, faces, target_reduction=1.0 - max_faces / nface)
        if len(faces) > max_faces:  # the target is approximate: drop the excess (never seen)
            faces = faces[:max_faces]
        normals = np.zeros_like(verts)  # area-weighted vertex normals
        face_normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
        for corner in range(3):
            np.add.at(normals, faces[:, corner], face_normals)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        n0, nv, nf = out.mesh_normaladr[mesh], len(verts), len(faces)
        out.mesh_vert[v0 : v0 + nv] = verts
        out.mesh_normal[n0 : n0 + nv] = normals
        out.mesh_face[f0 : f0 + nf] = faces
        out.mesh_facenormal[f0 : f0 + nf] = faces  # one normal per vertex
        out.mesh_vertnum[mesh] = out.mesh_normalnum[mesh] = nv
        out.mesh_facenum[mesh] = nf
    return out


class LeanRenderer(mujoco.Renderer):
    """mujoco.Renderer for small policy images: no shadows, reflections or haze (set after every scene update).
    Multisampling is the model's `vis.quality.offsamples`, read when the renderer is made."""

    OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_HAZE)

    def update_scene(self, data, camera=-1, scene_option=None) -> None:
        super().update_scene(data, camera=camera, scene_option=scene_option)
        for flag in self.OFF:
            self.scene.flags[flag] = 0


def _close_open_envs() -> None:
    for env in list(_OPEN_ENVS):
        env.close()


def _to_unit(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map [lo, hi] affinely to [-1, 1]."""
    return 2.0 * (x - lo) / (hi - lo) - 1.0


class PickCubeEnv(gym.Env):
    """Pick up the cube and lift it 10 cm. Sparse reward: 1.0 on the step that succeeds, then terminated.

    `terminated` is gym-hil's (success, or the cube pushed 5 cm past the sampling box); `truncated` is the
    time limit. `info` (reset and step): success, cube_pos, tcp_pos, gripper (command, 0 open..1 closed),
    step. `sim_state()` gives the privileged state a scripted operator needs.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    # Class-level defaults: `close`/`__del__` work even when `__init__` failed before the base env existed.
    _base: PandaPickCubeGymEnv | None = None
    _closed = True

    def __init__(self, cfg: EnvParams):
        if cfg.kind != "sim":
            raise ValueError(f"PickCubeEnv is the simulator; env.kind is {cfg.kind!r}")
        self.cfg = cfg
        self.pixels = cfg.obs == "pixels"
        self.render_mode = "rgb_array"
        if cfg.fast_sim:
            from hilstudy.fastsim import FastPandaPickCubeGymEnv as base_class
        else:
            base_class = PandaPickCubeGymEnv
        self._base = base_class(
            render_spec=GymRenderingSpec(height=cfg.image_size, width=cfg.image_size),
            image_obs=self.pixels,
            reward_type="sparse",
            random_block_position=False,  # we place the cube ourselves, from the reset seed
        )
        self._closed = False
        model = self._base.model
        if self.pixels and (cfg.lean_render or cfg.render_mesh_faces):  # replace gym-hil's renderer (made at init)
            self._base._viewer.close()
            rmodel = render_model(model, cfg.render_mesh_faces) if cfg.render_mesh_faces else model
            if cfg.lean_render:
                rmodel.vis.quality.offsamples = 0  # no multisampling: read by the renderer's GL context when it is made
            renderer = LeanRenderer if cfg.lean_render else mujoco.Renderer
            self._base._viewer = renderer(rmodel, height=cfg.image_size, width=cfg.image_size)
        dof = self._base._panda_dof_ids
        self._qpos_lo = model.jnt_range[dof, 0].astype(np.float64)
        self._qpos_hi = model.jnt_range[dof, 1].astype(np.float64)
        self._box_lo, self._box_hi = _CARTESIAN_BOUNDS[0], _CARTESIAN_BOUNDS[1]
        self._block_geom = model.geom("block").id
        self._left_pads = {model.geom(n).id for n in _LEFT_PADS}
        self._right_pads = {model.geom(n).id for n in _RIGHT_PADS}

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

        # Draws the episode seed of a reset without one. Re-seeded by every seeded reset (gymnasium's rule
        # for `np_random`), so reset(seed=s) followed by plain resets is a reproducible sequence; before the
        # first seeded reset it starts from 0, so even an env never given a seed is deterministic.
        self._seed_rng = np.random.default_rng([0, 1])
        self._steps = 0
        _OPEN_ENVS.add(self)
        global _ATEXIT_REGISTERED
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_open_envs)
            _ATEXIT_REGISTERED = True

    # ----------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode. Same seed: same cube position and, for the same actions, the same trajectory."""
        if seed is None:
            seed = int(self._seed_rng.integers(2**31))
        else:
            seed = int(seed)
            self._seed_rng = np.random.default_rng([seed, 1])  # a stream apart from the cube's
        # gym-hil (random_block_position) and anything else in its stack draw from numpy's *global* RNG:
        # seed it with the episode seed too, so nothing can escape the seed.
        np.random.seed(seed % 2**32)
        super().reset(seed=seed)
        base = self._base
        base.image_obs = False  # the base reset's observation is thrown away: do not render it
        try:
            base.reset(seed=seed)  # mj_resetData, robot home, cube at (0.5, 0), mj_forward, z_init
        finally:
            base.image_obs = self.pixels
        # Place the cube from the episode seed, then redo what gym-hil's reset does after placing it.
        xy = np.random.default_rng(seed).uniform(*_SAMPLING_BOUNDS) if self.cfg.random_cube else FIXED_CUBE_XY
        base.data.jnt("block").qpos[:3] = (*xy, base._block_z)
        mujoco.mj_forward(base.model, base.data)
        base._z_init = base.data.sensor("block_pos").data[2]
        base._z_success = base._z_init + 0.1
        self._steps = 0
        return self._observation(base._compute_observation()), self._info(success=False)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        """Clip the 4-D action to [-1, 1], scale xyz to metres, step gym-hil's 7-D action (no rotation)."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        base_action = np.zeros(7)
        base_action[:3] = a[:3] * self.cfg.action_scale  # metres added to the end-effector target
        base_action[6] = a[3]  # change of the normalized gripper command; positive closes
        raw_obs, reward, terminated, _, info = self._base.step(base_action)
        self._steps += 1
        time_up = self._steps >= self.cfg.max_episode_steps
        truncated = (not terminated) and time_up
        # time_up: the time limit is reached whatever ended the step (a reward that overrides the env's success
        # end, e.g. a classifier's, must still stop at the limit)
        return (
            self._observation(raw_obs),
            float(reward),
            bool(terminated),
            bool(truncated),
            {**self._info(success=bool(info["succeed"])), "time_up": time_up},
        )

    def render(self) -> np.ndarray:
        """The front camera's view (uint8 HWC, image_size square), e.g. for videos of state-obs runs."""
        viewer = self._base._viewer
        viewer.update_scene(self._base.data, camera=self._base.camera_id[0])
        return viewer.render()

    def close(self) -> None:
        """Release the renderer (its EGL context) now, so nothing complains at interpreter exit. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _OPEN_ENVS.discard(self)
        if self._base is not None:
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

    def _pads_on_cube(self) -> tuple[bool, bool]:
        """Whether a left and a right finger pad touch the cube (from the last physics step's contacts)."""
        data, block = self._base.data, self._block_geom
        left = right = False
        for c in data.contact[: data.ncon]:
            if c.geom1 == block or c.geom2 == block:
                other = c.geom2 if c.geom1 == block else c.geom1
                left |= other in self._left_pads
                right |= other in self._right_pads
        return left, right

    def sim_state(self) -> dict[str, Any]:
        """Privileged simulator state for the scripted operator (a real arm has no such thing).

        grasped: the fingers are commanded closed, a left and a right finger pad both touch the cube, and
        the pinch point is within 3 cm of the cube's centre (a cube pinched by the finger tips, pushed by
        one finger, or lying beside closed fingers is not grasped).
        """
        base = self._base
        data = base.data
        tcp = data.sensor("2f85/pinch_pos").data.copy()
        cube = data.sensor("block_pos").data.copy()
        gripper = float(data.ctrl[base._gripper_ctrl_id] / MAX_GRIPPER_COMMAND)
        left, right = self._pads_on_cube()
        near = float(np.linalg.norm(cube - tcp)) < GRASP_MAX_DIST
        return {
            "tcp_pos": tcp,
            "cube_pos": cube,
            "ee_target": data.mocap_pos[0].copy(),  # where the controller is driving the tcp
            "gripper": gripper,
            "cube_lift": float(cube[2] - base._z_init),
            "grasped": bool(gripper >= GRASP_MIN_COMMAND and left and right and near),
            "z_init": float(base._z_init),
            "step": self._steps,
        }

    def _info(self, success: bool) -> dict[str, Any]:
        data = self._base.data
        return {
            "success": success,
            "cube_pos": data.sensor("block_pos").data.copy(),
            "tcp_pos": data.sensor("2f85/pinch_pos").data.copy(),
            "gripper": float(data.ctrl[self._base._gripper_ctrl_id] / MAX_GRIPPER_COMMAND),
            "step": self._steps,
        }


def make_env(cfg: EnvParams, real: RealParams | None = None) -> Any:
    """The study's env for `cfg.kind`: the MuJoCo pick-cube, or a lerobot robot + teleoperator (`real`)."""
    if cfg.kind == "sim":
        return PickCubeEnv(cfg)
    from hilstudy.real import RealArmEnv

    return RealArmEnv(cfg, real if real is not None else RealParams())
