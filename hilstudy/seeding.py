"""One place that seeds every RNG the study touches."""

from __future__ import annotations

import os
import random

import numpy as np


def check_cpu_pins() -> None:
    """Verify that torch runs the kernels hilstudy pins (hilstudy/__init__.py: ATEN_CPU_CAPABILITY=avx2 on AVX2
    CPUs): torch reads it at its first dispatch, so a process that used torch before importing hilstudy runs
    the CPU's own choice, and its results would differ from the study's on other CPUs."""
    import torch

    want = os.environ.get("ATEN_CPU_CAPABILITY")
    if want and torch.backends.cpu.get_cpu_capability().lower() != want.lower():
        raise RuntimeError(
            f"torch runs {torch.backends.cpu.get_cpu_capability()} kernels, not {want} (ATEN_CPU_CAPABILITY): import "
            "hilstudy before torch, or start Python with ATEN_CPU_CAPABILITY set, so results match other CPUs"
        )


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy's global RNG (gym-hil samples with it) and torch (CPU and CUDA).

    Also asks torch for deterministic kernels where it has them (warn_only: an op without one warns
    instead of failing) and fixes the number of CPU threads' effect on reductions as far as torch allows.
    """
    import torch

    check_cpu_pins()
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
