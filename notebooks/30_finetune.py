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
# # 30 · HIL fine-tuning: SAC with a simulated operator, with and without a BC loss
#
# One run × seed of the study (params.yaml `runs`: `finetune` plus the run's overrides and init).
# lerobot's SAC (through the registered `sac_bc` algorithm, which is plain SAC at `bc_weight: 0`)
# learns online while the simulated operator takes over by its rule; the demos and every intervention feed the offline buffer, mixed 50/50 with
# the online buffer in each batch. A takeover ends the policy's attempt (its last transition is stored
# as terminal with reward 0).
#
# Measured: success of the deterministic policy alone (no operator) every `eval_every` env steps,
# starting at step 0 — a BC start that online SAC unlearns shows here; per episode the intervention
# rate, success and action jitter; per update the critic, actor, temperature (SAC) or noise std (DrQ-v2) and BC losses.
#
# Reward (`finetune.reward`): `terminal`, the sim's own success check (1 on the step the cube is lifted, which
# ends the episode: a per-step check, as a perfect classifier would give); `episode_end`, devlog 059's
# terminal-only signal (the episode runs to its time limit and only its last step is rewarded, 1 if the cube
# is up then); or, for runs under `runs.classifier_from_*`, `classifier`, the classifier stage's verdict on
# every step, which also ends the episode when it says success (lerobot's classifier processor step) and is
# then the only judge: the sim's own success check does not end the episode, as nothing would on a real arm;
# each episode also counts the steps where the classifier disagreed with the sim's truth.
#
# Inputs: demos, BC policy (init `bc`), classifier (reward `classifier`), params `env`, `operator`, `policy`, `finetune`.
# Outputs (under `out_dir`): `metrics.json`, `episodes.csv`, `evals.csv`, `updates.csv`, `live/`,
# `policy/` (final actor, lerobot format), `checkpoint/` (resume point), `timing.json`; progress lines go to
# `progress.log` (`tail -f` it during a run).

# %% tags=["parameters"]
env = None  # params.yaml section `env`
operator = None  # params.yaml section `operator`
policy = None  # params.yaml section `policy`
finetune = None  # params.yaml section `finetune` (the stage sets seed)
runs = None  # params.yaml section `runs`: this run's overrides of `finetune` and its init
real = None  # params.yaml section `real` (the arm, when env.kind is real)
run = "bcinit"  # the run (a name under runs.from_scratch, runs.from_bc, runs.classifier_from_*)
demos_dir = "data/demos/s0/dataset"  # the demos (LeRobotDataset)
bc_dir = "data/bc/s0/policy"  # the BC policy (used when finetune.init is bc)
classifier_dir = "data/classifier/s0/model"  # the reward classifier (used when finetune.reward is classifier)
out_dir = "data/finetune/bcinit-s0"  # this run's folder

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from hilstudy import params as P
from hilstudy.finetune import finetune as run_finetune
from hilstudy.io import write_json

os.chdir(P.project_root())
cfg = P.run_params(P.resolve(env=env, operator=operator, policy=policy, finetune=finetune, runs=runs, real=real), run)
out = Path(out_dir)
print(cfg.finetune)

# %%
summary, result = run_finetune(
    cfg, demos_dir, out,
    bc_dir=bc_dir if cfg.finetune.init == "bc" else None,
    classifier_dir=classifier_dir if cfg.finetune.reward == "classifier" else None,
)
# run-dependent facts (wall-clock, whether it resumed) go to timing.json, which is not a DVC output
resumed = summary.pop("resumed")
write_json(out / "timing.json", {"train_time_s": result.train_time, "env_steps_per_s": result.env_step / max(result.train_time, 1e-9), "resumed": resumed})
write_json(out / "metrics.json", summary)
episodes = pd.DataFrame(result.logs["episodes"])
evals = pd.DataFrame(result.logs["evals"])
updates = pd.DataFrame(result.logs["updates"])
for name, df in [("episodes", episodes), ("evals", evals), ("updates", updates)]:
    df.to_csv(out / f"{name}.csv", index=False, float_format="%.6g")
pd.Series(summary).to_frame("value")

# %% [markdown]
# ## Success and interventions vs environment steps
# Evaluation: deterministic actions, no operator, the same seeded episodes each time.
# Intervention rate: intervened steps / episode steps, running mean over 20 episodes (as in HIL-SERL).

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 3.6))
axes[0].plot(evals.env_step, evals.success_rate, "o-")
axes[0].set_ylim(-0.05, 1.05)
axes[0].set_title("evaluation success (policy alone)")
axes[1].plot(episodes.env_step, episodes.intervention_rate.rolling(20, min_periods=1).mean(), label="intervention rate")
axes[1].plot(episodes.env_step, episodes.success.rolling(20, min_periods=1).mean(), label="episode success (with operator)")
axes[1].set_ylim(-0.05, 1.05)
axes[1].legend(fontsize=8)
axes[1].set_title("training episodes (20-episode running mean)")
axes[2].plot(episodes.env_step, episodes.jitter.rolling(20, min_periods=1).mean())
axes[2].set_title("action jitter mean|a_t - a_t-1| (20-episode mean)")
for ax in axes:
    ax.set_xlabel("env step")
fig.tight_layout()

# %% [markdown]
# ## Losses per update (means over `log_every` updates)

# %%
cols = [c for c in ["loss_critic", "loss_actor", "loss_bc", "loss_temperature", "temperature", "mean_q", "stddev"] if c in updates]
if len(updates):
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3))
    for ax, c in zip(axes, cols):
        ax.plot(updates.env_step, updates[c])
        ax.set_title(c)
        ax.set_xlabel("env step")
    fig.tight_layout()

# %% [markdown]
# ## Classifier reward vs the sim's truth (reward `classifier` only)
# Per training episode: steps where the classifier said success and the sim did not (false positives: an
# episode ended early and was rewarded), and the reverse (false negatives: a success went unrewarded).

# %%
if "reward_disagreements" in episodes:
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(episodes.env_step, episodes.reward_false_pos.rolling(20, min_periods=1).mean(), label="false positives / episode")
    ax.plot(episodes.env_step, episodes.reward_false_neg.rolling(20, min_periods=1).mean(), label="false negatives / episode")
    ax.set_xlabel("env step")
    ax.set_title(f"classifier vs sim: disagreement on {summary['reward_disagreement_rate']:.2%} of steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
else:
    print("reward: terminal (the sim's own success check)")
