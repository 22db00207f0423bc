"""Simulated lerobot devices (robot, teleoperator) registered through lerobot's config registries.

Importing this package registers `hilstudy_mock_so101` (robot) and `hilstudy_scripted_teleop`
(teleoperator); lerobot's factories find the device classes here by name.
"""

from hilstudy.mock.arm import MockSO101
from hilstudy.mock.configs import MOCK_URDF, SO101_MOTORS, MockSO101Config, ScriptedTeleopConfig
from hilstudy.mock.teleop import ScriptedTeleop

__all__ = ["MOCK_URDF", "SO101_MOTORS", "MockSO101", "MockSO101Config", "ScriptedTeleop", "ScriptedTeleopConfig"]
