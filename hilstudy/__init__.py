"""hilstudy: a reproducible study kit for human-in-the-loop robot RL (HIL-SERL) on LeRobot."""

import os as _os

# MuJoCo (through gym-hil) builds an OpenGL renderer even for state observations. Without a display
# it must use EGL; set it before anything imports mujoco, unless the user chose a backend already.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
if _os.environ.get("MUJOCO_GL") == "egl":
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# One kernel family for every numerical library in the process, on every x86 CPU with AVX2, so that results do
# not depend on the CPU model (single runs are chaotic: one rounding difference changes a whole trajectory).
# - OpenBLAS: numpy and scipy ship their own builds (0.3.29 and 0.3.31 here); on an AVX-512 CPU each picks its
#   SkylakeX kernels, which round differently from each other, so the compiled sim (env.fast_sim: numba runs its
#   matrix products through scipy's OpenBLAS) no longer matches stock gym-hil (numpy's) bit for bit. Their
#   Haswell kernels agree, and are what AVX2 CPUs without AVX-512 run anyway. hilstudy.fastsim checks it.
# - torch: its CPU matrix products go through MKL, which picks its code path per CPU (AVX-512 here, on an AMD
#   EPYC; other paths on Intel or older CPUs); MKL_CBWR=AVX2 is MKL's conditional numerical reproducibility mode:
#   the same results on any CPU with AVX2. torch's own vectorized kernels are dispatched by CPU capability too;
#   ATEN_CPU_CAPABILITY=avx2 fixes them (hilstudy.seeding.check_cpu_pins checks it took effect). Measured here: a
#   400-step SAC run gave three different weight sets with neither, MKL's or torch's pin alone, and the same one
#   every time with both.
# These are read when the libraries load: hilstudy must be imported before numpy and torch (its commands do, and
# the `hilstudy` Jupyter kernel sets them for the process). A value already set is left alone.
try:
    with open("/proc/cpuinfo") as _f:
        _flags = next((line.split(":", 1)[1].split() for line in _f if line.startswith("flags")), [])
except OSError:  # not Linux: leave the libraries alone
    _flags = []
CPU_PINS = {"OPENBLAS_CORETYPE": "Haswell", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"} if "avx2" in _flags and "fma" in _flags else {}
for _k, _v in CPU_PINS.items():
    _os.environ.setdefault(_k, _v)

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
