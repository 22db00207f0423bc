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
# # 20 · BC pretraining of the SAC actor
#
# Devlog 059's update, reproducible: lerobot's `GaussianActorPolicy` learns the demos by MSE between
# its deterministic action `tanh(mean)` and the demo action, on whole-episode train/validation splits.
# Only the actor's own parameters train (what SAC's actor optimizer updates); the critics do not exist
# yet and a shared observation encoder stays at its initialization, as in the devlog.
#
# Then the BC policy runs alone in the sim (deterministic actions, no operator) on seeded episodes
# it has never seen, and is saved in lerobot's format to `data/bc/policy/`, loaded back and checked
# tensor by tensor.
#
# Inputs: `data/demos/dataset`, params sections `env`, `policy`, `bc`.
# Outputs: `data/bc/policy/`, `data/bc/metrics.json`, `data/bc/live/` (dvclive loss curves),
# `data/bc/timing.json` (wall-clock, outside DVC's hashes: it differs run to run).

# %% tags=["parameters"]
env = None  # params.yaml section `env`
policy = None  # params.yaml section `policy`
bc = None  # params.yaml section `bc`
demos_dir = "data/demos/dataset"  # the demos (LeRobotDataset)
out_dir = "data/bc"  # where the policy, metrics and curves go

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from dvclive import Live

from hilstudy import params as P
from hilstudy.bc import train_bc
from hilstudy.io import write_json

os.chdir(P.project_root())
cfg = P.resolve(env=env, policy=policy, bc=bc)
out = Path(out_dir)
print(cfg.policy)
print(cfg.bc)

# %% [markdown]
# ## Train, validate, evaluate, save

# %%
with Live(dir=str(out / "live"), save_dvc_exp=False, dvcyaml=None) as live:
    metrics = train_bc(cfg, demos_dir, out, live=live)
history = metrics.pop("history")
write_json(out / "timing.json", metrics.pop("timing"))
write_json(out / "metrics.json", metrics)
pd.Series(metrics).to_frame("value")

# %% [markdown]
# ## Loss curves
# Train loss per step (light) and its 50-step mean; validation loss on the held-out episodes.

# %%
train = pd.Series(history["train_loss"], index=history["step"])
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(train.index, train.values, color="C0", alpha=0.25, lw=0.8)
ax.plot(train.index, train.rolling(50, min_periods=1).mean(), color="C0", label="train (50-step mean)")
ax.plot(history["val_step"], history["val_loss"], "o-", color="C1", ms=3, label="validation (held-out episodes)")
ax.set_yscale("log")
ax.set_xlabel("gradient step")
ax.set_ylabel("MSE(tanh(mean), demo action)")
ax.set_title(f"BC: val loss {metrics['initial_val_loss']:.3f} → {metrics['final_val_loss']:.3f}; "
             f"sim success {metrics.get('eval_success_rate', float('nan')):.0%}")
ax.legend()
fig.tight_layout()

# %% [markdown]
# As in the devlog's table: steps, epochs, final loss and samples are above; training time is in
# `data/bc/timing.json` (and `dvc metrics show`), kept out of this notebook so that it stays
# byte-identical from run to run.
