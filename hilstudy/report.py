"""What a fine-tuning run's files say: curves, per-run summaries, and seed aggregates with confidence intervals.

A run folder (`data/finetune/<variant>-s<seed>/`) holds `episodes.csv` (one row per training episode, with
the operator in the loop), `evals.csv` (deterministic policy alone, every `eval_every` env steps, from
step 0), `updates.csv` (losses averaged over `log_every` updates), `metrics.json` and, outside DVC's
hashes, `timing.json`. Everything here reads those files only, so a report can be rebuilt from `data/`.

Conventions (HIL-SERL's figures): intervention rate = intervened steps / episode steps, shown as a running
mean over `WINDOW` episodes; success thresholds are on the deterministic evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

WINDOW = 20  # episodes in a running mean (HIL-SERL plots 20-episode means)
SUCCESS_BAR = 0.9  # evaluation success that counts as solved (issue 5's bar)
INTERVENTION_BAR = 0.15  # running-mean intervention rate that counts as "the human is rarely needed"


@dataclass
class RunLogs:
    """The files of one fine-tuning run, loaded."""

    name: str
    episodes: pd.DataFrame
    evals: pd.DataFrame
    updates: pd.DataFrame
    metrics: dict[str, Any]
    timing: dict[str, Any]


def load_run(run_dir: str | Path) -> RunLogs:
    """Load a run folder; a missing CSV is an error naming the file (the run did not finish)."""
    d = Path(run_dir)
    missing = [f for f in ("episodes.csv", "evals.csv", "updates.csv", "metrics.json") if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(f"{d}: not a finished fine-tuning run (missing {', '.join(missing)})")

    def csv(name: str) -> pd.DataFrame:
        try:
            return pd.read_csv(d / name)
        except pd.errors.EmptyDataError:  # a run with no rows of that kind (e.g. no updates yet)
            return pd.DataFrame()

    timing = json.loads((d / "timing.json").read_text()) if (d / "timing.json").exists() else {}
    return RunLogs(d.name, csv("episodes.csv"), csv("evals.csv"), csv("updates.csv"), json.loads((d / "metrics.json").read_text()), timing)


def running_mean(values: Sequence[float] | pd.Series, window: int = WINDOW) -> np.ndarray:
    """Trailing mean over up to `window` values (the first points average what exists so far)."""
    return pd.Series(np.asarray(values, dtype=float)).rolling(window, min_periods=1).mean().to_numpy()


def first_step_at_or_above(steps: Sequence[int], values: Sequence[float], bar: float) -> int | None:
    """The first step whose value is >= bar (None if never)."""
    for s, v in zip(steps, values, strict=True):
        if v >= bar:
            return int(s)
    return None


def first_step_below(steps: Sequence[int], values: Sequence[float], bar: float) -> int | None:
    """The first step whose value is < bar (None if never)."""
    for s, v in zip(steps, values, strict=True):
        if v < bar:
            return int(s)
    return None


def log_summary(episodes: pd.DataFrame, evals: pd.DataFrame) -> dict[str, Any]:
    """Key numbers of a run's logs. Shared by the fine-tuning stage (its metrics.json) and the reports (from the
    CSVs), so both say the same.

    The evaluation at env step 0 is what the start (scratch or the BC actor) is worth: it is reported alone
    (`*_start`) and left out of every learning metric (mean over the run, final, best, worst, the first step at
    the success bar), which cover the evaluations after fine-tuning began. Evaluations are the deterministic
    policy: alone (success, jitter) and, where logged, with the operator in the loop (`eval_intervention_rate_*`:
    how much help the policy itself needs). The training episodes' figures (`intervention_rate_*`, `success_*`,
    `jitter_last20`) include the exploration noise: the operator's workload during training."""
    ev, ep = evals, episodes
    out: dict[str, Any] = {}
    if len(ev):
        start = ev[ev.env_step == 0]
        learn = ev[ev.env_step > 0]
        if len(start):
            out["eval_success_start"] = float(start.success_rate.iloc[0])
        last = learn if len(learn) else ev
        out["eval_success_final"] = float(last.success_rate.iloc[-1])
        if len(learn):
            out["eval_success_best"] = float(learn.success_rate.max())
            out["eval_success_mean"] = float(learn.success_rate.mean())
            # the worst evaluation once fine-tuning began: how far a good (BC) start fell before online RL recovered it
            out["eval_success_min_after_start"] = float(learn.success_rate.min())
            out["eval_jitter_mean"] = float(learn.jitter.mean()) if "jitter" in learn else None
        out["step_eval_success_ge_bar"] = first_step_at_or_above(learn.env_step, learn.success_rate, SUCCESS_BAR)
        if "intervention_rate" in ev:
            if len(start):
                out["eval_intervention_rate_start"] = float(start.intervention_rate.iloc[0])
            out["eval_intervention_rate_final"] = float(last.intervention_rate.iloc[-1])
            if len(learn):
                out["eval_intervention_rate_mean"] = float(learn.intervention_rate.mean())
    if len(ep):
        out["intervention_rate_first20"] = float(ep.intervention_rate.iloc[:WINDOW].mean())
        out["intervention_rate_last20"] = float(ep.intervention_rate.iloc[-WINDOW:].mean())
        out["intervention_rate_mean"] = float(ep.intervention_rate.mean())
        # the running mean must have a full window before it counts as "fallen below"
        full = np.arange(len(ep)) >= WINDOW - 1
        rate = running_mean(ep.intervention_rate)
        out["step_intervention_lt_bar"] = first_step_below(ep.env_step[full], rate[full], INTERVENTION_BAR)
        out["success_first20"] = float(ep.success.iloc[:WINDOW].mean())
        out["success_last20"] = float(ep.success.iloc[-WINDOW:].mean())
        out["jitter_last20"] = float(ep.jitter.iloc[-WINDOW:].mean())
        out["episodes"] = len(ep)
    return out


