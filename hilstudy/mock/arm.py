"""`MockSO101`: an SO-101 follower without hardware, behind lerobot's `Robot` interface.

Joints follow their position goals (optionally partway, and capped by `max_relative_target` exactly as
lerobot's SO follower caps them), gripper 0..100; cameras are synthetic images that show where the
gripper is (top view for `front`, a centred marker that grows as it descends for `wrist`). Deterministic.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from lerobot.robots.robot import Robot
from lerobot.robots.utils import ensure_safe_goal_position

from hilstudy.mock.configs import SO101_MOTORS, MockSO101Config
from hilstudy.mock.device import NoHardware

WORKSPACE_XY = (0.0, 0.45, -0.25, 0.25)  # x0, x1, y0, y1 (m) that the front image spans
LIMITS_DEG = {"shoulder_pan": 110.0, "shoulder_lift": 100.0, "elbow_flex": 97.0, "wrist_flex": 100.0, "wrist_roll": 160.0}


class MockSO101(NoHardware, Robot):
    config_class = MockSO101Config
    name = "hilstudy_mock_so101"

    def __init__(self, config: MockSO101Config):
        super().__init__(config)
        self.config = config
        if len(config.start_joints) != len(SO101_MOTORS):
            raise ValueError(f"start_joints needs {len(SO101_MOTORS)} values ({', '.join(SO101_MOTORS)})")
        self._q = np.asarray(config.start_joints, dtype=np.float64).copy()
        self._kin = None
        self.sent: list[dict[str, float]] = []  # every goal it was sent, after the safety cap

    @property
    def _motors_ft(self) -> dict[str, type]:
        return {f"{m}.pos": float for m in SO101_MOTORS}

    @cached_property
    def observation_features(self) -> dict[str, Any]:
        cams = {c: (self.config.camera_size, self.config.camera_size, 3) for c in self.config.camera_names}
        return {**self._motors_ft, **cams}

    @cached_property
    def action_features(self) -> dict[str, type]:
        return self._motors_ft

    def connect(self, calibrate: bool = True) -> None:
        from lerobot.model import RobotKinematics

        self._kin = RobotKinematics(self.config.urdf_path, self.config.target_frame, list(SO101_MOTORS))
        super().connect(calibrate)

    @property
    def joints(self) -> np.ndarray:
        """Present joint positions (degrees; gripper 0..100), SO101_MOTORS order."""
        return self._q.copy()

    def gripper_pos(self) -> np.ndarray:
        """Where the gripper frame is (m, robot base frame)."""
        self._check()
        return self._kin.forward_kinematics(self._q)[:3, 3].copy()

    def get_observation(self) -> dict[str, Any]:
        self._check()
        obs: dict[str, Any] = {f"{m}.pos": float(q) for m, q in zip(SO101_MOTORS, self._q, strict=True)}
        for cam in self.config.camera_names:
            obs[cam] = self._image(cam)
        return obs

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        self._check()
        goal = {k.removesuffix(".pos"): float(v) for k, v in action.items() if k.endswith(".pos")}
        unknown = set(goal) - set(SO101_MOTORS)
        if unknown:
            raise KeyError(f"unknown motors {sorted(unknown)}")
        if self.config.max_relative_target is not None:
            present = {m: float(self._q[i]) for i, m in enumerate(SO101_MOTORS)}
            cap = self.config.max_relative_target
            cap = float(cap) if not isinstance(cap, dict) else {m: float(cap[m]) for m in goal}
            goal = ensure_safe_goal_position({m: (g, present[m]) for m, g in goal.items()}, cap)
        for i, m in enumerate(SO101_MOTORS):
            if m in goal:
                target = goal[m]
                lim = LIMITS_DEG.get(m)
                target = float(np.clip(target, 0.0, 100.0)) if m == "gripper" else float(np.clip(target, -lim, lim))
                self._q[i] += self.config.track * (target - self._q[i])
        sent = {f"{m}.pos": v for m, v in goal.items()}
        self.sent.append(sent)
        return sent

    # ------------------------------------------------------------------------------ synthetic images
    def _image(self, cam: str) -> np.ndarray:
        n = self.config.camera_size
        img = np.full((n, n, 3), 40, dtype=np.uint8)
        p = self.gripper_pos()
        closed = self._q[-1] / 100.0
        yy, xx = np.mgrid[0:n, 0:n]
        if cam == "wrist":
            r = max(2.0, n * (0.35 - float(np.clip(p[2], 0.0, 0.3))))  # nearer the table: a bigger marker
            cy = cx = n / 2
        else:
            x0, x1, y0, y1 = WORKSPACE_XY
            cx = (float(p[1]) - y0) / (y1 - y0) * (n - 1)
            cy = (float(p[0]) - x0) / (x1 - x0) * (n - 1)
            r = max(2.0, n * 0.04 * (1.0 + float(np.clip(p[2], 0.0, 0.4)) * 5))  # higher: bigger
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[disk] = (220, int(60 + 160 * closed), 60)
        return img
