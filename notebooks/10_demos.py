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
# # 10 · Demonstrations
#
# The operator drives every step of every episode and the episodes are written as a
# **LeRobotDataset** (lerobot 0.6.1 format) that lerobot's own loader and replay buffer read.
# In the sim the operator is a scripted expert with seeded action noise; on the real arm it is a
# person with a teleoperator. Every action it takes is flagged `is_intervention = 1`: in HIL-SERL,
# demonstrations and interventions are the same kind of data (human-chosen actions).
#
# Inputs: the `env`, `operator`, `demos` (and, for the real arm, `real`) sections of `params.yaml`.
# Outputs: `data/demos/s<seed>/dataset/` (the dataset), `metrics.json`, `episodes.json`.

# %% tags=["parameters"]
env = None  # params.yaml section `env` (None: read params.yaml)
operator = None  # params.yaml section `operator`
demos = None  # params.yaml section `demos`
real = None  # params.yaml section `real` (the arm, when env.kind is real)
out_dir = "data/demos/s0"  # where the dataset, metrics and episode table go
runs = None  # params.yaml section `runs` (replicate_inputs: whether each seed has inputs of its own)
input_seed = 0  # the seed these inputs are for (stage <name>@<seed>): with runs.replicate_inputs its own seeds

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from hilstudy import params as P
from hilstudy.demos import load_demos, record_demos
from hilstudy.io import write_json

os.chdir(P.project_root())  # paths are relative to the project root, also when opened from notebooks/
cfg = P.input_params(P.resolve(env=env, operator=operator, demos=demos, real=real, runs=runs), input_seed)
out = Path(out_dir)
print(cfg.env)
print(cfg.operator)
print(cfg.demos)

# %% [markdown]
# ## Record

# %%
recording = record_demos(cfg, out / "dataset", progress=False)
summary = recording.summary()
write_json(out / "metrics.json", summary)
write_json(out / "episodes.json", {"kept": recording.episodes, "discarded": recording.discarded})
summary

# %% [markdown]
# ## Read it back with lerobot
# The dataset is opened with lerobot's own `LeRobotDataset(repo_id, root=...)`.

# %%
ds = load_demos(out / "dataset")
frames = ds.hf_dataset.with_format("numpy")
state = np.stack(frames["observation.state"])
action = np.stack(frames["action"])
episode = np.asarray(frames["episode_index"])
names = ds.meta.features["observation.state"]["names"]
print(f"{ds.num_episodes} episodes, {ds.num_frames} frames, features: {sorted(ds.meta.features)}")
print(f"actions in [{action.min():.3f}, {action.max():.3f}]; "
      f"interventions flagged on {np.mean(frames['complementary_info.is_intervention']):.0%} of frames")

# %% [markdown]
# ## A few trajectories
# End-effector (tcp) position and gripper over time for the first episodes; the dashed line is
# the cube, in the same normalized units as the policy sees them.

# %%
def col(name):
    return names.index(name)


shown = sorted(set(episode))[:4]
fig, axes = plt.subplots(1, 4, figsize=(16, 3.2), sharex=True)
for ep in shown:
    m = episode == ep
    for ax, key in zip(axes, ["tcp_x", "tcp_y", "tcp_z", "gripper"]):
        (line,) = ax.plot(state[m, col(key)], label=f"episode {ep}")
        cube_key = key.replace("tcp", "cube")
        if key.startswith("tcp") and cube_key in names:
            ax.axhline(state[m, col(cube_key)][0], ls="--", color=line.get_color(), lw=0.8)
for ax, key in zip(axes, ["tcp x", "tcp y", "tcp z", "gripper command"]):
    ax.set_title(key)
    ax.set_xlabel("step")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
lengths = [e["length"] for e in recording.episodes]
ax.hist(lengths, bins=range(int(min(lengths)), int(max(lengths)) + 2))
ax.set_xlabel("episode length (steps)")
ax.set_ylabel("episodes")
ax.set_title(f"{summary['episodes']} demos, success {summary['success_rate']:.0%}")
fig.tight_layout()
