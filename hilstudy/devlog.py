"""Devlog experiments as evidence: each entry of params.yaml `devlogs` names the runs it compares and
the hypotheses it registered before running; this module gathers the runs' files and decides.

The verdict rule (the statistics are `hilstudy.stats`'s, whose error rates `tests/test_stats.py` measures):
- **The seed is the unit of replication.** A hypothesis pairs treatment runs with control runs (in order);
  per seed, its effect on a metric is the mean over its pairs of treatment minus control, signed so that
  positive means "as claimed" (a `lower` metric is negated). Pairs within a seed share its demos, BC actor
  and evaluation episodes, so they are averaged, never counted as more samples.
- **One-sided, exact**: the paired sign-flip (randomization) test of the mean per-seed effect at
  alpha = 1 - confidence, and the inverted test's 1 - alpha lower and upper bounds (a 1 - 2 alpha interval).
  Per metric the verdict is **supported** when p <= alpha (the lower bound is above 0); **not supported**
  when the effect is shown to be below the hypothesis' `margin` (the upper bound is below it: no effect that
  matters, or the opposite one); **inconclusive** otherwise. With fewer than `min_seeds_to_decide(alpha)`
  seeds (5 at 95%) no p-value can reach alpha, so every verdict is inconclusive, and the report says how
  many seeds would detect the margin at the observed seed-to-seed spread.
- A hypothesis claims all its metrics: it is supported when every metric (and every `stronger_than`
  contrast) is, not supported when any is, inconclusive otherwise; its p-value is the largest of its
  metrics' (an intersection-union test). Across the devlog's hypotheses, Holm's family-wise adjusted
  p-values are reported beside the per-hypothesis ones.
- `stronger_than`: per seed, the hypothesis' effect minus the other's on the same metric, each signed by its
  own claim, decided by the same test. `pending` hypotheses (waiting for a stage) are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hilstudy import stats
from hilstudy.params import DECIDING_METRICS, DevlogParams, HypothesisParams, StudyParams, run_stage
from hilstudy.report import RunLogs, iqm_ci, load_run, run_summary

FINETUNE_DIR = "data/finetune"


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


BOOTSTRAP_MIN_SEEDS = 10  # the per-run IQM and its bootstrap interval are shown from this many seeds (tests/test_stats.py)


def summary_table(
    sums: dict[str, dict[int, dict[str, Any]]],
    metrics: tuple[str, ...] = DECIDING_METRICS,
    confidence: float = 0.95,
    reps: int = 2000,
) -> pd.DataFrame:
    """One row per run: for each metric the mean over seeds, its spread (sd, min, max), and, from
    `BOOTSTRAP_MIN_SEEDS` seeds on, rliable's IQM with its stratified-bootstrap interval (NaN below: with a
    handful of seeds the IQM is the mean and a percentile bootstrap covers far less than it says); plus the
    number of seeds and how many reached the success bar. Descriptive: the verdicts rest on the paired tests."""
    rows = []
    for run, by_seed in sums.items():
        row: dict[str, Any] = {"run": run, "seeds": len(by_seed)}
        for m in metrics:
            x = np.array([float(s[m]) if s.get(m) is not None else np.nan for s in by_seed.values()])
            row[m] = float(np.mean(x))
            row[f"{m}_sd"] = float(np.std(x, ddof=1)) if len(x) > 1 else np.nan
            row[f"{m}_min"], row[f"{m}_max"] = float(np.min(x)), float(np.max(x))
            if len(x) >= BOOTSTRAP_MIN_SEEDS and np.all(np.isfinite(x)):
                row[f"{m}_iqm"], row[f"{m}_iqm_lo"], row[f"{m}_iqm_hi"] = iqm_ci(x, reps=reps, size=confidence)
            else:
                row[f"{m}_iqm"] = row[f"{m}_iqm_lo"] = row[f"{m}_iqm_hi"] = np.nan
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
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # metric -> stats.Decision fields, direction, pairs
    p: float | None = None  # the hypothesis' p-value: the largest of its metrics' (all must hold)
    p_familywise: float | None = None  # Holm-adjusted over the devlog's hypotheses
    alpha: float = 0.05  # the level each test is run at (1 - confidence)
    details: list[str] = field(default_factory=list)  # the reason, one line per metric or contrast

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "reason": self.reason, "p": self.p,
                "p_familywise": self.p_familywise, "alpha": self.alpha, "metrics": self.metrics}  # fmt: skip


def paired_differences(h: HypothesisParams, metric: str, sums: dict[str, dict[int, dict[str, Any]]]) -> np.ndarray:
    """treatment - control, (pairs x seeds), signed so that positive is what the claim predicts. The seeds are
    those every run of the hypothesis has, in order."""
    sign = 1.0 if h.metrics[metric] == "higher" else -1.0
    seeds = sorted(set.intersection(*(set(sums[r]) for r in (*h.treatment, *h.control))))
    rows = []
    for t, c in zip(h.treatment, h.control, strict=True):
        rows.append([sign * (_value(sums, t, seed, metric) - _value(sums, c, seed, metric)) for seed in seeds])
    return np.asarray(rows, dtype=float).reshape(len(h.treatment), len(seeds))


def _value(sums, run: str, seed: int, metric: str) -> float:
    v = sums[run][seed].get(metric)
    return float("nan") if v is None else float(v)


def per_seed_effects(h: HypothesisParams, metric: str, sums: dict[str, dict[int, dict[str, Any]]]) -> np.ndarray:
    """The hypothesis' signed effect per seed: the mean of its pairs' differences within the seed."""
    return paired_differences(h, metric, sums).mean(axis=0)


def _count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fmt(x: float) -> str:
    return "-inf" if x == -np.inf else "+inf" if x == np.inf else f"{x:+.3f}"


def _describe(name: str, x: dict[str, Any], alpha: float, margin: float) -> str:
    """One metric's (or contrast's) numbers and verdict, in words."""
    n, pairs = x["n"], x.get("pairs", 1)
    what = f"{name} ({x['direction']}{' claimed' if '_vs_' not in name else ''})"
    over = f"{_count(n, 'seed')}" + (f", {pairs} pairs averaged per seed" if pairs > 1 else "")
    text = (f"{what}: effect {_fmt(x['effect'])} over {over}, {round(100 * (1 - 2 * alpha))}% interval "
            f"[{_fmt(x['ci_lo'])}, {_fmt(x['ci_hi'])}], one-sided p = {x['p']:.3g} -> {x['verdict']}")  # fmt: skip
    if x["verdict"] == "inconclusive":
        n_min = stats.min_seeds_to_decide(alpha)
        if n < n_min:
            text += f" (the exact test needs at least {n_min} seeds to reach p <= {alpha:g})"
        need = x["seeds_needed"]
        if need is not None:
            text += f"; about {need} seeds would detect an effect of {margin:g} at this spread (sd {x['sd']:.3g}, power {stats.POWER:g})"
        elif n > 1 and margin > 0:
            text += f"; over 1000 seeds would be needed to detect an effect of {margin:g} at this spread (sd {x['sd']:.3g})"
    return text


def decide(
    hid: str,
    h: HypothesisParams,
    sums: dict[str, dict[int, dict[str, Any]]],
    confidence: float = 0.95,
    reps: int = 2000,
    others: dict[str, HypothesisParams] | None = None,
) -> Verdict:
    """The verdict on hypothesis `hid` (see the module docstring for the rule); `others`: the devlog's
    hypotheses, for `stronger_than`. `reps` is unused (kept for callers: the tests are exact)."""
    alpha = 1.0 - confidence
    if h.pending is not None:
        return Verdict(hid, h.claim, "pending", h.pending, alpha=alpha)
    per_metric: dict[str, dict[str, Any]] = {}
    for metric, direction in h.metrics.items():
        d = per_seed_effects(h, metric, sums)
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{hid}: {metric} is missing (NaN) in some runs; cannot decide")
        dec = stats.decide_effect(d, alpha, h.margin)
        per_metric[metric] = {"direction": direction, "pairs": len(h.treatment), **_decision_dict(dec)}
        for other in h.stronger_than:
            o = (others or {})[other]
            c = d - per_seed_effects(o, metric, sums)
            if not np.all(np.isfinite(c)):
                raise ValueError(f"{hid}: {metric} is missing (NaN) in some runs of {other}; cannot decide")
            dec = stats.decide_effect(c, alpha, h.margin)
            per_metric[f"{metric}_vs_{other}"] = {"direction": f"effect larger than {other}'s", "pairs": 1, **_decision_dict(dec)}
    verdicts = [m["verdict"] for m in per_metric.values()]
    if all(v == "supported" for v in verdicts):
        overall = "supported"
    elif any(v == "not supported" for v in verdicts):
        overall = "not supported"
    else:
        overall = "inconclusive"
    details = [_describe(m, x, alpha, h.margin) for m, x in per_metric.items()]
    p = max(m["p"] for m in per_metric.values())
    return Verdict(hid, h.claim, overall, "; ".join(details), per_metric, p=p, alpha=alpha, details=details)


def _decision_dict(dec: stats.Decision) -> dict[str, Any]:
    out = dec.as_dict()
    out["ci_lo"], out["ci_hi"] = out.pop("lo"), out.pop("hi")
    return out


def _finite(x: Any) -> Any:
    """For the JSON files: an infinite bound (too few seeds for any) or an unknown spread becomes null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return None if isinstance(x, float) and not np.isfinite(x) else x