def run_summary(run: RunLogs) -> dict[str, Any]:
    """One run's key numbers (`log_summary`), its name, length, evaluation curve and training time."""
    out: dict[str, Any] = {"run": run.name, "env_steps": run.metrics.get("env_steps")}
    out.update(log_summary(run.episodes, run.evals))
    if len(run.evals):
        out["eval_curve"] = {int(s): float(v) for s, v in zip(run.evals.env_step, run.evals.success_rate, strict=True)}
    out["train_time_s"] = run.timing.get("train_time_s")
    return out


def meets_bar(summary: dict[str, Any]) -> bool:
    """Issue 5's bar for one run: eval success >= 0.9 and the running intervention rate < 0.15 at some
    point within the run (each reached at its own first step)."""
    return summary.get("step_eval_success_ge_bar") is not None and summary.get("step_intervention_lt_bar") is not None


def iqm_ci(scores: Sequence[float], reps: int = 2000, seed: int = 0, size: float = 0.95) -> tuple[float, float, float]:
    """Interquartile mean over seeds with a `size` (95%) percentile-bootstrap confidence interval.

    The numbers of rliable's `get_interval_estimates(..., aggregate_iqm)` for one task (its stratified
    bootstrap resamples the runs, here the seeds, `reps` times from numpy's legacy RNG seeded with `seed`;
    the interval is arch's percentile interval), computed in one vectorized pass: rliable calls scipy's
    `trim_mean` once per resample, about 1 ms each, which made one devlog report take a minute.
    `tests/test_report.py` checks these numbers against rliable's own.

    With fewer than 4 seeds the IQM trims nothing (scipy's trim_mean cuts int(0.25 * n) = 0 values): it is
    then the plain mean, and the interval is wide, as it should be.
    """
    from scipy.stats import trim_mean

    x = np.asarray(scores, dtype=float).ravel()
    # rliable draws np.random.choice(n, (n, 1)) per resample from the global RNG; a RandomState of the same
    # seed gives the same stream without touching the caller's global state
    resamples = x[np.random.RandomState(seed).randint(0, len(x), size=(reps, len(x)))]
    boot = trim_mean(resamples, proportiontocut=0.25, axis=1)
    alpha = (1.0 - size) / 2
    lo, hi = np.percentile(boot, [100 * alpha, 100 * (1.0 - alpha)])  # arch's "percentile" method
    return float(trim_mean(x, proportiontocut=0.25, axis=None)), float(lo), float(hi)


def summarize(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run (see `run_summary`), in the given order; `eval_curve` left out."""
    rows = []
    for d in run_dirs:
        s = run_summary(load_run(d))
        s.pop("eval_curve", None)
        s["meets_bar"] = meets_bar(s)
        rows.append(s)
    return pd.DataFrame(rows)
