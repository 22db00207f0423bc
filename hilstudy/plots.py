"""The report's curves: runs x seeds brought onto one env-step grid, and the figures drawn from them.

A curve of a run is the mean over its seeds with the min..max band (3 seeds: the band is the data).
Episode quantities (intervention rate, training success, jitter) are 20-episode running means per seed
first (HIL-SERL's convention), then interpolated onto the grid; evaluations and losses are interpolated
as logged. Past a seed's last point the curve is NaN (no extrapolation).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hilstudy.report import WINDOW, RunLogs, running_mean

# name -> (which table, column, running-mean window or None, y label)
CURVES: dict[str, tuple[str, str, int | None, str]] = {
    "intervention_rate": ("episodes", "intervention_rate", WINDOW, f"intervention rate ({WINDOW}-episode mean)"),
    "episode_success": ("episodes", "success", WINDOW, f"training success with operator ({WINDOW}-ep. mean)"),
    "jitter": ("episodes", "jitter", WINDOW, f"action jitter mean|a_t - a_t-1| ({WINDOW}-ep. mean)"),
    "eval_success": ("evals", "success_rate", None, "evaluation success (policy alone, deterministic)"),
    "eval_intervention_rate": ("evals", "intervention_rate", None, "evaluation intervention rate (deterministic policy + operator)"),
    "loss_critic": ("updates", "loss_critic", None, "critic loss"),
    "loss_actor": ("updates", "loss_actor", None, "actor loss"),
    "loss_bc": ("updates", "loss_bc", None, "BC loss (intervention transitions)"),
    "loss_temperature": ("updates", "loss_temperature", None, "temperature loss"),
    "temperature": ("updates", "temperature", None, "temperature"),
    "mean_q": ("updates", "mean_q", None, "mean Q"),
    "stddev": ("updates", "stddev", None, "exploration noise std (drqv2)"),
}
LOSS_CURVES = ("loss_critic", "loss_actor", "loss_bc", "loss_temperature", "temperature", "mean_q", "stddev")


def env_step_grid(runs: dict[str, dict[int, RunLogs]], points: int = 101) -> np.ndarray:
    """An even grid from 0 to the longest run's last env step."""
    last = max(int(logs.metrics.get("env_steps") or 0) for by_seed in runs.values() for logs in by_seed.values())
    return np.linspace(0, max(last, 1), points).round().astype(int)


def seed_curve(frames: list[pd.DataFrame], column: str, grid: np.ndarray, window: int | None) -> tuple[np.ndarray, ...]:
    """(mean, min, max) over seeds of `column` vs env_step, on `grid` (NaN where no seed has data)."""
    rows = []
    for df in frames:
        if column not in df or not len(df):
            continue
        y = running_mean(df[column], window) if window else df[column].to_numpy(dtype=float)
        x = df["env_step"].to_numpy(dtype=float)
        v = np.interp(grid, x, y)
        v[(grid < x[0]) | (grid > x[-1])] = np.nan
        rows.append(v)
    if not rows:
        nan = np.full(grid.shape, np.nan)
        return nan, nan, nan
    a = np.vstack(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # grid points where no seed has data: NaN, said once
        return np.nanmean(a, axis=0), np.nanmin(a, axis=0), np.nanmax(a, axis=0)


def curves(runs: dict[str, dict[int, RunLogs]], name: str, grid: np.ndarray | None = None) -> pd.DataFrame:
    """Long table of one curve for every run: run, env_step, mean, min, max, seeds."""
    table, column, window, _ = CURVES[name]
    grid = env_step_grid(runs) if grid is None else grid
    parts = []
    for run, by_seed in runs.items():
        frames = [getattr(logs, table) for logs in by_seed.values()]
        mean, lo, hi = seed_curve(frames, column, grid, window)
        parts.append(pd.DataFrame({"run": run, "env_step": grid, "mean": mean, "min": lo, "max": hi, "seeds": len(frames)}))
    return pd.concat(parts, ignore_index=True)


def plot_curve(ax, table: pd.DataFrame, name: str, band: bool = True) -> None:
    """One curve of every run on `ax`: the seed mean, and the min..max band."""
    for run, df in table.groupby("run", sort=False):
        (line,) = ax.plot(df.env_step, df["mean"], label=run)
        if band:
            ax.fill_between(df.env_step, df["min"], df["max"], color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("env step")
    ax.set_title(CURVES[name][3], fontsize=9)


def bc_loss_table(live_dir: str | Path) -> pd.DataFrame:
    """The BC stage's dvclive curves as one table: step, train_loss, val_loss (NaN between validations)."""
    d = Path(live_dir) / "plots" / "metrics" / "bc"
    train = pd.read_csv(d / "train_loss.tsv", sep="\t")
    val = pd.read_csv(d / "val_loss.tsv", sep="\t")
    return train.merge(val, on="step", how="outer").sort_values("step", ignore_index=True)


def save_figure(fig, path: str | Path) -> Path:
    """PNG without run-dependent metadata (the same figure gives the same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    return path
