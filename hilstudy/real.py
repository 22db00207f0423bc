"""The real arm behind the sim env's interface: a lerobot robot, a person's teleoperator, a safety envelope.

`RealArmEnv` takes the study's 4-D action in [-1, 1] (xyz: move the end-effector target by
`env.action_scale` metres per unit; gripper: +1 closes fully, -1 opens fully) through lerobot's own
robot-env processor steps (`lerobot.robots.so_follower.robot_kinematic_processor`):

    action -> EEReferenceAndDelta   (target = present end-effector pose + scaled delta, by forward kinematics)
           -> EEBoundsAndSafety     (target clipped to the workspace box and to `max_ee_step` per step)
           -> GripperVelocityToJoint (gripper position = present + action * its full range, clipped)
           -> InverseKinematicsEEToJoints (joint goals, placo via lerobot's RobotKinematics)
           -> robot.send_action     (which caps each joint goal at `max_joint_step` degrees, as lerobot's SO
                                     follower does with `max_relative_target`)

and returns what the sim env returns: `observation.state` (joint positions, gripper and end-effector
position, each scaled to about [-1, 1]) plus `observation.images.<camera>` (uint8 HWC, `env.image_size`
square) when `env.obs` is pixels; `terminated` / `truncated` kept apart; `info["success"]`.

The person is the reward and the safety stop. Their teleoperator's events (lerobot's `TeleopEvents`) are
read once per step: the success key ends the episode as solved (reward 1, `terminated`); the stop key
(lerobot's failure/quit key) ends it as failed (`terminated`, reward 0) and the arm holds where it is,
without executing that step's action; the re-record key ends it with `info["rerecord"]` so recording
discards it. The time limit truncates. While labelling classifier frames (`terminate_on_success = False`)
the success key only marks frames (`hilstudy.reward`) and the stop key ends the episode. `TeleopOperator`
hands the wheel to the person while their intervention button is held: the person's action always overrides
the policy's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from hilstudy.params import EnvParams, RealParams, StudyParams

ARM_RANGE_DEG = 180.0  # joint degrees that map to 1.0 in the normalized state
GRIPPER_TO_ACTION = {0.0: 1.0, 1.0: 0.0, 2.0: -1.0}  # lerobot gamepad/keyboard gripper codes (close/stay/open) -> ours


def _events_false() -> dict:
    from lerobot.teleoperators.utils import TeleopEvents

    return {e: False for e in TeleopEvents}


def _register_lerobot_devices() -> None:
    """Fill lerobot's config registries: its robot and teleoperator configs register when their packages are
    imported (lerobot's own scripts import them at the top). A package whose optional dependency is missing is
    skipped; choosing it then fails with the known types listed."""
    import importlib

    import hilstudy.mock  # noqa: F401  (hilstudy_mock_so101, hilstudy_scripted_teleop)

    for name in ("lerobot.robots.so_follower", "lerobot.robots.koch_follower", "lerobot.teleoperators.gamepad",
                 "lerobot.teleoperators.keyboard", "lerobot.teleoperators.so_leader"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (e.g. no display for pynput)
            continue


def robot_config(real: RealParams):
    """The lerobot `RobotConfig` for `real.robot`: an SO follower gets its port, id, OpenCV cameras and joint cap;
    any other registered type (e.g. hilstudy_mock_so101) gets `robot_options` as its fields."""
    from lerobot.robots import RobotConfig

    _register_lerobot_devices()
    try:
        cls = RobotConfig.get_choice_class(real.robot)
    except Exception as exc:  # noqa: BLE001  (draccus raises a bare KeyError/ValueError)
        known = ", ".join(sorted(RobotConfig.get_known_choices()))
        raise ValueError(f"real.robot: unknown lerobot robot type '{real.robot}' (known: {known})") from exc
    opts = dict(real.robot_options)
    if real.robot in ("so101_follower", "so100_follower"):
        from lerobot.cameras.opencv import OpenCVCameraConfig

        cams = {name: OpenCVCameraConfig(index_or_path=src if isinstance(src, int) else Path(src),  # lerobot: int | Path
                                         width=real.camera_width, height=real.camera_height,
                                         fps=real.camera_fps) for name, src in real.cameras.items()}
        opts = {"port": real.port, "cameras": cams, "max_relative_target": joint_caps(real),
                "use_degrees": True, **opts}
    elif real.robot == "hilstudy_mock_so101":
        opts = {"max_relative_target": joint_caps(real), **opts}
    return cls(id=real.robot_id, **_paths(opts))


def joint_caps(real: RealParams) -> dict[str, float]:
    """The SO follower's `max_relative_target` per motor: `max_joint_step` degrees for the arm joints (a backstop:
    RealArmEnv already scales each move to it), the gripper's whole range for the gripper."""
    from hilstudy.mock import SO101_MOTORS

    return {m: (real.gripper_max - real.gripper_min if m == "gripper" else real.max_joint_step) for m in SO101_MOTORS}


