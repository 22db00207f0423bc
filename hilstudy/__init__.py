"""hilstudy: a reproducible study kit for human-in-the-loop robot RL (HIL-SERL) on LeRobot."""

import os as _os

# MuJoCo (through gym-hil) builds an OpenGL renderer even for state observations. Without a display
# it must use EGL; set it before anything imports mujoco, unless the user chose a backend already.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
if _os.environ.get("MUJOCO_GL") == "egl":
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

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
