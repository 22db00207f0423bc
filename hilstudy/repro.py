"""`dvc repro` with independent stages side by side: `hilstudy repro -j 2`.

DVC runs stages one at a time (`dvc repro` holds the repository lock throughout). The study's
fine-tuning stages are independent single-threaded processes, so on two cores two of them at once take
about the time of one. This runs DVC's own plan in waves:

1. ask DVC which stages changed (`Repo.status`), and keep those none of whose upstream stages changed;
2. run their commands (from dvc.yaml, as DVC resolved them), up to `jobs` at a time, in the repo root;
3. record each finished stage with `dvc commit -f <stage>`: DVC hashes its deps and outs into dvc.lock
   exactly as `dvc repro` would have (the outputs are `persist`, so DVC would not have removed them either);
4. repeat until nothing changed, then a final `dvc repro` confirms (it runs nothing).

Results do not depend on `jobs`: every stage seeds itself and uses its own torch threads (tested: a
parallel run and a serial `dvc repro` give the same dvc.lock). A failing stage stops the next wave; the
stages that finished are committed, so a re-run continues from there.

Every call appends one line to `data/repro-history.jsonl` (not tracked: a wall-clock is no result): when it
started, its wall-clock, `jobs`, the stages it ran with their times, the git commit and the exit status.
`python benchmarks/study.py` prints the study's wall-clock from it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _bin(name: str) -> str:
    """A tool of this environment (dvc, hilstudy): beside the running python, else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def ready_stages(root: str | Path, targets: list[str] | None = None) -> list[tuple[str, str]]:
    """(name, cmd) of changed stages whose upstream stages are all up to date, in dvc.yaml order."""
    import networkx as nx
    from dvc.repo import Repo

    # DVC resolves stage names against the current directory: work from the repo root
    with contextlib.chdir(root), Repo(str(root)) as repo:
        changed = set(repo.status(targets=targets or None, with_deps=True))
        ready = []
        for stage in repo.index.stages:
            if stage.addressing not in changed or not stage.cmd:
                continue
            upstream = {s.addressing for s in nx.descendants(repo.index.graph, stage)}
            if not upstream & changed:
                cmd = stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)
                ready.append((stage.addressing, cmd))
        return ready


def _run_stage(root: Path, name: str, cmd: str) -> tuple[str, int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, shell=True, cwd=root, capture_output=True, text=True)
    return name, proc.returncode, time.perf_counter() - t0, proc.stdout + proc.stderr


HISTORY = Path("data") / "repro-history.jsonl"


def _git_commit(root: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def repro(root: str | Path = ".", jobs: int = 2, targets: list[str] | None = None, log=print) -> int:
    """Reproduce the pipeline (or `targets` and what they need) with up to `jobs` stages at once; 0 if all ran.
    Appends the call's wall-clock and stage times to `data/repro-history.jsonl`."""
    root = Path(root).resolve()
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    stages: dict[str, float] = {}
    rc = 1
    try:
        rc = _repro(root, jobs, targets, log, stages)
        return rc
    finally:
        record = {"started": started, "wall_s": round(time.perf_counter() - t0, 1), "jobs": jobs, "targets": targets or [],
                  "stages": stages if jobs > 1 else None, "commit": _git_commit(root), "returncode": rc}  # fmt: skip
        (root / HISTORY).parent.mkdir(parents=True, exist_ok=True)
        with open(root / HISTORY, "a") as f:
            f.write(json.dumps(record) + "\n")


def _repro(root: Path, jobs: int, targets: list[str] | None, log, stages: dict[str, float]) -> int:
    dvc = _bin("dvc")
    if jobs <= 1:
        return subprocess.run([dvc, "repro", *(targets or [])], cwd=root).returncode
    done: set[str] = set()
    while True:
        wave = ready_stages(root, targets)
        if not wave or any(name in done for name, _ in wave):
            break  # nothing left, or a stage still changed after it ran: let `dvc repro` below decide
        done.update(name for name, _ in wave)
        log(f"hilstudy repro: {len(wave)} stage(s), {jobs} at a time: {', '.join(n for n, _ in wave)}")
        failed = []
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for name, rc, secs, output in pool.map(lambda nc: _run_stage(root, *nc), wave):
                stages[name] = round(secs, 1)
                if rc != 0:
                    failed.append(name)
                    log(f"hilstudy repro: stage '{name}' failed (exit {rc}) after {secs:.0f} s:\n{output.rstrip()}")
                    continue
                commit = subprocess.run([dvc, "commit", "-f", "-q", name], cwd=root, capture_output=True, text=True)
                if commit.returncode != 0:
                    failed.append(name)
                    log(f"hilstudy repro: dvc commit of '{name}' failed:\n{commit.stdout}{commit.stderr}")
                else:
                    log(f"hilstudy repro: stage '{name}' done in {secs:.0f} s")
        if failed:
            log(f"hilstudy repro: failed: {', '.join(failed)}; finished stages are recorded in dvc.lock")
            return 1
    # whatever is left (nothing, normally) and DVC's own confirmation that the pipeline is up to date
    return subprocess.run([dvc, "repro", *(targets or [])], cwd=root).returncode
