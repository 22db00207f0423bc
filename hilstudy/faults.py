"""Numerical faults: a NaN or inf loss stops a stage at once, naming the step and the loss.

Training on after a NaN would write NaN weights, metrics and checkpoints that look like results. Every
training loop checks its losses each step (they are read back as Python floats for logging anyway, so the
check costs nothing) and raises `NumericalFault` before anything is saved: fine-tuning keeps its last good
checkpoint, BC and the classifier keep the previous stage outputs (they replace them only at the end).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping


class NumericalFault(FloatingPointError):
    """A loss (or another training statistic) became NaN or infinite."""


def check_finite(values: Mapping[str, float], where: str, kept: str | Callable[[], str]) -> None:
    """Raise NumericalFault naming every non-finite value, `where` it happened and what was `kept` (a callable
    is asked only on a fault: checks run every training step)."""
    bad = [f"{k} = {v}" for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise NumericalFault(f"{where}: {', '.join(bad)}; stopped, {kept() if callable(kept) else kept}")
