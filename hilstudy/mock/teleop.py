"""`ScriptedTeleop`: a teleoperator that plays a script, behind lerobot's `Teleoperator` interface.

It reports what a gamepad reports (`get_action`: end-effector deltas and a discrete gripper command;
`get_teleop_events`: lerobot's `TeleopEvents`), so everything downstream is exercised as with a person.
"""

from __future__ import annotations

from typing import Any

from lerobot.teleoperators.teleoperator import Teleoperator
from lerobot.teleoperators.utils import TeleopEvents

from hilstudy.mock.configs import ScriptedTeleopConfig
from hilstudy.mock.device import NoHardware

GRIPPER_CODES = {"close": 0.0, "stay": 1.0, "open": 2.0}  # lerobot's GamepadTeleop GripperAction values
_KEYS = {"delta", "gripper", "intervene", "success", "rerecord", "stop"}


class ScriptedTeleop(NoHardware, Teleoperator):
    config_class = ScriptedTeleopConfig
    name = "hilstudy_scripted_teleop"

    def __init__(self, config: ScriptedTeleopConfig):
        super().__init__(config)
        self.config = config
        for i, entry in enumerate(config.script):
            bad = set(entry) - _KEYS
            if bad:
                raise ValueError(f"script[{i}]: unknown keys {sorted(bad)} (known: {sorted(_KEYS)})")
            if entry.get("gripper", "stay") not in GRIPPER_CODES:
                raise ValueError(f"script[{i}].gripper: {entry['gripper']!r} is not one of {sorted(GRIPPER_CODES)}")
        self._t = -1  # index of the entry polled last
        self.feedback: list[dict[str, Any]] = []  # what the env sent back (e.g. where the gripper is)

    @property
    def action_features(self) -> dict:
        names = {"delta_x": 0, "delta_y": 1, "delta_z": 2} | ({"gripper": 3} if self.config.use_gripper else {})
        return {"dtype": "float32", "shape": (len(names),), "names": names}

    @property
    def feedback_features(self) -> dict:
        return {}

    def _entry(self) -> dict:
        return self.config.script[self._t] if 0 <= self._t < len(self.config.script) else {}

    def get_action(self) -> dict[str, float]:
        """The next step's command: a new script entry is read on every get_action call."""
        self._check()
        self._t += 1
        e = self._entry()
        dx, dy, dz = (float(v) for v in e.get("delta", (0.0, 0.0, 0.0)))
        action = {"delta_x": dx, "delta_y": dy, "delta_z": dz}
        if self.config.use_gripper:
            action["gripper"] = GRIPPER_CODES[e.get("gripper", "stay")]
        return action

    def get_teleop_events(self) -> dict[TeleopEvents, bool]:
        """The events of the entry the last get_action read."""
        e = self._entry()
        return {
            TeleopEvents.IS_INTERVENTION: bool(e.get("intervene", False)),
            # as lerobot's gamepad and keyboard report them: terminate on stop/failure and on re-record
            TeleopEvents.TERMINATE_EPISODE: bool(e.get("stop", False) or e.get("rerecord", False)),
            TeleopEvents.SUCCESS: bool(e.get("success", False)),
            TeleopEvents.RERECORD_EPISODE: bool(e.get("rerecord", False)),
        }

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        self.feedback.append(dict(feedback))