def decide_all(entry: DevlogParams, sums: dict[str, dict[int, dict[str, Any]]]) -> list[Verdict]:
    """Every hypothesis' verdict, with Holm's family-wise p-values over the decided ones."""
    verdicts = [decide(hid, h, sums, entry.confidence, entry.bootstrap_reps, entry.hypotheses) for hid, h in entry.hypotheses.items()]
    adjusted = stats.holm({v.hypothesis: v.p for v in verdicts if v.p is not None})
    for v in verdicts:
        v.p_familywise = adjusted.get(v.hypothesis)
    return verdicts


def table_cell(row: dict[str, Any], metric: str) -> str:
    """One cell of the per-run table: 'mean [min, max]', plus 'IQM x [lo, hi]' where the table has it; 'n/a'
    for a metric these runs do not log (e.g. runs made before it existed)."""
    if not np.isfinite(row[metric]):
        return "n/a"
    text = f"{row[metric]:.2f} [{row[f'{metric}_min']:.2f}, {row[f'{metric}_max']:.2f}]"
    if np.isfinite(row.get(f"{metric}_iqm", np.nan)):
        text += f"; IQM {row[f'{metric}_iqm']:.2f} [{row[f'{metric}_iqm_lo']:.2f}, {row[f'{metric}_iqm_hi']:.2f}]"
    return text


