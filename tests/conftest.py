import os
import shutil
import subprocess
from pathlib import Path

import pytest

import hilstudy  # noqa: F401  (sets MUJOCO_GL before anything imports mujoco)

ROOT = Path(__file__).resolve().parents[1]
FIRST = "tests/test_pipeline.py"  # the longest file: `make test` (2 workers, a file each) starts it at once


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end file first, then the others in their usual order, so that on two workers the other worker
    works through the rest while it runs (xdist --dist loadfile --no-loadscope-reorder keeps this order)."""
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files copied into a fresh git repo (no data/)."""
    return copy_project(tmp_path / "proj")


def copy_project(dst: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files copied into a fresh git repo at `dst` (no data/)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if not src.is_file() or rel.startswith("data/"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run(["git", "commit", "-qm", "copy"], cwd=dst, check=True, env=env)
    return dst


def pytest_terminal_summary(terminalreporter) -> None:
    """Figures that tests measure rather than assert exactly (the verdict rule's simulated error rates,
    coverage and power: tests/test_stats.py) are printed in every run's summary, CI's included (they travel
    from xdist workers as the reports' user properties)."""
    lines = [value for rep in terminalreporter.stats.get("passed", []) for name, value in getattr(rep, "user_properties", [])
             if name == "figures"]  # fmt: skip
    if lines:
        terminalreporter.section("measured figures")
        for text in lines:
            terminalreporter.write_line(text)
