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
# Only what SAC's actor optimizer would update trains; the critics are not built, and a shared
# observation encoder (`policy.shared_encoder: true`, lerobot's default) stays at its initialization,
# as in the devlog (lerobot trains a shared encoder with the critic loss only).
#
# Then the BC policy is saved in lerobot's format to `data/bc/s<seed>/policy/`, loaded back strictly and checked
# tensor by tensor, and that loaded policy runs alone in the sim (no operator) on seeded episodes it has
# never seen: with its deterministic action `tanh(mean)`, and with sampled actions, which is how
# lerobot's own actor (`select_action`) drives the robot. BC by MSE on the mean leaves the policy's
# std at its initialization, so the sampled actions are much noisier (higher jitter).
#
# Inputs: `data/demos/s<seed>/dataset`, params sections `env`, `policy`, `bc`.
# Outputs: `data/bc/s<seed>/policy/`, `data/bc/s<seed>/metrics.json`, `live/` (dvclive loss curves),
# `timing.json` (wall-clock, outside DVC's hashes: it differs run to run).

# %% tags=["parameters"]
env = None  # params.yaml section `env`
policy = None  # params.yaml section `policy`
bc = None  # params.yaml section `bc`
real = None  # params.yaml section `real` (the arm, when env.kind is real)
demos_dir = "data/demos/s0/dataset"  # the demos (LeRobotDataset)
out_dir = "data/bc/s0"  # where the policy, metrics and curves go
runs = None  # params.yaml section `runs` (replicate_inputs: whether each seed has inputs of its own)
input_seed = 0  # the seed these inputs are for (stage <name>@<seed>): with runs.replicate_inputs its own seeds

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd

from hilstudy import params as P
from hilstudy.bc import run_bc

os.chdir(P.project_root())
cfg = P.input_params(P.resolve(env=env, policy=policy, bc=bc, real=real, runs=runs), input_seed)
print(cfg.policy)
print(cfg.bc)

# %% [markdown]
# ## Train, validate, save, evaluate

# %%
metrics = run_bc(cfg, demos_dir, out_dir)
history = metrics.pop("history")
metrics.pop("timing")  # wall-clock: in timing.json only, so that this notebook is byte-identical run to run
table = pd.Series(
    {
        "steps": metrics["steps"],
        "epochs": round(metrics["epochs"], 1),
        "samples (train frames)": metrics["samples"],
        "train / val episodes": f"{metrics['train_episodes']} / {metrics['val_episodes']}",
        "final train loss": round(metrics["final_train_loss"], 5),
        "val loss: start -> final": f"{metrics['initial_val_loss']:.4f} -> {metrics['final_val_loss']:.4f}",
        "trainable / frozen parameters": f"{metrics['trainable_parameters']} / {metrics['frozen_parameters']}",
        "training time (s)": "see timing.json in the output folder",
        "eval success, tanh(mean) actions (no operator)": (
            f"{metrics['eval_success_rate']:.0%} of {metrics['eval_episodes']}, jitter {metrics['eval_jitter']:.3f}"
            if "eval_success_rate" in metrics else "skipped"
        ),
        "eval success, sampled actions (as lerobot's actor acts)": (
            f"{metrics['eval_sampled_success_rate']:.0%} of {metrics['eval_episodes']}, "
            f"jitter {metrics['eval_sampled_jitter']:.3f}" if "eval_sampled_success_rate" in metrics else "skipped"
        ),
    }
).to_frame("value")
table

# %% [markdown]
# ## Loss curves
# Train loss per step (light) and its 50-step mean; validation loss on the held-out episodes
# (step 0 is before training). The same curves are in `data/bc/s<seed>/live/` for `dvc plots show`.

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
# ## All metrics
# As in the devlog's table: steps, epochs, final losses and samples; plus the sim evaluation.
# Training time is in `timing.json` beside the policy (wall-clock: not hashed by DVC).

# %%
pd.Series(metrics).to_frame("value")