def teleop_config(real: RealParams):
    """The lerobot `TeleoperatorConfig` for `real.teleop`, with `teleop_options` as its fields."""
    from lerobot.teleoperators import TeleoperatorConfig

    _register_lerobot_devices()
    try:
        cls = TeleoperatorConfig.get_choice_class(real.teleop)
    except Exception as exc:  # noqa: BLE001
        known = ", ".join(sorted(TeleoperatorConfig.get_known_choices()))
        raise ValueError(f"real.teleop: unknown lerobot teleoperator type '{real.teleop}' (known: {known})") from exc
    opts = dict(real.teleop_options)
    if "use_gripper" in {f.name for f in dataclasses.fields(cls)}:
        opts = {"use_gripper": True, **opts}
    return cls(**_paths(opts))


def _paths(opts: dict[str, Any]) -> dict[str, Any]:
    """lerobot's device configs type `calibration_dir` as a Path; params give a string."""
    return {**opts, "calibration_dir": Path(opts["calibration_dir"])} if opts.get("calibration_dir") else opts


def teleop_to_action(teleop_action: dict[str, Any]) -> np.ndarray:
    """A gamepad/keyboard end-effector command (`delta_x/y/z`, discrete `gripper`) as the study's 4-D action."""
    xyz = [float(teleop_action.get(k, 0.0)) for k in ("delta_x", "delta_y", "delta_z")]
    code = float(teleop_action.get("gripper", 1.0))
    if code not in GRIPPER_TO_ACTION:
        raise ValueError(f"teleoperator gripper command {code!r} is not one of 0 (close), 1 (stay), 2 (open)")
    return np.clip(np.array([*xyz, GRIPPER_TO_ACTION[code]], dtype=np.float32), -1.0, 1.0)


