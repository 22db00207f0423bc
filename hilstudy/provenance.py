"""What a result was made with: the library code a stage runs and the installed package versions.

A checkpoint (fine-tuning, BC, a partial demo recording) may be resumed only when everything that shapes
its result is what made it: params, input files, and what this module digests, the code and the versions.
Otherwise a fix to the library would rerun the stage under DVC, resume the old finished checkpoint, and
write the old results again under the new code's name.

- **Code**: the hilstudy files a stage runs, found statically from its entry module (and its notebook, which
  `hilstudy run` names in `HILSTUDY_NOTEBOOK`) by following every `import hilstudy...` (function-local ones
  too), plus the package's data (`hilstudy/assets`). The same closure is what `tests/test_pipeline.py`
  checks every stage's DVC deps against, so DVC reruns a stage exactly when this digest can change.
- **Versions**: every installed distribution's name and version (`importlib.metadata`), so an upgrade of
  torch or lerobot is a different result, as `requirements.lock` being a dependency of every stage makes it
  for DVC.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # the hilstudy package actually imported
NOTEBOOK_ENV = "HILSTUDY_NOTEBOOK"  # set by `hilstudy run` for the kernel: the notebook being executed
DATA_DIRS = ("assets",)  # package data a stage may read (the mock arm's URDF)


def module_file(name: str, package: Path = PACKAGE) -> Path | None:
    """The file of module `name` ('hilstudy.x.y') under `package`, or None if it is not a module."""
    parts = name.split(".")[1:]
    p = package.joinpath(*parts) if parts else package
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return None


def hilstudy_imports(path: Path, package: Path = PACKAGE) -> set[str]:
    """hilstudy modules a file imports anywhere (a function-local import is a dependency too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "hilstudy"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hilstudy":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if module_file(sub, package) else node.module)
    return out


def library_closure(*entries: Path, package: Path = PACKAGE) -> set[Path]:
    """The hilstudy files that `entries` (module or notebook files) run, transitively: each entry that is in the
    package itself, and every module reached by import (the package's `__init__.py`, which only sets
    environment variables, aside)."""
    seen: set[str] = set()
    files: set[Path] = {Path(e).resolve() for e in entries if Path(e).resolve().is_relative_to(package)}
    todo = [m for e in entries for m in hilstudy_imports(Path(e), package)]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        f = module_file(m, package)
        if f is not None:
            files.add(f.resolve())
            todo += list(hilstudy_imports(f, package))
    return files - {(package / "__init__.py").resolve()}


def _hash_files(h, files: list[Path], base: Path) -> None:
    for f in files:
        rel = f.relative_to(base) if f.is_relative_to(base) else f.name
        h.update(f"{rel}\0".encode())
        h.update(f.read_bytes())
        h.update(b"\0")


def code_digest(entry_module: str, notebook: str | Path | None = None, package: Path = PACKAGE) -> str:
    """Digest of the code a stage runs: the closure of `entry_module` ('hilstudy.finetune') and of the notebook
    (default: $HILSTUDY_NOTEBOOK when set), the notebook itself, and the package data."""
    notebook = notebook if notebook is not None else os.environ.get(NOTEBOOK_ENV) or None
    entry = module_file(entry_module, package)
    if entry is None:
        raise ValueError(f"no module {entry_module} in {package}")
    entries = [entry] + ([Path(notebook)] if notebook else [])
    h = hashlib.sha256()
    _hash_files(h, sorted(library_closure(*entries, package=package)), package)
    if notebook:
        _hash_files(h, [Path(notebook).resolve()], Path(notebook).resolve().parent)
    for d in DATA_DIRS:
        _hash_files(h, sorted(p for p in (package / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts), package)
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def versions() -> tuple[tuple[str, str], ...]:
    """(name, version) of every installed distribution, sorted."""
    from importlib.metadata import distributions

    found = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return tuple(sorted(found.items()))


def versions_digest() -> str:
    return hashlib.sha256(repr(versions()).encode()).hexdigest()[:16]


def provenance(entry_module: str) -> dict[str, str]:
    """{'code': ..., 'versions': ...}: what a checkpoint of this stage records and must match to be resumed."""
    return {"code": code_digest(entry_module), "versions": versions_digest()}
