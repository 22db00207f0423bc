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
# # 15 · Reward classifier: a success verdict on every frame
#
# Devlog 059's "actual solution #1": HIL-SERL rewards every step with a classifier's verdict (success 1,
# else 0) and ends the episode on success. This stage records labelled frames in the sim, trains the
# classifier, and measures it on whole episodes it never saw.
#
# Frames: the scripted operator picks the cube, keeps it up for `hold_steps` steps (positives), and in a
# `drop_fraction` of the episodes then lets it fall (negatives right after positives). The label is the
# sim's own success check after each step (the cube 10 cm above its start). On the real arm (`env.kind: real`,
# run by `hilstudy record classifier`) a person labels: a press of the success key starts the positive frames,
# the next press ends them, the stop key ends the episode.
#
# Model (`classifier.input`): `state` — an MLP on `observation.state`, registered in lerobot's reward-model
# registry as `hilstudy_state_classifier`; the default, because the default study observes state and
# a pixel-obs env step costs ~15 ms here with `env.lean_render` and `env.render_mesh_faces` (~310 ms with stock rendering). `images` — lerobot's own CNN classifier on the front and
# wrist cameras (`hilstudy_image_classifier`), with a from-scratch ResNet backbone that needs no download.
# Either way the input normalization is part of the saved classifier and the same code path serves training
# and fine-tuning.
#
# Inputs: params sections `env`, `operator`, `demos` (task string), `classifier` (and, for the real arm, `real`).
# Outputs: `data/classifier/s<seed>/frames/` (LeRobotDataset), `model/` (lerobot format + `classifier.json` with the
# threshold), `live/` (loss curve), `metrics.json`, `predictions.json` (held-out confusion matrix for
# `dvc plots`), `timing.json`.

# %% tags=["parameters"]
env = None  # params.yaml section `env`
operator = None  # params.yaml section `operator` (the expert that records the frames)
demos = None  # params.yaml section `demos` (task string)
classifier = None  # params.yaml section `classifier`
real = None  # params.yaml section `real` (the arm, when env.kind is real)
out_dir = "data/classifier/s0"  # where frames, model and metrics go
runs = None  # params.yaml section `runs` (replicate_inputs: whether each seed has inputs of its own)
input_seed = 0  # the seed these inputs are for (stage <name>@<seed>): with runs.replicate_inputs its own seeds

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hilstudy import params as P
from hilstudy.reward import run_classifier

os.chdir(P.project_root())
cfg = P.input_params(P.resolve(env=env, operator=operator, demos=demos, classifier=classifier, real=real, runs=runs), input_seed)
print(cfg.classifier)

# %% [markdown]
# ## Record labelled frames, train, save, reload, measure on held-out episodes

# %%
metrics = run_classifier(cfg, out_dir)
history = metrics.pop("history")
metrics.pop("timing")  # wall-clock: in timing.json only, so that this notebook is byte-identical run to run
episodes = pd.DataFrame(metrics.pop("episodes"))
predictions = pd.DataFrame(metrics.pop("predictions"))
pd.Series(
    {
        "input": metrics["input"],
        "labelled episodes (drop episodes)": f"{len(episodes)} ({int(episodes['drop'].sum())})",
        "train frames: positive / negative": f"{metrics['train_positives']} / {metrics['train_frames'] - metrics['train_positives']}",
        "held-out frames: positive / negative": f"{metrics['val_positives']} / {metrics['val_frames'] - metrics['val_positives']}",
        "train / held-out episodes": f"{metrics['train_episodes']} / {metrics['val_episodes']}",
        "threshold": f"{metrics['threshold']} ({metrics['threshold_rule']})",
        "held-out accuracy": f"{metrics['val_accuracy']:.4f}",
        "held-out precision / recall / F1": f"{metrics['val_precision']:.3f} / {metrics['val_recall']:.3f} / {metrics['val_f1']:.3f}",
        "train accuracy": f"{metrics['train_accuracy']:.4f}",
        "training time (s)": "see timing.json in the output folder",
    }
).to_frame("value")

# %% [markdown]
# ## Loss curve and held-out confusion matrix

# %%
loss = pd.Series(history["train_loss"], index=history["step"])
cm = np.array([[metrics["val_tn"], metrics["val_fp"]], [metrics["val_fn"], metrics["val_tp"]]])
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
ax0.plot(loss.index, loss.values, alpha=0.3, color="C0")
ax0.plot(loss.index, loss.rolling(25, min_periods=1).mean(), color="C0", label="25-step mean")
ax0.set_yscale("log")
ax0.set_xlabel("gradient step")
ax0.set_ylabel("class-balanced BCE")
ax0.legend()
ax0.set_title("training loss")
ax1.imshow(cm, cmap="Blues")
for (i, j), v in np.ndenumerate(cm):
    ax1.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
ax1.set_xticks([0, 1], ["not success", "success"])
ax1.set_yticks([0, 1], ["not success", "success"])
ax1.set_xlabel("predicted")
ax1.set_ylabel("sim's label")
ax1.set_title(f"held-out: accuracy {metrics['val_accuracy']:.3f}")
fig.tight_layout()

# %% [markdown]
# ## All metrics

# %%
pd.Series(metrics).to_frame("value")
