"""One place that seeds every RNG the study touches."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy's global RNG (gym-hil samples with it) and torch (CPU and CUDA).

    Also asks torch for deterministic kernels where it has them (warn_only: an op without one warns
    instead of failing) and fixes the number of CPU threads' effect on reductions as far as torch allows.
    """
    import torch

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
