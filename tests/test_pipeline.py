"""End to end: `dvc repro` of the real pipeline on smoke params, in a temporary copy of the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_project


ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def set_params(proj: Path, overrides: dict) -> None:
    """Edit params.yaml as a user would: ruamel round trip, so comments and quoted ids ("059") stay."""
    from ruamel.yaml import YAML

    y = YAML()
    raw = y.load((proj / "params.yaml").read_text())
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    with open(proj / "params.yaml", "w") as f:
        y.dump(raw, f)


def dvc(proj: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=proj, env=env, capture_output=True, text=True)


def ran_stages(out: str) -> set[str]:
    """Stages that ran, from `dvc repro` ("Running stage 'x'") or `hilstudy repro` ("stage 'x' done") output."""
    return {
        line.split("'")[1] for line in out.splitlines()
        if line.startswith("Running stage") or (line.startswith("hilstudy repro: stage") and line.rstrip().endswith(" s"))
    }


def hilstudy_repro(proj: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["hilstudy", "repro", *args], cwd=proj, env=env, capture_output=True, text=True)


def lock_hashes(text: str) -> dict[str, str]:
    """{stage:path: md5} of every dep and out in a dvc.lock, so a failure names the file that changed."""
    out = {}
    for stage, entry in yaml.safe_load(text)["stages"].items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                out[f"{stage}:{item['path']}"] = item["md5"]
    return out


FT_SCRATCH = {"ft-scratch@scratch-0", "ft-scratch@scratch-bcloss-0", "ft-scratch@scratch-end-0"}  # H4's drqv2 runs: not default
FT_BC = {"ft-bc@bcinit-0", "ft-bc@bcinit-bcloss-0"}
FT_CLF = {"ft-scratch-clf@scratch-clf-0"}
REPORT = {"report@059"}
INPUTS = {"demos@0", "bc@0", "classifier@0"}  # smoke: one seed, its own inputs


def test_dvc_repro_smoke(project_copy):
    proj = project_copy
    set_params(proj, flatten(yaml.safe_load((ROOT / "tests" / "smoke_params.yaml").read_text())))

    # the study's command: independent stages two at a time, each recorded with dvc commit
    first = hilstudy_repro(proj, "-j", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran_stages(first.stdout) == INPUTS | FT_SCRATCH | FT_BC | FT_CLF | REPORT
    metrics = json.loads((proj / "data/demos/s0/metrics.json").read_text())
    assert metrics["episodes"] == 2 and metrics["success_rate"] == 1.0
    bc = json.loads((proj / "data/bc/s0/metrics.json").read_text())
    assert bc["steps"] == 40 and bc["final_val_loss"] < bc["initial_val_loss"] and "eval_success_rate" in bc
    assert (proj / "data/bc/s0/policy/model.safetensors").exists()
    shown = dvc(proj, "metrics", "show")
    assert "final_val_loss" in shown.stdout and "val_accuracy" in shown.stdout and "eval_success_mean" in shown.stdout
    plots = dvc(proj, "plots", "show", "-o", "plots")
    assert plots.returncode == 0 and (proj / "plots" / "index.html").exists(), plots.stderr
    clf = json.loads((proj / "data/classifier/s0/metrics.json").read_text())
    assert clf["input"] == "state" and clf["val_episodes"] == 1 and 0 <= clf["val_accuracy"] <= 1
    assert json.loads((proj / "data/finetune/scratch-clf-s0/metrics.json").read_text())["reward_disagreement_rate"] >= 0
    for variant in ["scratch-s0", "scratch-bcloss-s0", "bcinit-s0", "bcinit-bcloss-s0", "scratch-clf-s0", "scratch-end-s0"]:
        ft = json.loads((proj / f"data/finetune/{variant}/metrics.json").read_text())
        assert ft["env_steps"] == 100 and ft["updates"] == 60, variant
        assert (proj / f"data/finetune/{variant}/policy/model.safetensors").exists()
    # the devlog report: verdicts for every hypothesis, the figures as DVC plots, the summary as metrics
    verdicts = json.loads((proj / "data/devlog-059/verdicts.json").read_text())
    assert set(verdicts) == {"H1", "H2", "H3", "H4"}
    assert {h: v["verdict"] for h, v in verdicts.items()} == {**dict.fromkeys(["H1", "H2", "H3"], "inconclusive"), "H4": "pending"}  # one seed decides nothing
    assert {"eval_success_mean", "eval_success_mean_vs_H1", "eval_success_mean_vs_H2"} == set(verdicts["H3"]["metrics"])
    assert {p.name for p in (proj / "data/devlog-059/figures").iterdir()} >= {"interventions_success.png", "losses.png", "bc_loss.png"}
    report_nb = (proj / "data/devlog-059/notebook.ipynb").read_text()
    assert "H1 \u2014" in report_nb or "H1 —" in report_nb
    assert "devlog-059/figures/losses.png" in plots.stdout + (proj / "plots" / "index.html").read_text()
    exp = dvc(proj, "exp", "show", "--json")
    assert exp.returncode == 0 and "bcinit-bcloss" in exp.stdout and "eval_success_mean" in exp.stdout, exp.stderr
    nb = (proj / "data/demos/s0/notebook.ipynb").read_text()
    assert "image/png" in nb and "start_time" not in nb  # plots rendered, no run-dependent metadata
    lock = (proj / "dvc.lock").read_text()

    second = dvc(proj, "repro")
    assert second.returncode == 0 and ran_stages(second.stdout) == set(), second.stdout

    # determinism: a second fresh copy of the project, reproduced serially (plain `dvc repro`, one stage at a
    # time), gives the parallel run's output hashes: dataset, weights, metrics, executed notebooks (a cold numba
    # compile that printed a warning into a notebook was caught this way). One chain (recording, then fine-tuning
    # with the BC loss) keeps the suite short; each piece's determinism across processes is tested in its module
    # (test_demos: recordings under other hash seeds and killed ones; test_bc and test_finetune: killed and resumed
    # runs, DrQ-v2 included; test_reward; test_runner: notebook bytes)
    again = copy_project(proj.parent / "again")
    set_params(again, flatten(yaml.safe_load((ROOT / "tests" / "smoke_params.yaml").read_text())))
    serial = hilstudy_repro(again, "-j", "1", "ft-scratch@scratch-bcloss-0")
    assert serial.returncode == 0, serial.stdout + serial.stderr
    assert ran_stages(serial.stdout) == {"demos@0", "ft-scratch@scratch-bcloss-0"}
    # the stages that ran (a committed reference dvc.lock would keep its entries for the others)
    again_hashes = {k: v for k, v in lock_hashes((again / "dvc.lock").read_text()).items()
                    if k.split(":")[0] in {"demos@0", "ft-scratch@scratch-bcloss-0"}}
    first_hashes = lock_hashes(lock)
    assert {k.split(":")[0] for k in again_hashes} == {"demos@0", "ft-scratch@scratch-bcloss-0"}
    assert again_hashes == {k: first_hashes[k] for k in again_hashes}

    # a typo fails at once, names the key, and leaves the previous results in place
    set_params(proj, {"demos.num_episode": 3})
    bad = dvc(proj, "repro")
    assert bad.returncode != 0
    assert "demos.num_episode: unknown key (did you mean 'num_episodes'?)" in bad.stdout + bad.stderr
    assert json.loads((proj / "data/demos/s0/metrics.json").read_text()) == metrics
    (proj / "params.yaml").write_text((proj / "params.yaml").read_text().replace("  num_episode: 3\n", ""))

    # one run's param concerns that run's stage and the reports that read `runs`, nothing else (dvc status
    # names the stages whose own params changed, without running anything)
    set_params(proj, {"runs.from_bc.bcinit-bcloss.bc_weight": 0.25})
    status = dvc(proj, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {k.split(":")[-1] for k in json.loads(status.stdout)} == {"ft-bc@bcinit-bcloss-0", "report@059"}, status.stdout
    set_params(proj, {"runs.from_bc.bcinit-bcloss.bc_weight": 0.5})

    # `dvc exp run -S` sweeps params as an experiment: here one run's BC-loss weight, which re-runs that run and
    # the report, nothing else (which runs a retrained BC actor or classifier re-runs follows from the stages'
    # deps: test_run_groups_depend_on_their_inputs). `dvc exp show` compares the experiment with the workspace.
    exp_run = dvc(proj, "exp", "run", "-n", "bcw025", "-S", "runs.from_bc.bcinit-bcloss.bc_weight=0.25")
    assert exp_run.returncode == 0, exp_run.stdout + exp_run.stderr
    assert ran_stages(exp_run.stdout) == {"ft-bc@bcinit-bcloss-0"} | REPORT, exp_run.stdout
    shown = dvc(proj, "exp", "show", "--json")
    assert "bcw025" in shown.stdout and "0.25" in shown.stdout, shown.stderr

    # a new devlog is one params block: its report runs on the existing runs, nothing else re-runs
    set_params(proj, {"devlogs.toy": {
        "title": "toy: does a BC start beat scratch?", "runs": ["scratch", "bcinit"],
        "hypotheses": {"H1": {"claim": "BC init raises success", "treatment": ["bcinit"], "control": ["scratch"],
                              "metrics": {"eval_success_mean": "higher"}}},
    }})
    toy_run = dvc(proj, "repro")
    assert toy_run.returncode == 0 and ran_stages(toy_run.stdout) == {"report@toy"}, toy_run.stdout + toy_run.stderr
    toy = json.loads((proj / "data/devlog-toy/verdicts.json").read_text())
    assert toy["H1"]["metrics"]["eval_success_mean"]["n"] == 1

    # a devlog naming an unknown run fails before anything runs
    set_params(proj, {"devlogs.toy.runs": ["scratch", "bcinit", "nope"]})
    bad = dvc(proj, "repro")
    assert bad.returncode != 0 and "devlogs.toy.runs: unknown run 'nope'" in bad.stdout + bad.stderr
    set_params(proj, {"devlogs.toy.runs": ["scratch", "bcinit"]})

    # a change to the code fine-tuning runs: DVC reruns the runs (not the demos, BC or classifier), and a
    # finished run's persisted checkpoint is not resumed (it would write the old results under the new code's
    # name): it trains again. Forced again with that code unchanged, it resumes its finished checkpoint.
    timing = lambda: json.loads((proj / "data/finetune/scratch-s0/timing.json").read_text())  # noqa: E731
    code = proj / "hilstudy" / "finetune.py"
    code.write_text(code.read_text() + "\n# a fix to the fine-tuning code\n")
    stale = {k.split(":")[-1] for k in json.loads(dvc(proj, "status", "--json").stdout)}
    assert FT_SCRATCH | FT_BC | FT_CLF <= stale and not stale & INPUTS, stale
    rerun = dvc(proj, "repro", "-s", "ft-scratch@scratch-0")
    assert rerun.returncode == 0 and ran_stages(rerun.stdout) == {"ft-scratch@scratch-0"}, rerun.stdout + rerun.stderr
    assert timing()["resumed"] is False and "not resuming" in (proj / "data/finetune/scratch-s0/progress.log").read_text()
    forced = dvc(proj, "repro", "-f", "-s", "ft-scratch@scratch-0")
    assert forced.returncode == 0 and timing()["resumed"] is True, forced.stdout + forced.stderr


def test_every_stage_declares_the_params_its_notebook_reads():
    """A notebook reads the sections its parameters cell names; DVC must know, or edits would not re-run it."""
    from hilstudy.params import SECTIONS
    from hilstudy.runner import declared_parameters, read_notebook

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # foreach stages keep their definition under `do`
        cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
        notebook = next(w for w in cmd.split() if w.startswith("notebooks/"))
        read = {p for p in declared_parameters(read_notebook(ROOT / notebook)) if p in SECTIONS}
        # a stage may declare part of a section (a fine-tuning run depends on its own entry of `runs` only)
        declared = {(p if isinstance(p, str) else next(iter(p))).split(".")[0] for p in stage.get("params", [])}
        assert read <= declared, f"stage {name}: notebook reads {sorted(read - declared)} not in dvc.yaml params"
        assert notebook in stage["deps"], f"stage {name}: {notebook} is not a dep"


def library_closure(notebook: Path) -> set[str]:
    """Files of hilstudy a notebook runs, transitively, relative to the repository (hilstudy.provenance's
    closure: the one the checkpoints' code digest covers)."""
    from hilstudy.provenance import library_closure as closure

    return {str(f.relative_to(ROOT)) for f in closure(notebook)}


def test_every_stage_depends_on_the_library_code_its_notebook_runs():
    """A change to any hilstudy module a stage runs must re-run the stage: otherwise its outputs (e.g. a run's
    metrics.json, written by report.log_summary) silently keep what older code made."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
        notebook = next(w for w in cmd.split() if w.startswith("notebooks/"))
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        missing = sorted(f for f in library_closure(ROOT / notebook) if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        assert not missing, f"stage {name}: {notebook} runs {missing}, not in its deps"
        # the installed versions shape every result: an upgrade (a new lock) reruns every stage
        assert "requirements.lock" in deps, f"stage {name}: requirements.lock is not a dep"


def test_run_groups_depend_on_their_inputs():
    """A run group's stages depend on the BC actor exactly when they start from it, and on the classifier exactly
    when it rewards them: a retrained actor or classifier re-runs those runs and no others."""
    from hilstudy.params import RUN_GROUPS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for group, (init, reward, stage_group) in RUN_GROUPS.items():
        deps = stages[stage_group]["deps"]
        assert ("data/bc/s${item.seed}/policy" in deps) == (init == "bc"), stage_group  # the seed's own BC actor
        assert ("data/classifier/s${item.seed}/model" in deps) == (reward == "classifier"), stage_group
        assert "data/demos/s${item.seed}/dataset" in deps and f"runs.{group}.${{item.run}}" in stages[stage_group]["params"], stage_group
        assert stages[stage_group]["matrix"]["run"] == f"${{runs.{group}}}", stage_group
