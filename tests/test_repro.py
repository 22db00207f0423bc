"""hilstudy.repro: DVC's plan run in waves of independent stages, recorded with dvc commit (a toy DVC repo)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hilstudy.repro import ready_stages, repro

DVC_YAML = """
stages:
  a:
    cmd: python -c "open('a.txt','w').write(open('src.txt').read().upper())"
    deps: [src.txt]
    outs: [a.txt]
  b:
    cmd: python -c "import time; time.sleep(1); open('b.txt','w').write(open('a.txt').read() + 'b')"
    deps: [a.txt]
    outs: [b.txt]
  c:
    cmd: python -c "import time; time.sleep(1); open('c.txt','w').write(open('a.txt').read() + 'c')"
    deps: [a.txt]
    outs: [c.txt]
  broken:
    cmd: python -c "raise SystemExit(3)"
    deps: [other.txt]
    outs: [never.txt]
"""


def dvc(root, *args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert dvc(tmp_path, "init", "-q").returncode == 0
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "src.txt").write_text("x")
    return tmp_path


def test_waves_follow_the_graph_and_commit(repo, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert [n for n, _ in ready_stages(repo, ["a", "b", "c"])] == ["a"]  # b and c wait for a
    log = []
    assert repro(repo, jobs=2, targets=["b", "c"], log=log.append) == 0
    assert (repo / "b.txt").read_text() == "Xb" and (repo / "c.txt").read_text() == "Xc"
    assert any("2 stage(s), 2 at a time: b, c" in line for line in log)  # b and c ran side by side
    assert "Data and pipelines are up to date" in dvc(repo, "status", "a", "b", "c").stdout
    assert ready_stages(repo, ["b", "c"]) == []

    (repo / "src.txt").write_text("y")  # only `a` is ready; b and c follow in the next wave
    assert [n for n, _ in ready_stages(repo, ["b", "c"])] == ["a"]


def test_a_failing_stage_stops_and_is_named(repo):
    (repo / "other.txt").write_text("z")
    log = []
    assert repro(repo, jobs=2, targets=["broken"], log=log.append) == 1
    assert any("stage 'broken' failed (exit 3)" in line for line in log)
    assert not (repo / "dvc.lock").exists() or "broken" not in (repo / "dvc.lock").read_text()


def test_every_call_is_recorded_and_the_study_wall_clock_read_back(repo, monkeypatch):
    import json

    from hilstudy import bench

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    (repo / "dvc.yaml").write_text(DVC_YAML.split("  broken:")[0])  # a pipeline that can run whole
    assert bench.study_wall_clock(repo) is None  # nothing ran here yet
    assert repro(repo, jobs=2, log=lambda line: None) == 0
    assert repro(repo, jobs=2, log=lambda line: None) == 0  # nothing left to run: recorded, but not a whole study
    first, second = bench.study_records(repo)
    assert set(first["stages"]) == {"a", "b", "c"} and first["returncode"] == 0 and first["jobs"] == 2
    assert first["stages"]["b"] >= 1.0 and second["stages"] == {}
    w = bench.study_wall_clock(repo)
    assert w["stages"] == 3 and w["wall_s"] == first["wall_s"] and w["slowest_stage"] in ("b", "c")
    assert w["wall_s"] >= w["slowest_s"] and w["stage_time_sum_s"] == round(sum(first["stages"].values()), 1)
    assert json.loads((repo / "data" / "repro-history.jsonl").read_text().splitlines()[0]) == first
