"""hilstudy: a reproducible study kit for human-in-the-loop robot RL (HIL-SERL) on LeRobot."""

import os as _os

# MuJoCo (through gym-hil) builds an OpenGL renderer even for state observations. Without a display
# it must use EGL; set it before anything imports mujoco, unless the user chose a backend already.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
if _os.environ.get("MUJOCO_GL") == "egl":
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# One BLAS kernel family for every OpenBLAS in the process, on every x86 CPU with AVX2. numpy and scipy ship
# their own OpenBLAS builds (0.3.29 and 0.3.31 here); on an AVX-512 CPU each picks its SkylakeX kernels, which
# round differently from each other, so the compiled sim (env.fast_sim: numba runs its matrix products through
# scipy's OpenBLAS) no longer matches stock gym-hil (numpy's) bit for bit, and every result depends on the CPU
# model. Their Haswell kernels agree, and are what AVX2 CPUs without AVX-512 (AMD Zen included) run anyway.
# OpenBLAS reads this when it loads: hilstudy must be imported before numpy (its commands and the `hilstudy`
# Jupyter kernel set it for the process), and hilstudy.fastsim checks that it took effect.
if "OPENBLAS_CORETYPE" not in _os.environ:
    try:
        with open("/proc/cpuinfo") as _f:
            _flags = next((line.split(":", 1)[1].split() for line in _f if line.startswith("flags")), [])
    except OSError:  # not Linux: leave OpenBLAS alone
        _flags = []
    if "avx2" in _flags and "fma" in _flags:
        _os.environ["OPENBLAS_CORETYPE"] = "Haswell"

# Study runs are offline and their outputs byte-stable: no hub look-ups at run time, no progress bars
# with rates and timings (HF datasets prints one per saved episode) in executed notebooks.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import logging as _logging
import warnings as _warnings

# Noise that says nothing about a study run: tqdm's notebook widgets are not installed (progress bars are
# off anyway), and HF datasets complains that its own bars stay disabled.
_warnings.filterwarnings("ignore", message="IProgress not found")
_warnings.filterwarnings("ignore", message="Cannot enable progress bars")

# torchcodec cannot load here (no FFmpeg shared libraries); lerobot falls back to pyav and warns at length
# on every import. hilstudy stores images in the dataset (no videos), so the warning says nothing useful.
_logging.getLogger("lerobot.utils.import_utils").setLevel(_logging.ERROR)

__version__ = "0.1.0"
