"""hilstudy.provenance: the code and versions a checkpoint records, and what changes them."""

import shutil
from pathlib import Path

from hilstudy import provenance as prov

ROOT = Path(__file__).resolve().parents[1]


def rel(files):
    return {str(f.relative_to(prov.PACKAGE.parent)) for f in files}


def test_closure_follows_imports_function_local_ones_too():
    files = rel(prov.library_closure(prov.module_file("hilstudy.finetune")))
    assert {"hilstudy/finetune.py", "hilstudy/agents/sac_bc.py", "hilstudy/agents/drqv2.py", "hilstudy/rollout.py",
            "hilstudy/operator.py", "hilstudy/sim.py", "hilstudy/provenance.py"} <= files  # fmt: skip
    assert "hilstudy/reward.py" in files  # imported inside Run (classifier reward): a function-local import
    assert "hilstudy/__init__.py" not in files and "hilstudy/devlog.py" not in files and "hilstudy/cli.py" not in files
    nb = rel(prov.library_closure(ROOT / "notebooks" / "40_report.py"))
    assert {"hilstudy/devlog.py", "hilstudy/stats.py"} <= nb and "hilstudy/finetune.py" not in nb


def test_code_digest_changes_with_the_code_a_stage_runs_and_only_that(tmp_path):
    """A copy of the package: an edit to a module fine-tuning runs changes its digest; an edit to one it does
    not run (the CLI) does not; the notebook counts; so does the package data (the mock arm's URDF)."""
    pkg = tmp_path / "hilstudy"
    shutil.copytree(prov.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    nb = tmp_path / "30_finetune.py"
    shutil.copy(ROOT / "notebooks" / "30_finetune.py", nb)
    digest = lambda: prov.code_digest("hilstudy.finetune", notebook=nb, package=pkg)  # noqa: E731
    before = digest()
    assert digest() == before and before == prov.code_digest("hilstudy.finetune", notebook=ROOT / "notebooks" / "30_finetune.py")
    (pkg / "cli.py").write_text((pkg / "cli.py").read_text() + "\n# not run by fine-tuning\n")
    assert digest() == before
    for edit, line in ((pkg / "operator.py", "# a change"), (nb, "# a change"), (next((pkg / "assets").rglob("*.urdf")), "<!-- a change -->")):
        edit.write_text(edit.read_text() + f"\n{line}\n")
        after = digest()
        assert after != before, edit
        before = after


def test_code_digest_reads_the_notebook_hilstudy_run_names(tmp_path, monkeypatch):
    nb = tmp_path / "nb.py"
    nb.write_text("from hilstudy.bc import train_bc\n")
    monkeypatch.delenv(prov.NOTEBOOK_ENV, raising=False)
    plain = prov.code_digest("hilstudy.bc")
    monkeypatch.setenv(prov.NOTEBOOK_ENV, str(nb))
    assert prov.code_digest("hilstudy.bc") != plain


def test_versions_are_the_installed_distributions():
    names = dict(prov.versions())
    assert {"torch", "lerobot", "numpy", "gym-hil", "mujoco"} <= set(names)
    from importlib.metadata import version

    assert names["torch"] == version("torch") and len(prov.versions_digest()) == 16
