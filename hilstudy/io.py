"""Small, deterministic, atomic file writers shared by the stages."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any


def _clean(x: Any) -> Any:
    """JSON-safe and stable: numpy scalars to python, floats rounded to 10 significant digits."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, float):
        return x if not math.isfinite(x) else float(f"{x:.10g}")
    return x


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON with sorted keys, atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def partial_dir(final: str | Path) -> Path:
    """`<final>.partial`, empty, its parent made: where a folder output is written before `replace_dir`
    moves it into place, so an interrupted stage never leaves a half-written folder where a finished one was."""
    final = Path(final)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial


def replace_dir(partial: str | Path, final: str | Path) -> None:
    """Move a finished `partial` folder to `final`, replacing what was there."""
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def dir_digest(path: str | Path) -> str:
    """sha256 over a folder's files (relative names and bytes), or one file's bytes."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def canonical_stats(dataset_root: str | Path) -> None:
    """Rewrite a LeRobotDataset's `meta/stats.json` with sorted keys, atomically. lerobot aggregates the stats over
    a *set* of feature names, so its key order (and the file's bytes) follows the process's string-hash seed: two
    recordings of the same frames in two processes differ there and nowhere else, and so would their DVC hashes."""
    path = Path(dataset_root) / "meta" / "stats.json"
    if not path.exists():
        return
    data = json.loads(path.read_text())
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=4, ensure_ascii=False, sort_keys=True)
    os.replace(tmp, path)