class RealArmEnv:
    """A lerobot robot + teleoperator as the study's env (see the module docstring)."""

    def __init__(self, cfg: EnvParams, real: RealParams, robot: Any = None, teleop: Any = None):
        from lerobot.model import RobotKinematics
        from lerobot.processor import RobotProcessorPipeline
        from lerobot.processor.converters import robot_action_observation_to_transition, transition_to_robot_action
        from lerobot.robots import make_robot_from_config
        from lerobot.robots.so_follower.robot_kinematic_processor import (
            EEBoundsAndSafety,
            EEReferenceAndDelta,
            GripperVelocityToJoint,
            InverseKinematicsEEToJoints,
        )
        from lerobot.teleoperators import make_teleoperator_from_config

        from hilstudy.mock import MOCK_URDF

        if real.urdf_problem():
            raise ValueError(real.urdf_problem())
        self.cfg, self.real = cfg, real
        # False while labelling classifier frames: the success key marks frames, the stop key ends the episode
        # (lerobot's InterventionActionProcessorStep.terminate_on_success)
        self.terminate_on_success = True
        self.pixels = cfg.obs == "pixels"
        self.robot = robot if robot is not None else make_robot_from_config(robot_config(real))
        self.teleop = teleop if teleop is not None else make_teleoperator_from_config(teleop_config(real))
        self.motors = [k.removesuffix(".pos") for k, v in self.robot.action_features.items() if k.endswith(".pos")]
        if not self.motors or self.motors[-1] != "gripper":
            raise ValueError(f"real.robot: expected position-controlled motors ending with 'gripper', got {self.motors}")
        self.cameras = [k for k, v in self.robot.observation_features.items() if isinstance(v, tuple) and len(v) == 3]
        if self.pixels and sorted(self.cameras) != ["front", "wrist"]:
            raise ValueError(f"env.obs is pixels: the robot needs the sim's two cameras, named front and wrist "
                             f"(real.cameras), got {self.cameras or 'none'}")
        if len(real.reset_joints) != len(self.motors):
            raise ValueError(f"real.reset_joints: {len(real.reset_joints)} values for {len(self.motors)} motors "
                             f"({', '.join(self.motors)})")
        self.kinematics = RobotKinematics(real.urdf_path or str(MOCK_URDF), real.target_frame, self.motors)
        self._lo, self._hi = np.asarray(real.ee_min, dtype=np.float64), np.asarray(real.ee_max, dtype=np.float64)
        # the sim's names where the quantity is the same (gripper, tcp_*), so notebooks plot either
        self.STATE_NAMES = [f"{m}.pos" for m in self.motors[:-1]] + ["gripper", "tcp_x", "tcp_y", "tcp_z"]
        spaces = {"observation.state": gym.spaces.Box(-np.inf, np.inf, (len(self.STATE_NAMES),), dtype=np.float32)}
        if self.pixels:
            for cam in ("front", "wrist"):
                spaces[f"observation.images.{cam}"] = gym.spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
        step = {"x": cfg.action_scale, "y": cfg.action_scale, "z": cfg.action_scale}
        self.action_pipeline = RobotProcessorPipeline(
            steps=[
                EEReferenceAndDelta(kinematics=self.kinematics, end_effector_step_sizes=step, motor_names=self.motors,
                                    use_latched_reference=False),
                EEBoundsAndSafety(end_effector_bounds={"min": self._lo, "max": self._hi},
                                  max_ee_step_m=real.max_ee_step, raise_on_jump=False),
                GripperVelocityToJoint(speed_factor=1.0, clip_min=real.gripper_min, clip_max=real.gripper_max),
                InverseKinematicsEEToJoints(kinematics=self.kinematics, motor_names=self.motors,
                                            initial_guess_current_joints=True),
            ],
            to_transition=robot_action_observation_to_transition,
            to_output=transition_to_robot_action,
        )
        if not self.robot.is_connected:
            self.robot.connect()
        if not self.teleop.is_connected:
            self.teleop.connect()
        self._raw: dict[str, Any] = self.robot.get_observation()
        self._steps = 0
        self._polled: tuple[dict, np.ndarray] | None = None
        self._closed = False

    # ------------------------------------------------------------------------------------- the person
    def poll_teleop(self) -> tuple[dict, np.ndarray]:
        """This step's teleoperator events and command (read once per step; later calls return the same)."""
        if self._polled is None:
            action = teleop_to_action(self.teleop.get_action())
            events = {**_events_false(), **self.teleop.get_teleop_events()}
            self._polled = (events, action)
        return self._polled

    # ------------------------------------------------------------------------------------- gym interface
    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Move to `real.reset_joints` in a straight joint-space line over `reset_time_s`, then observe.
        `seed` is recorded only: the real world has no seed."""
        start = self._joints()
        goal = np.asarray(self.real.reset_joints, dtype=np.float64)
        n = max(1, int(round(self.real.reset_time_s * self.real.fps)))
        for k in range(1, n + 1):
            t0 = time.perf_counter()
            q = start + (goal - start) * k / n
            self.robot.send_action({f"{m}.pos": float(v) for m, v in zip(self.motors, q, strict=True)})
            self._pace(t0)
        self.action_pipeline.reset()
        self._raw = self.robot.get_observation()
        self._steps, self._polled, self.seed = 0, None, seed
        return self._observation(), self._info(success=False)

    def step(self, action: np.ndarray):
        t0 = time.perf_counter()
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        from lerobot.teleoperators.utils import TeleopEvents

        events, _ = self.poll_teleop()
        success = bool(events[TeleopEvents.SUCCESS])
        rerecord = bool(events[TeleopEvents.RERECORD_EPISODE])
        stopped = bool(events[TeleopEvents.TERMINATE_EPISODE]) and not success and not rerecord
        if stopped or rerecord:
            self.hold()
        else:
            joints = {k: v for k, v in self._raw.items() if k.endswith(".pos")}
            command = {"enabled": True, "target_x": action[0], "target_y": action[1], "target_z": action[2],
                       "target_wx": 0.0, "target_wy": 0.0, "target_wz": 0.0,
                       "gripper_vel": action[3] * (self.real.gripper_max - self.real.gripper_min)}
            goal = self.action_pipeline((command, joints))
            self.robot.send_action(self._limit(goal))
        self._pace(t0)
        self._raw = self.robot.get_observation()
        self._steps += 1
        self._polled = None
        terminated = (success and self.terminate_on_success) or stopped
        truncated = (rerecord or self._steps >= self.cfg.max_episode_steps) and not terminated
        info = self._info(success=success)
        info.update(stopped=stopped, rerecord=rerecord, time_up=self._steps >= self.cfg.max_episode_steps)
        self.teleop.send_feedback({"ee.x": info["tcp_pos"][0], "ee.y": info["tcp_pos"][1],
                                   "ee.z": info["tcp_pos"][2], "gripper": info["gripper"]})
        return self._observation(), float(success), terminated, truncated, info

    def _limit(self, goal: dict[str, float]) -> dict[str, float]:
        """Scale the arm joints' move so none exceeds `max_joint_step` degrees, keeping its direction (the robot's
        own per-joint cap, a backstop at the same value, would bend the end effector's path). The gripper moves as
        commanded (GripperVelocityToJoint clips it to its range)."""
        present = self._joints()
        target = np.array([float(goal[f"{m}.pos"]) for m in self.motors])
        delta = target - present
        worst = float(np.max(np.abs(delta[:-1]))) if len(delta) > 1 else 0.0
        if worst > self.real.max_joint_step:
            delta[:-1] *= self.real.max_joint_step / worst
        return {f"{m}.pos": float(present[i] + delta[i]) for i, m in enumerate(self.motors)}

    def hold(self) -> None:
        """Command every joint to stay where it is (the stop key)."""
        self.robot.send_action({f"{m}.pos": float(q) for m, q in zip(self.motors, self._joints(), strict=True)})

    def sim_state(self) -> dict[str, Any]:
        """What the operator may know (a real arm has no privileged state): where the gripper is and how closed."""
        return {"tcp_pos": self._ee_pos(), "gripper": self._gripper(), "joints": self._joints(), "step": self._steps}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for dev in (self.teleop, self.robot):
            if dev.is_connected:
                dev.disconnect()

    def __enter__(self) -> RealArmEnv:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- helpers
    def _pace(self, t0: float) -> None:
        if self.real.realtime:
            from lerobot.utils.robot_utils import precise_sleep

            precise_sleep(max(0.0, 1.0 / self.real.fps - (time.perf_counter() - t0)))

    def _joints(self) -> np.ndarray:
        return np.array([float(self._raw[f"{m}.pos"]) for m in self.motors], dtype=np.float64)

    def _ee_pos(self) -> np.ndarray:
        return self.kinematics.forward_kinematics(self._joints())[:3, 3].copy()

    def _gripper(self) -> float:
        g = self._joints()[-1]
        return float((g - self.real.gripper_min) / (self.real.gripper_max - self.real.gripper_min))

    def _observation(self) -> dict[str, np.ndarray]:
        q = self._joints()
        state = np.concatenate([
            q[:-1] / ARM_RANGE_DEG,
            [2.0 * self._gripper() - 1.0],
            2.0 * (self._ee_pos() - self._lo) / (self._hi - self._lo) - 1.0,
        ]).astype(np.float32)
        obs = {"observation.state": state}
        if self.pixels:
            import cv2

            size = self.cfg.image_size
            for cam in self.cameras:
                img = np.asarray(self._raw[cam], dtype=np.uint8)
                if img.shape[:2] != (size, size):
                    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                obs[f"observation.images.{cam}"] = np.ascontiguousarray(img)
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        return {"success": success, "tcp_pos": self._ee_pos(), "gripper": self._gripper(), "step": self._steps,
                "stopped": False, "rerecord": False}


class TeleopOperator:
    """The person at the teleoperator, as the study's `Operator`.

    Recording (no policy): the person drives every step. Fine-tuning: the policy drives until the person
    holds the intervention button; then the person's command is executed, always, and the step is marked
    an intervention (`intervention_start` on the first step of each hold)."""

    def __init__(self, env: RealArmEnv):
        self.env = env
        self._was = False

    def reset(self, seed: int) -> None:
        self._was = False

    def step(self, state: dict[str, Any], policy_action: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
        from lerobot.teleoperators.utils import TeleopEvents

        events, person = self.env.poll_teleop()
        if policy_action is None:
            return person, {"is_intervention": True, "intervention_start": not self._was_and_set(True)}
        if events[TeleopEvents.IS_INTERVENTION]:
            return person, {"is_intervention": True, "intervention_start": not self._was_and_set(True)}
        self._was = False
        return np.asarray(policy_action, dtype=np.float32), {"is_intervention": False, "intervention_start": False}

    def _was_and_set(self, now: bool) -> bool:
        was, self._was = self._was, now
        return was


def require_a_person(params: StudyParams, what: str, command: str) -> None:
    """Refuse to record `what` on a real (not mock) arm unless `hilstudy record` runs it with a person there, so
    `dvc repro` never waits for anyone."""
    import os

    from hilstudy.params import INTERACTIVE_ENV

    if params.env.kind == "real" and params.real.robot != "hilstudy_mock_so101" and not os.environ.get(INTERACTIVE_ENV):
        raise RuntimeError(f"env.kind is real: {what} by a person at the arm, not by `dvc repro`. Run {command}")


def make_operator(params: StudyParams, env: Any):
    """The study's operator for `env.kind`: the scripted expert (sim) or the person at the teleoperator (real)."""
    if params.env.kind == "real":
        return TeleopOperator(env)
    from hilstudy.operator import ScriptedOperator

    return ScriptedOperator(params.operator, action_scale=params.env.action_scale)
