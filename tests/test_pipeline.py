"""End to end: `dvc repro` of the real pipeline on smoke params, in a temporary copy of the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hilstudy.params import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def set_params(proj: Path, overrides: dict) -> None:
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    (proj / "params.yaml").write_text(yaml.safe_dump(apply_overrides(raw, overrides), sort_keys=False))


def dvc(proj: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=proj, env=env, capture_output=True, text=True)


def ran_stages(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def lock_hashes(text: str) -> dict[str, str]:
    """{stage:path: md5} of every dep and out in a dvc.lock, so a failure names the file that changed."""
    out = {}
    for stage, entry in yaml.safe_load(text)["stages"].items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                out[f"{stage}:{item['path']}"] = item["md5"]
    return out


FT_SCRATCH = {"ft-scratch@0.0-0", "ft-scratch@0.5-0"}
FT_BC = {"ft-bc@0.0-0", "ft-bc@0.5-0"}


def test_dvc_repro_smoke(project_copy):
    proj = project_copy
    set_params(proj, flatten(yaml.safe_load((ROOT / "tests" / "smoke_params.yaml").read_text())))

    first = dvc(proj, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran_stages(first.stdout) == {"demos", "bc"} | FT_SCRATCH | FT_BC
    metrics = json.loads((proj / "data/demos/metrics.json").read_text())
    assert metrics["episodes"] == 2 and metrics["success_rate"] == 1.0
    bc = json.loads((proj / "data/bc/metrics.json").read_text())
    assert bc["steps"] == 40 and bc["final_val_loss"] < bc["initial_val_loss"] and "eval_success_rate" in bc
    assert (proj / "data/bc/policy/model.safetensors").exists()
    shown = dvc(proj, "metrics", "show")
    assert "train_time_s" in shown.stdout and "final_val_loss" in shown.stdout
    plots = dvc(proj, "plots", "show", "-o", "plots")
    assert plots.returncode == 0 and (proj / "plots" / "index.html").exists(), plots.stderr
    for variant in ["scratch-bc0.0-s0", "scratch-bc0.5-s0", "bc-bc0.0-s0", "bc-bc0.5-s0"]:
        ft = json.loads((proj / f"data/finetune/{variant}/metrics.json").read_text())
        assert ft["env_steps"] == 100 and ft["updates"] == 60, variant
        assert (proj / f"data/finetune/{variant}/policy/model.safetensors").exists()
    nb = (proj / "data/demos/notebook.ipynb").read_text()
    assert "image/png" in nb and "start_time" not in nb  # plots rendered, no run-dependent metadata
    lock = (proj / "dvc.lock").read_text()

    second = dvc(proj, "repro")
    assert second.returncode == 0 and ran_stages(second.stdout) == set(), second.stdout

    # determinism: a forced re-run gives the same output hashes (dataset, metrics, executed notebook)
    forced = dvc(proj, "repro", "-f")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert lock_hashes((proj / "dvc.lock").read_text()) == lock_hashes(lock)

    # a typo fails at once, names the key, and leaves the previous results in place
    set_params(proj, {"demos.num_episode": 3})
    bad = dvc(proj, "repro")
    assert bad.returncode != 0
    assert "demos.num_episode: unknown key (did you mean 'num_episodes'?)" in bad.stdout + bad.stderr
    assert json.loads((proj / "data/demos/metrics.json").read_text()) == metrics
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    del raw["demos"]["num_episode"]
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    # a bc param re-runs BC and the fine-tuning that starts from it, nothing else
    set_params(proj, {"bc.lr": 0.001})
    third = dvc(proj, "repro")
    assert third.returncode == 0 and ran_stages(third.stdout) == {"bc"} | FT_BC, third.stdout + third.stderr
    assert (proj / "dvc.lock").read_text() != lock


def test_every_stage_declares_the_params_its_notebook_reads():
    """A notebook reads the sections its parameters cell names; DVC must know, or edits would not re-run it."""
    from hilstudy.params import SECTIONS
    from hilstudy.runner import declared_parameters, read_notebook

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages
    for name, stage in stages.items():
        cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
        notebook = next(w for w in cmd.split() if w.startswith("notebooks/"))
        read = {p for p in declared_parameters(read_notebook(ROOT / notebook)) if p in SECTIONS}
        declared = {p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])}
        assert read <= declared, f"stage {name}: notebook reads {sorted(read - declared)} not in dvc.yaml params"
        assert notebook in stage["deps"], f"stage {name}: {notebook} is not a dep"
