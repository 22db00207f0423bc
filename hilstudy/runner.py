"""Execute a jupytext notebook with papermill, in the project's kernel, with parameters from params.yaml.

A notebook's `parameters` cell declares what it reads:

    # %% tags=["parameters"]
    env = None           # a params.yaml section: the runner injects it as a dict
    demos = None         # likewise
    out_dir = "data/demos"   # a plain parameter: set with `-p out_dir data/x`

The runner validates the *whole* params.yaml (with overrides) before the kernel starts, so a typo
anywhere fails at once, naming the key. The executed notebook is written deterministically: no
timestamps, no durations, no temporary paths, fixed cell ids; the same inputs give the same bytes.
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import jupytext
import nbformat

from hilstudy import params as P

KERNEL_NAME = "hilstudy"
PARAMS_FILE_PARAM = "params_file"  # a notebook that declares this gets the params file's path


class NotebookError(RuntimeError):
    """A notebook that cannot be run as asked (no parameters cell, unknown parameter, failed cell)."""


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """A jupytext percent script (.py) or an .ipynb, as a notebook."""
    path = Path(path)
    if not path.exists():
        raise NotebookError(f"{path}: no such notebook")
    return jupytext.read(path)


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise NotebookError(f"expected exactly one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def declared_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Names assigned at top level of the parameters cell, with their default values (literals only)."""
    tree = ast.parse(parameters_cell(nb).source)
    out: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for t in targets:
            if isinstance(t, ast.Name):
                try:
                    out[t.id] = ast.literal_eval(value) if value is not None else None
                except ValueError:
                    out[t.id] = None
    return out


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`section.key` overrides go to params.yaml's sections; plain names are notebook parameters."""
    section = {k: v for k, v in overrides.items() if "." in k}
    plain = {k: v for k, v in overrides.items() if "." not in k}
    return section, plain


def build_parameters(
    nb: nbformat.NotebookNode, study: P.StudyParams, plain: dict[str, Any], params_file: Path
) -> dict[str, Any]:
    declared = declared_parameters(nb)
    unknown = [k for k in plain if k not in declared]
    if unknown:
        raise NotebookError(
            f"unknown notebook parameter(s) {', '.join(unknown)}; the parameters cell declares: {', '.join(declared)}"
        )
    parameters: dict[str, Any] = {}
    for name in declared:
        if name in P.SECTIONS:
            parameters[name] = P.section_dict(study, name)
        elif name == PARAMS_FILE_PARAM:
            parameters[name] = str(params_file)
    for name, value in plain.items():
        # command-line values arrive as text: kept as text where the notebook's default is a string (a
        # devlog id "059" stays "059"), parsed as YAML otherwise (`5` -> 5, `true` -> True)
        if isinstance(value, str) and not isinstance(declared[name], str):
            value = P.parse_value(value)
        parameters[name] = value
    return parameters


def scrub(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove everything run-dependent that papermill and the kernel record, so outputs are byte-stable."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    return nb


def project_root(params_file: Path) -> Path:
    return params_file.resolve().parent


def run_notebook(
    notebook: str | Path,
    output: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    params_file: str | Path = P.PARAMS_FILE,
    kernel_name: str = KERNEL_NAME,
) -> Path:
    """Validate params, execute `notebook` with papermill and write the executed .ipynb to `output`.

    `overrides` maps `section.key` (params.yaml) or a plain notebook parameter name to a value.
    Raises ParamsError / NotebookError before the kernel starts when the inputs are wrong.
    """
    import papermill as pm
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    notebook = Path(notebook)
    params_file = Path(params_file)
    section_over, plain = split_overrides(overrides or {})
    study = P.load(params_file, section_over)  # fails here, naming the key, before anything runs
    nb = read_notebook(notebook)
    parameters = build_parameters(nb, study, plain, params_file)
    output = Path(output) if output else Path("data") / "notebooks" / f"{notebook.stem}.ipynb"
    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise NotebookError(
            f"no Jupyter kernel named '{kernel_name}': run `make env` (scripts/setup_env.sh) to register it"
        ) from None

    os.environ.setdefault("PYTHONHASHSEED", "0")  # inherited by the kernel: hash order is part of determinism
    from hilstudy.provenance import NOTEBOOK_ENV

    os.environ[NOTEBOOK_ENV] = str(notebook.resolve())  # the kernel's checkpoints record the code it runs, this notebook's too
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hilstudy-nb-") as tmp:
        src = Path(tmp) / f"{notebook.stem}.ipynb"
        dst = Path(tmp) / f"{notebook.stem}.out.ipynb"
        # always the project's kernel, whatever the notebook's header says
        nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Python (hilstudy)", "language": "python"}
        nb.metadata.setdefault("language_info", {"name": "python"})
        nbformat.write(nb, src)
        error: Exception | None = None
        try:
            pm.execute_notebook(
                str(src),
                str(dst),
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(project_root(params_file)),
                progress_bar=False,
                request_save_on_cell_execute=False,
                # a person at the real arm (`hilstudy record`) reads the notebook's prompts as they come
                **({"stdout_file": sys.stdout, "stderr_file": sys.stderr} if os.environ.get(P.INTERACTIVE_ENV) else {}),
            )
        except pm.PapermillExecutionError as exc:
            error = exc
        if dst.exists():
            executed = scrub(nbformat.read(dst, as_version=4))
            tmp_out = output.with_name(output.name + ".tmp")
            nbformat.write(executed, tmp_out)
            os.replace(tmp_out, output)  # atomic: a reader never sees half a notebook
        if error is not None:
            raise NotebookError(
                f"{notebook} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
                f"(executed notebook with the traceback: {output})"
            ) from None
    return output


def run_batch(
    notebook: str | Path,
    sets: list[dict[str, Any]],
    out_dir: str | Path,
    params_file: str | Path = P.PARAMS_FILE,
    kernel_name: str = KERNEL_NAME,
) -> list[Path]:
    """Papermill over a list of parameter sets, outside DVC: `<out_dir>/<stem>-NN.ipynb` per set.

    Each set maps `section.key` or a notebook parameter to a value, as `run_notebook`'s overrides. Every
    set is validated before the first one runs (a typo in set 7 costs nothing); a set that fails while
    running is reported at the end and does not stop the others. `<out_dir>/sets.json` lists what ran.
    """
    from hilstudy.io import write_json

    notebook, params_file, out_dir = Path(notebook), Path(params_file), Path(out_dir)
    if not isinstance(sets, list) or not all(isinstance(s, dict) for s in sets) or not sets:
        raise P.ParamsError("a batch is a non-empty list of parameter sets (mappings of key: value)")
    nb = read_notebook(notebook)
    for i, overrides in enumerate(sets):
        section_over, plain = split_overrides(overrides)
        try:
            build_parameters(nb, P.load(params_file, section_over), plain, params_file)
        except (P.ParamsError, NotebookError) as exc:
            raise type(exc)(f"parameter set {i}: {exc}") from None
    outputs, failed = [], []
    for i, overrides in enumerate(sets):
        out = out_dir / f"{notebook.stem}-{i:02d}.ipynb"
        try:
            run_notebook(notebook, out, overrides, params_file, kernel_name)
        except NotebookError as exc:
            failed.append(f"set {i}: {exc}")
        outputs.append(out)
    write_json(out_dir / "sets.json", [{"notebook": str(o), "parameters": s} for o, s in zip(outputs, sets, strict=True)])
    if failed:
        raise NotebookError(f"{len(failed)} of {len(sets)} parameter sets failed:\n" + "\n".join(failed))
    return outputs
