"""Configs of hilstudy's simulated lerobot devices, registered in lerobot's config registries.

`RobotConfig`/`TeleoperatorConfig` subclasses, so `make_robot_from_config` and
`make_teleoperator_from_config` build them like any lerobot device (the device class is found by name:
`MockSO101Config` -> `hilstudy.mock.MockSO101`). They stand in for hardware in tests and dry runs: no
motors, no serial port, no cameras, no keyboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

SO101_MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
MOCK_URDF = Path(__file__).resolve().parent.parent / "assets" / "mock_so101.urdf"


@RobotConfig.register_subclass("hilstudy_mock_so101")
@dataclass(kw_only=True)
class MockSO101Config(RobotConfig):
    """A simulated SO-101 follower: SO-101's motors (degrees; gripper 0..100), moved by position goals."""

    start_joints: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # joint positions at connect, SO101_MOTORS order
    max_relative_target: float | dict[str, float] | None = None  # most a goal may move a joint per command, as SOFollowerConfig's
    track: float = 1.0  # fraction of the way to its goal a joint moves per command (1: it gets there)
    camera_names: tuple[str, ...] = ("front", "wrist")  # synthetic cameras (not `cameras`: lerobot reads that as a dict of camera configs)
    camera_size: int = 96  # side of the synthetic camera images (pixels)
    urdf_path: str = str(MOCK_URDF)  # kinematics that place the gripper in the synthetic images
    target_frame: str = "gripper_frame_link"  # the gripper frame in urdf_path


@TeleoperatorConfig.register_subclass("hilstudy_scripted_teleop")
@dataclass(kw_only=True)
class ScriptedTeleopConfig(TeleoperatorConfig):
    """A teleoperator that plays a script: one entry per control step, then idles (no intervention).

    Each entry is a dict with any of: `delta` (3 floats, the end-effector move as a gamepad gives it),
    `gripper` ("close" | "stay" | "open"), and the event flags `intervene` (the intervention button held),
    `success`, `rerecord` and `stop` (lerobot's failure/quit key: end the episode and hold the arm)."""

    script: list[dict] = field(default_factory=list)  # one entry per get_action/get_teleop_events poll
    use_gripper: bool = True  # report a gripper command, as GamepadTeleopConfig.use_gripper
