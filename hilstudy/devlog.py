"""Devlog experiments as evidence: each entry of params.yaml `devlogs` names the runs it compares and
the hypotheses it registered before running; this module gathers the runs' files and decides.

A hypothesis pairs treatment runs with control runs (in order) and compares them seed by seed, so each
(pair, seed) gives one difference per metric, signed so that positive means "as claimed" (a `lower`
metric is negated). Over those differences: the interquartile mean and a bootstrap confidence interval
(rliable's stratified bootstrap). Per metric the verdict is
- **supported**: the whole interval is above 0 (the effect is there, in the claimed direction);
- **not supported**: the whole interval is below the hypothesis' `margin` (no effect that matters, or
  the opposite one), and it is not supported by the first rule;
- **inconclusive**: otherwise (the interval is too wide at this number of seeds), and always with fewer
  than `MIN_PAIRS` differences.
A hypothesis may also claim to matter more than others (`stronger_than`): per seed, its effect (the mean
of its paired differences) minus the other's effect on the same metric, each signed by its own claim; the
same rule decides that contrast. A hypothesis is supported when all its metrics and contrasts are, not
supported when any is, inconclusive otherwise; `pending` hypotheses (waiting for a stage that does not exist
yet) are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hilstudy.params import DECIDING_METRICS, DevlogParams, HypothesisParams, StudyParams, run_stage
from hilstudy.report import RunLogs, iqm_ci, load_run, run_summary

FINETUNE_DIR = "data/finetune"
MIN_PAIRS = 3  # fewer paired differences than this decide nothing (inconclusive, whatever the interval)


def run_dir(run: str, seed: int, finetune_dir: str | Path = FINETUNE_DIR) -> Path:
    """Where the stage of run `run`, seed `seed` writes (the same pattern as in dvc.yaml)."""
    return Path(finetune_dir) / f"{run}-s{seed}"


def devlog_entry(params: StudyParams, devlog_id: str) -> DevlogParams:
    if devlog_id not in params.devlogs:
        known = ", ".join(sorted(params.devlogs)) or "none"
        raise KeyError(f"no devlog '{devlog_id}' in params.yaml (devlogs: {known})")
    return params.devlogs[devlog_id]


def load_runs(params: StudyParams, devlog_id: str, finetune_dir: str | Path = FINETUNE_DIR) -> dict[str, dict[int, RunLogs]]:
    """{run: {seed: RunLogs}} for every run of the devlog and every seed; a missing run folder is an error
    naming the stage that makes it."""
    entry = devlog_entry(params, devlog_id)
    out: dict[str, dict[int, RunLogs]] = {}
    missing = []
    for run in entry.runs:
        out[run] = {}
        for seed in params.runs.seeds:
            d = run_dir(run, seed, finetune_dir)
            try:
                out[run][seed] = load_run(d)
            except FileNotFoundError:
                missing.append(f"{d} (stage {run_stage(params, run, seed)})")
    if missing:
        raise FileNotFoundError(f"devlog {devlog_id}: runs not finished: {', '.join(missing)}; run `dvc repro` first")
    return out


def summaries(runs: dict[str, dict[int, RunLogs]]) -> dict[str, dict[int, dict[str, Any]]]:
    """{run: {seed: run_summary}}."""
    return {run: {seed: run_summary(logs) for seed, logs in by_seed.items()} for run, by_seed in runs.items()}


def summary_table(
    sums: dict[str, dict[int, dict[str, Any]]],
    metrics: tuple[str, ...] = DECIDING_METRICS,
    confidence: float = 0.95,
    reps: int = 2000,
) -> pd.DataFrame:
    """One row per run: for each metric the IQM over seeds and its bootstrap CI, plus seeds and mean time."""
    rows = []
    for run, by_seed in sums.items():
        row: dict[str, Any] = {"run": run, "seeds": len(by_seed)}
        for m in metrics:
            point, lo, hi = iqm_ci([s[m] for s in by_seed.values()], reps=reps, size=confidence)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = point, lo, hi
        reached = [s.get("step_eval_success_ge_bar") for s in by_seed.values()]
        row["seeds_reaching_success_bar"] = sum(r is not None for r in reached)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Verdict:
    """The decision on one hypothesis, with the numbers behind it."""

    hypothesis: str
    claim: str
    verdict: str  # supported | not supported | inconclusive | pending
    reason: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> effect, lo, hi, n, direction, verdict

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "reason": self.reason, "metrics": self.metrics}


def paired_differences(h: HypothesisParams, metric: str, sums: dict[str, dict[int, dict[str, Any]]]) -> np.ndarray:
    """treatment - control per (pair, seed), signed so that positive is what the claim predicts."""
    sign = 1.0 if h.metrics[metric] == "higher" else -1.0
    diffs = []
    for t, c in zip(h.treatment, h.control, strict=True):
        for seed in sorted(sums[t]):
            diffs.append(sign * (float(sums[t][seed][metric]) - float(sums[c][seed][metric])))
    return np.asarray(diffs)


def per_seed_effects(h: HypothesisParams, metric: str, sums: dict[str, dict[int, dict[str, Any]]]) -> np.ndarray:
    """The hypothesis' signed effect per seed (the mean of its pairs' differences), in seed order."""
    d = paired_differences(h, metric, sums)
    return d.reshape(len(h.treatment), -1).mean(axis=0)


def _interval_verdict(d: np.ndarray, lo: float, hi: float, margin: float) -> str:
    if d.size < MIN_PAIRS:
        return "inconclusive"  # a bootstrap over one or two differences is no interval at all
    if lo > 0:
        return "supported"
    if hi < margin:
        return "not supported"
    return "inconclusive"


def _count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def decide(
    hid: str,
    h: HypothesisParams,
    sums: dict[str, dict[int, dict[str, Any]]],
    confidence: float = 0.95,
    reps: int = 2000,
    others: dict[str, HypothesisParams] | None = None,
) -> Verdict:
    """The verdict on hypothesis `hid` (see the module docstring for the rule); `others`: the devlog's
    hypotheses, for `stronger_than`."""
    if h.pending is not None:
        return Verdict(hid, h.claim, "pending", h.pending)
    per_metric: dict[str, dict[str, Any]] = {}
    for metric, direction in h.metrics.items():
        d = paired_differences(h, metric, sums)
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{hid}: {metric} is missing (NaN) in some runs; cannot decide")
        point, lo, hi = iqm_ci(d, reps=reps, size=confidence)
        v = _interval_verdict(d, lo, hi, h.margin)
        per_metric[metric] = {"direction": direction, "effect_iqm": point, "ci_lo": lo, "ci_hi": hi, "n": int(d.size), "verdict": v}
        for other in h.stronger_than:
            o = (others or {})[other]
            c = per_seed_effects(h, metric, sums) - per_seed_effects(o, metric, sums)
            if not np.all(np.isfinite(c)):
                raise ValueError(f"{hid}: {metric} is missing (NaN) in some runs of {other}; cannot decide")
            point, lo, hi = iqm_ci(c, reps=reps, size=confidence)
            per_metric[f"{metric}_vs_{other}"] = {
                "direction": f"effect larger than {other}'s", "effect_iqm": point, "ci_lo": lo, "ci_hi": hi,
                "n": int(c.size), "verdict": _interval_verdict(c, lo, hi, h.margin),
            }
    verdicts = [m["verdict"] for m in per_metric.values()]
    if all(v == "supported" for v in verdicts):
        overall = "supported"
    elif any(v == "not supported" for v in verdicts):
        overall = "not supported"
    else:
        overall = "inconclusive"
    pct = round(confidence * 100)
    parts = [
        f"{m} ({x['direction']} claimed): effect {x['effect_iqm']:+.3f}, {pct}% CI [{x['ci_lo']:+.3f}, {x['ci_hi']:+.3f}] "
        f"over {_count(x['n'], 'seed-paired difference' if '_vs_' not in m else 'seed')}"
        f"{'' if '_vs_' not in m else ' (contrast of the two effects)'} -> {x['verdict']}"
        + (f" (fewer than {MIN_PAIRS} differences decide nothing)" if x["n"] < MIN_PAIRS else "")
        for m, x in per_metric.items()
    ]
    return Verdict(hid, h.claim, overall, "; ".join(parts), per_metric)


def decide_all(entry: DevlogParams, sums: dict[str, dict[int, dict[str, Any]]]) -> list[Verdict]:
    return [decide(hid, h, sums, entry.confidence, entry.bootstrap_reps, entry.hypotheses) for hid, h in entry.hypotheses.items()]


@dataclass
class Report:
    """Everything a devlog's report shows, computed from the files under `data/`."""

    devlog_id: str
    entry: DevlogParams
    runs: dict[str, dict[int, RunLogs]]
    sums: dict[str, dict[int, dict[str, Any]]]
    table: pd.DataFrame
    verdicts: list[Verdict]
    curves: dict[str, pd.DataFrame]