def rule_text(entry: DevlogParams, seeds: int) -> str:
    """The verdict rule as the report states it, with this devlog's level and the seeds it has (Markdown)."""
    alpha = 1.0 - entry.confidence
    n_min = stats.min_seeds_to_decide(alpha)
    enough = (f"These runs have {_count(seeds, 'seed')}: "
              + ("enough for a verdict." if seeds >= n_min else f"too few for any verdict but *inconclusive* (at least {n_min} are needed)."))  # fmt: skip
    return (
        f"**How the verdicts are reached.** The seed is the unit of replication: per seed, a hypothesis' effect is the "
        f"mean over its treatment-control pairs of the difference (signed: positive as claimed). The test is the exact "
        f"one-sided paired sign-flip test of the mean effect at alpha = {alpha:.3g}, exact whatever the metric's "
        f"distribution; the interval is its inversion (one-sided {1 - alpha:.0%} bounds, a {1 - 2 * alpha:.0%} "
        f"interval). *Supported*: p <= alpha on every metric the hypothesis names; *not supported*: some metric's "
        f"effect shown below the hypothesis' margin; otherwise *inconclusive*, with the seeds that would detect the "
        f"margin at the observed spread. The smallest p an exact test over n seeds can give is 2^-n, so at least "
        f"{n_min} seeds are needed to support anything. Each hypothesis is tested at its own alpha; Holm's "
        f"family-wise p over the devlog's hypotheses is given beside it. {enough}"
    )


def verdict_lines(verdicts: list[Verdict]) -> str:
    """The verdicts as the report shows them (Markdown): one item per hypothesis with its p-values, and its
    metrics' reasons."""
    lines = []
    for v in verdicts:
        head = f"- **{v.hypothesis} — {v.verdict.upper()}**: {v.claim}."
        if v.p is not None:
            head += f" p = {v.p:.3g} (one-sided, at alpha {v.alpha:.3g}); family-wise (Holm) p = {v.p_familywise:.3g}."
        lines.append(head)
        lines.extend(f"  - {part}" for part in (v.details or [v.reason]))
    return "\n".join(lines)


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
    """The report's files, all deterministic: `summary.json` (numbers only: per run the mean over seeds of
    each metric, per hypothesis each metric's effect, interval, p-value and seeds, and the hypothesis'
    family-wise p; what `dvc metrics show` / `dvc exp show` list), `verdicts.json` (verdicts with their
    reasons), `table.csv` (per run: mean, spread, IQM where enough seeds), `curves/<name>.csv`."""
    from hilstudy.io import write_json

    out = Path(out_dir)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    runs = {
        row["run"]: _finite({m: float(row[m]) for m in DECIDING_METRICS}) | {"seeds_reaching_success_bar": int(row["seeds_reaching_success_bar"])}
        for row in report.table.to_dict("records")
    }
    hypotheses = {
        v.hypothesis: {m: _finite({k: x[k] for k in ("effect", "ci_lo", "ci_hi", "p", "n")}) for m, x in v.metrics.items()}
        | {"p": v.p, "p_familywise": v.p_familywise}
        for v in report.verdicts
        if v.metrics
    }
    write_json(out / "summary.json", {"runs": runs, "hypotheses": hypotheses})
    write_json(out / "verdicts.json", {v.hypothesis: _finite(v.as_dict()) for v in report.verdicts})
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
