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
# # 90 · Speed against the stock stack
#
# Not a pipeline stage (wall-clock is not reproducible): run it by hand, or
# `hilstudy run notebooks/90_speed.py -o speed.ipynb`. The measurements are `hilstudy.bench`'s, the same as
# `make bench` prints. What is compared, side by side in this one process:
# - the env step with state observations: stock gym-hil vs `env.fast_sim` (its controller compiled), and
#   whether their trajectories are equal (bit for bit, over seeded contact-rich episodes);
# - the env step with camera images: stock rendering vs `env.lean_render`, with a frame of each;
# - a fine-tuning run's env steps/s with stock and with compiled sim, and that both give the same results;
# - the learner update: lerobot's stock SAC vs hilstudy's `sac_bc`, on the same batch.

# %% tags=["parameters"]
sim_steps = 1000  # env steps per state-obs rate measurement
equivalence_episodes = 20  # seeded 100-step episodes compared between stock and compiled sim
pixel_steps = 40  # env steps per pixel-obs rate measurement
finetune_steps = 1000  # env steps of each fine-tuning measurement (0: skip)
learner_updates = 100  # updates per learner measurement

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd

from hilstudy import bench
from hilstudy import params as P

os.chdir(P.project_root())

# %% [markdown]
# ## Sim: state observations

# %%
sim = bench.sim_rates(sim_steps, equivalence_episodes)
pd.Series(sim)

# %% [markdown]
# ## Sim: camera images, and a frame from each renderer (top: stock gym-hil, bottom: lean; front | wrist)

# %%
pix = bench.pixel_rates(pixel_steps)
plt.figure(figsize=(6, 6))
plt.imshow(pix["frames"])
plt.axis("off")
plt.title(f"stock (top) vs lean (bottom): {pix['ratio']:.1f}x the step rate")
plt.show()
pd.Series({k: v for k, v in pix.items() if k != "frames"})

# %% [markdown]
# ## Fine-tuning end to end, and the learner update

# %%
rows = {"sim, state obs (steps/s)": (sim["stock_steps_per_s"], sim["fast_steps_per_s"]),
        "sim, pixel obs (steps/s)": (pix["stock_steps_per_s"], pix["lean_steps_per_s"])}  # fmt: skip
if finetune_steps:
    ft = bench.finetune_rates(finetune_steps)
    rows["fine-tuning (env steps/s)"] = (ft["stock_steps_per_s"], ft["fast_steps_per_s"])
    print("fine-tuning env steps/s per setup:", {k: round(v, 1) for k, v in ft["steps_per_s"].items()})
    print("fine-tuning results equal with stock sim, compiled sim and overlapped updates:", ft["same_results"])
learner = bench.learner_rates(learner_updates)
rows["SAC update (updates/s): stock SAC vs sac_bc w=0.5"] = (learner["rates"]["stock SAC"], learner["rates"]["sac_bc w=0.5"])
print("sac_bc at bc_weight 0 computes stock SAC's losses:", learner["w0_equals_stock"])
table = pd.DataFrame(rows, index=["stock", "hilstudy"]).T
table["ratio"] = table["hilstudy"] / table["stock"]
table.round(2)

# %%
print(f"peak resident memory of this kernel: {bench.peak_rss_mib():.0f} MiB")
