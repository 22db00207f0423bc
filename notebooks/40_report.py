# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (hilstudy)
#     language: python
#     name: hilstudy
# ---

# %% [markdown]
# # 40 · Devlog report: hypotheses, curves, and a verdict
#
# One report per devlog entry of `params.yaml` (`devlogs.<id>`): the hypotheses it registered before
# running, the BC pretraining curve, the fine-tuning losses, intervention-rate, success and jitter curves
# of every run (mean over seeds, min..max band), a table per run (mean over seeds and its range; rliable's
# IQM with its bootstrap interval from 10 seeds on), and a verdict per hypothesis from the per-seed paired
# effects: an exact one-sided sign-flip test, its inverted interval, Holm's family-wise p-values (rule:
# `hilstudy/devlog.py`, error rates measured in `tests/test_stats.py`).
#
# Inputs: `data/finetune/<run>-s<seed>/` for the devlog's runs and `runs.seeds`, `data/bc/s<seed>/live/`.
# Outputs (under `out_dir`): `summary.json` (DVC metrics), `verdicts.json`, `table.csv`, `curves/*.csv`,
# `figures/*.png` (DVC plots: the figures of this notebook); `timing.json` (wall-clock, not hashed).

# %% tags=["parameters"]
runs = None  # params.yaml section `runs` (run names and seeds)
devlogs = None  # params.yaml section `devlogs`
devlog = "059"  # which devlog this report is for
finetune_dir = "data/finetune"  # where the fine-tuning runs are
bc_dir = "data/bc"  # the BC stages' folders (s<seed>/live: their dvclive curves)
out_dir = "data/devlog-059"  # this devlog's folder

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from hilstudy import params as P
from hilstudy.devlog import build_report, write_report, write_timing
from hilstudy.plots import LOSS_CURVES, bc_loss_table, plot_curve, save_figure

os.chdir(P.project_root())
cfg = P.resolve(runs=runs, devlogs=devlogs)
report = build_report(cfg, devlog, finetune_dir)
entry = report.entry
out = Path(out_dir)
figures = out / "figures"
write_report(report, out)
write_timing(report, out)  # wall-clock: a file only, so this notebook stays byte-identical run to run

lines = [f"## Devlog {devlog}: {entry.title}", "", f"Runs: {', '.join(entry.runs)}; seeds {cfg.runs.seeds}.", "", "Hypotheses (registered before running):"]
for hid, h in entry.hypotheses.items():
    if h.pending:
        lines.append(f"- **{hid}**: {h.claim} — *pending: {h.pending}*")
    else:
        metrics = ", ".join(f"{m} ({d})" for m, d in h.metrics.items())
        stronger = f" Its effect is claimed to exceed that of {', '.join(h.stronger_than)}." if h.stronger_than else ""
        lines.append(f"- **{hid}**: {h.claim}. Treatment {h.treatment} vs control {h.control}, on {metrics}.{stronger}")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## BC pretraining loss
# One BC actor per seed (`runs.replicate_inputs`: each on the seed's own demos), or one shared by all seeds.

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for seed in cfg.runs.seeds:
    bc_table = bc_loss_table(Path(bc_dir) / f"s{seed}" / "live")
    (line,) = ax.plot(bc_table.step, bc_table.train_loss, label=f"seed {seed}: train", alpha=0.6)
    val = bc_table.dropna(subset=["val_loss"])
    ax.plot(val.step, val.val_loss, "o-", color=line.get_color(), label=f"seed {seed}: validation (held-out episodes)", ms=3)
ax.set_yscale("log")
ax.set_xlabel("BC step")
ax.set_ylabel("MSE(tanh(mean), demo action)")
ax.legend(fontsize=7)
fig.tight_layout()
save_figure(fig, figures / "bc_loss.png")

# %% [markdown]
# ## Intervention rate and success during fine-tuning
# Training intervention rate: intervened steps / episode steps, running mean over 20 training episodes
# (HIL-SERL's figure: the operator's workload, exploration included). Evaluation: the deterministic policy on
# the seed's evaluation episodes, the same every time: alone (success) and with the operator in the loop (the
# help the policy itself needs); step 0 is the start. Lines: mean over seeds; bands: min..max over seeds.

# %%
fig, axes = plt.subplots(1, 4, figsize=(21, 3.8))
for ax, name in zip(axes, ["intervention_rate", "eval_intervention_rate", "eval_success", "episode_success"]):
    plot_curve(ax, report.curves[name], name)
    ax.set_ylim(-0.03, 1.03)
axes[0].axhline(0.15, color="grey", lw=0.8, ls="--")
axes[2].axhline(0.9, color="grey", lw=0.8, ls="--")
axes[0].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, figures / "interventions_success.png")

# %% [markdown]
# ## Action jitter (devlog 059's "shaking")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
plot_curve(ax, report.curves["jitter"], "jitter")
ax.legend(fontsize=8)
fig.tight_layout()
save_figure(fig, figures / "jitter.png")

# %% [markdown]
# ## Fine-tuning losses (means over `log_every` updates; BC loss only where a run has `bc_weight > 0`; temperature for SAC runs, noise std for DrQ-v2 runs)

# %%
fig, axes = plt.subplots(2, 4, figsize=(20, 6.5))
for ax, name in zip(axes.flat, LOSS_CURVES):
    plot_curve(ax, report.curves[name], name, band=False)
for ax in axes.flat[len(LOSS_CURVES) :]:
    ax.set_visible(False)
axes.flat[0].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, figures / "losses.png")

# %% [markdown]
# ## Per run: mean over seeds [min, max]
# `eval_success_start`: the start's worth (step 0); the other `eval_*` figures: the deterministic policy after
# fine-tuning began (alone; `eval_intervention_rate_mean` with the operator in the loop); `intervention_rate_mean`:
# the operator's workload in the training episodes (exploration included). Descriptive. rliable's interquartile mean and its 95% stratified-bootstrap interval are added from 10 seeds
# on: below that the IQM is (nearly) the mean and the bootstrap interval covers less than it claims.

# %%
from hilstudy.devlog import table_cell

table = report.table.copy()
shown = {}
for m in ["eval_success_start", "eval_success_mean", "eval_success_final", "eval_intervention_rate_mean",
          "eval_jitter_mean", "intervention_rate_mean"]:
    shown[m] = [table_cell(row, m) for row in table.to_dict("records")]
shown["seeds ≥ 90% eval success"] = [f"{n}/{s}" for n, s in zip(table.seeds_reaching_success_bar, table.seeds)]
display(table[["run"]].assign(**shown).set_index("run"))

# %% [markdown]
# ## Verdicts
# Per hypothesis and metric: the mean per-seed effect (positive = as claimed), its 90% interval (the exact
# sign-flip test's one-sided 95% bounds), the one-sided p-value, the number of seeds, and the verdict; the
# hypothesis' p is the largest of its metrics' (it claims them all), and Holm's adjustment over the devlog's
# hypotheses gives the family-wise p.

# %%
from hilstudy.devlog import rule_text, verdict_lines

display(Markdown(rule_text(entry, len(cfg.runs.seeds)) + "\n\n" + verdict_lines(report.verdicts)))
