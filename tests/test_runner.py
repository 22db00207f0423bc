import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hilstudy import params as P
from hilstudy.runner import NotebookError, declared_parameters, read_notebook, run_notebook

TOY = '''# %% [markdown]
# # toy

# %% tags=["parameters"]
demos = None
env = None
marker = "ran.txt"
fail = False

# %%
import os
from hilstudy import params as P
cfg = P.resolve(env=env, demos=demos)
open(marker, "w").write(f"{cfg.demos.num_episodes} {cfg.demos.seed} {os.getcwd()}")
print("episodes", cfg.demos.num_episodes)

# %%
assert not fail, "asked to fail"
'''


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "params.yaml").write_text("demos: {num_episodes: 3, seed: 1}\n")
    nb = tmp_path / "nb" / "toy.py"
    nb.parent.mkdir()
    nb.write_text(TOY)
    return tmp_path, nb


def test_declared_parameters(toy):
    _, nb = toy
    assert declared_parameters(read_notebook(nb)) == {"demos": None, "env": None, "marker": "ran.txt", "fail": False}


def test_runs_with_injected_sections_in_project_root(toy):
    root, nb = toy
    out = run_notebook(nb, root / "out" / "toy.ipynb", {"demos.seed": 5}, params_file=root / "params.yaml")
    assert (root / "ran.txt").read_text() == f"3 5 {root}"
    executed = nbformat.read(out, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and '"seed": 5' in injected[0].source
    assert "episodes 3" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_output_is_byte_identical_across_runs(toy):
    root, nb = toy
    a = run_notebook(nb, root / "a.ipynb", params_file=root / "params.yaml").read_bytes()
    b = run_notebook(nb, root / "b.ipynb", params_file=root / "params.yaml").read_bytes()
    assert a == b
    text = a.decode()
    assert "start_time" not in text and "duration" not in text and "papermill" not in text


def test_bad_params_fail_before_the_kernel_starts(toy):
    root, nb = toy
    (root / "params.yaml").write_text("demos: {num_episode: 3}\n")
    with pytest.raises(P.ParamsError, match="demos.num_episode: unknown key"):
        run_notebook(nb, root / "out.ipynb", params_file=root / "params.yaml")
    assert not (root / "ran.txt").exists() and not (root / "out.ipynb").exists()


def test_unknown_notebook_parameter(toy):
    root, nb = toy
    with pytest.raises(NotebookError, match="unknown notebook parameter"):
        run_notebook(nb, root / "out.ipynb", {"markr": "x"}, params_file=root / "params.yaml")


def test_failing_cell_raises_and_keeps_the_traceback(toy):
    root, nb = toy
    with pytest.raises(NotebookError, match="asked to fail"):
        run_notebook(nb, root / "out.ipynb", {"fail": True}, params_file=root / "params.yaml")
    assert "asked to fail" in (root / "out.ipynb").read_text()


def test_cli_names_the_bad_key_and_exits_2(toy):
    root, nb = toy
    (root / "params.yaml").write_text("demos: {num_episode: 3}\n")
    r = subprocess.run(
        [sys.executable, "-m", "hilstudy", "run", str(nb), "-o", "x.ipynb", "--params", "params.yaml"],
        cwd=root, capture_output=True, text=True,
    )
    assert r.returncode == 2
    assert "demos.num_episode: unknown key (did you mean 'num_episodes'?)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "hilstudy", "check", "--params", "params.yaml"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 2 and "num_episode" in r.stderr


def test_command_line_values_are_typed_by_the_notebook_default(toy):
    """`-p marker 059` stays the text "059" (its default is a string); `-p fail true` becomes True."""
    from hilstudy.runner import build_parameters

    root, nb = toy
    study = P.load(root / "params.yaml")
    got = build_parameters(read_notebook(nb), study, {"marker": "059", "fail": "true"}, root / "params.yaml")
    assert got["marker"] == "059" and got["fail"] is True


def test_batch_runs_every_set_after_validating_all(toy):
    from hilstudy.runner import run_batch

    root, nb = toy
    sets = [{"demos.seed": 7, "marker": "a.txt"}, {"demos.num_episodes": 5, "marker": "b.txt"}]
    outs = run_batch(nb, sets, root / "batch", params_file=root / "params.yaml")
    assert [o.name for o in outs] == ["toy-00.ipynb", "toy-01.ipynb"] and all(o.exists() for o in outs)
    assert (root / "a.txt").read_text().startswith("3 7") and (root / "b.txt").read_text().startswith("5 1")
    assert '"demos.seed": 7' in (root / "batch" / "sets.json").read_text()
    # a typo in the last set stops the batch before the first set runs
    with pytest.raises(P.ParamsError, match="parameter set 1: .*demos.sed: unknown key"):
        run_batch(nb, [{"marker": "c.txt"}, {"demos.sed": 1}], root / "batch2", params_file=root / "params.yaml")
    assert not (root / "c.txt").exists() and not (root / "batch2").exists()
