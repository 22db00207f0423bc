"""What lerobot's `Robot` and `Teleoperator` interfaces ask of a device without hardware."""

from __future__ import annotations


class NoHardware:
    """Nothing to calibrate or configure; connected from `connect()` until `disconnect()`. Put it before lerobot's
    base class so these methods fill that interface's abstract ones."""

    _connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def _check(self) -> None:
        if not self._connected:
            raise ConnectionError(f"{self} is not connected")