def build_report(params: StudyParams, devlog_id: str, finetune_dir: str | Path = FINETUNE_DIR) -> Report:
    """Load the devlog's runs, summarize each over seeds, decide every hypothesis, and build the curves."""
    from hilstudy.plots import CURVES, curves, env_step_grid

    entry = devlog_entry(params, devlog_id)
    runs = load_runs(params, devlog_id, finetune_dir)
    sums = summaries(runs)
    table = summary_table(sums, confidence=entry.confidence, reps=entry.bootstrap_reps)
    verdicts = decide_all(entry, sums)
    grid = env_step_grid(runs)
    return Report(devlog_id, entry, runs, sums, table, verdicts, {name: curves(runs, name, grid) for name in CURVES})


def write_report(report: Report, out_dir: str | Path) -> None:
    """The report's files, all deterministic: `summary.json` (numbers only: per run the IQM over seeds of
    each metric, per hypothesis each metric's effect and CI; what `dvc metrics show` / `dvc exp show`
    list), `verdicts.json` (verdicts with their reasons), `table.csv` (with the CIs), `curves/<name>.csv`."""
    from hilstudy.io import write_json

    out = Path(out_dir)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    runs = {
        row["run"]: {m: float(row[m]) for m in DECIDING_METRICS} | {"seeds_reaching_success_bar": int(row["seeds_reaching_success_bar"])}
        for row in report.table.to_dict("records")
    }
    hypotheses = {
        v.hypothesis: {m: {k: x[k] for k in ("effect_iqm", "ci_lo", "ci_hi")} for m, x in v.metrics.items()}
        for v in report.verdicts
        if v.metrics
    }
    write_json(out / "summary.json", {"runs": runs, "hypotheses": hypotheses})
    write_json(out / "verdicts.json", {v.hypothesis: v.as_dict() for v in report.verdicts})
    report.table.to_csv(out / "table.csv", index=False, float_format="%.6g")
    for name, df in report.curves.items():
        df.to_csv(out / "curves" / f"{name}.csv", index=False, float_format="%.6g")


def write_timing(report: Report, out_dir: str | Path) -> dict[str, Any]:
    """Wall-clock of the devlog's runs (from each run's timing.json) to `<out>/timing.json`, which is not a
    DVC output: it differs from run to run. Returns it."""
    from hilstudy.io import write_json

    per_run = {
        f"{run}-s{seed}": logs.timing.get("train_time_s") for run, by_seed in report.runs.items() for seed, logs in by_seed.items()
    }
    known = [t for t in per_run.values() if t is not None]
    timing = {"runs_train_time_s": per_run, "total_train_time_s": float(sum(known)), "runs_without_timing": len(per_run) - len(known)}
    write_json(Path(out_dir) / "timing.json", timing)
    return timing
