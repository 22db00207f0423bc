"""The reward classifier: labelled frames, training, held-out metrics, and the per-step reward it gives.

HIL-SERL's reward is a classifier's verdict on every frame (success 1, else 0) that also ends the episode
on success, not a signal that arrives only at the end of an episode (devlog 059, "actual solution #1").

**Labelled frames** (sim): the scripted operator picks the cube, then keeps holding it up for `hold_steps`
steps (positive frames); in a `drop_fraction` of the episodes it then opens the gripper and the cube
falls (negative frames right next to positive ones). Frame t holds the observation *after* step t and its
label: the sim's own success check at that moment (the cube 10 cm above its start), stored as `next.reward`
(what lerobot's classifier trains on).

**Labelled frames** (real arm, `env.kind: real`, recorded by a person with `hilstudy record classifier`): the
person drives; a press of the success key starts the positive frames (the cube is up), the next press ends
them (the cube is down again, e.g. dropped), and the stop key ends the episode; re-record discards it. A
press is a rising edge of lerobot's success event, so keyboards and gamepads that report one step per press
and gamepads that report every step the button is held label alike. The same seeded `drop_fraction` of the
episodes asks the person to let the cube fall after holding it.

**One input path for training and run time**: frames (lerobot's loader: images CHW float in [0, 1]) and env
observations (`hilstudy.policy.to_policy_batch`, the same layout) both go through the classifier's *saved*
preprocessor (mean/std normalization with the training frames' statistics), then the model. lerobot's own
`RewardClassifierProcessorStep` feeds raw images to a classifier trained on normalized ones; here the
normalization is part of the saved classifier and `ClassifierReward` always applies it.

Writes `data/classifier/s<seed>/`: `frames/` (LeRobotDataset), `model/` (lerobot format: config.json,
model.safetensors, classifier_preprocessor.json + stats, `classifier.json` with the threshold; images add
`backbone/`), `live/` (dvclive curves), `metrics.json`, `predictions.json` (held-out confusion plot).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilstudy.faults import check_finite
from hilstudy.io import canonical_stats, partial_dir, replace_dir
from hilstudy.operator import SUCCESS_LIFT
from hilstudy.params import ClassifierParams, StudyParams
from hilstudy.rollout import Transition, rollout
from hilstudy.seeding import seed_everything

FRAME_SEED_BASE = 300_000  # labelled episode i of classifier seed s resets with 300_000 + 1000 * s + i
LABEL_KEY = "next.reward"  # lerobot's classifier reads its label from the reward key
META_FILE = "classifier.json"  # hilstudy's part of a saved classifier: threshold, input, label rule
PREPROCESSOR_CONFIG = "classifier_preprocessor.json"
POSTPROCESSOR_CONFIG = "classifier_postprocessor.json"
MODEL_FILE = "model.safetensors"
STATE_TYPE, IMAGE_TYPE = "hilstudy_state_classifier", "hilstudy_image_classifier"


class ClassifierError(RuntimeError):
    """A saved classifier that is incomplete, does not load as saved, or does not fit the env."""


# ------------------------------------------------------------------------------------- labelled frames
class _KeepGoing:
    """The env, except that success does not end the episode: it runs `extra(ep)` more steps, then ends
    (truncated). Everything else (the time limit, the cube leaving the table) ends it as before."""

    def __init__(self, env):
        self.env, self.extra, self._after = env, 0, -1
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.STATE_NAMES = env.STATE_NAMES

    def reset(self, seed=None):
        self._after = -1
        return self.env.reset(seed=seed)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._after >= 0 or info["success"]:
            self._after += 1
            terminated = False  # gym-hil ends on success (or out of bounds, which cannot follow a success here)
            truncated = truncated or self._after > self.extra
        return obs, reward, terminated, truncated, info

    def sim_state(self):
        return self.env.sim_state()


class LabellingOperator:
    """The scripted operator, which after the first success holds the cube up for `hold_steps` steps and,
    in a drop episode, then opens the gripper and keeps still."""

    def __init__(self, expert, hold_steps: int):
        self.expert, self.hold_steps, self.drop = expert, hold_steps, False
        self._after = -1

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)
        self._after = -1

    def step(self, state: dict[str, Any], policy_action: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
        if self._after >= 0 or state["cube_lift"] > SUCCESS_LIFT:
            self._after += 1
        if self.drop and self._after > self.hold_steps:
            action = np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32)
            return action, {"is_intervention": True, "teleop_action": action.copy(), "intervention_start": False}
        return self.expert.step(state, None)


def frame_features(env) -> dict:
    """The frames dataset's lerobot features: the env's observations, the executed action, the label."""
    from hilstudy.demos import dataset_features

    features = {k: v for k, v in dataset_features(env).items() if k.startswith("observation.") or k == "action"}
    features[LABEL_KEY] = {"dtype": "float32", "shape": (1,), "names": None}
    return features


def frame_env_params(params: StudyParams):
    """The env the classifier's frames come from: the study's, with cameras when the input is images."""
    obs = "pixels" if params.classifier.input == "images" else "state"
    return params.env.model_copy(update={"obs": obs})


def record_frames(params: StudyParams, root: str | Path) -> list[dict]:
    """Record `classifier.episodes` labelled episodes into a LeRobotDataset at `root` (atomically).

    Returns one record per episode: seed, drop, frames, positives, success (the sim's, at any step).
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from hilstudy.demos import FPS
    from hilstudy.operator import ScriptedOperator
    from hilstudy.sim import make_env

    cfg = params.classifier
    root = Path(root)
    partial = partial_dir(root)
    seed_everything(cfg.seed)
    drops = np.zeros(cfg.episodes, dtype=bool)  # exactly round(drop_fraction * episodes) drop episodes, seeded picks
    drops[np.random.default_rng([cfg.seed, 0xD70]).permutation(cfg.episodes)[: round(cfg.drop_fraction * cfg.episodes)]] = True
    if params.env.kind == "real":
        records = _record_frames_by_a_person(params, partial, drops)
        replace_dir(partial, root)
        return records
    records = []
    with make_env(frame_env_params(params)) as base:
        env = _KeepGoing(base)
        operator = LabellingOperator(ScriptedOperator(params.operator, params.env.action_scale), cfg.hold_steps)
        ds = LeRobotDataset.create(
            repo_id="hilstudy/classifier_frames", fps=FPS, root=partial, features=frame_features(env),
            use_videos=False, robot_type="panda",
        )
        for i in range(cfg.episodes):
            seed = FRAME_SEED_BASE + 1000 * cfg.seed + i
            operator.drop = bool(drops[i])
            env.extra = cfg.hold_steps * (2 if operator.drop else 1)
            transitions = list(rollout(env, policy=None, operator=operator, seed=seed))
            for tr in transitions:
                ds.add_frame(_frame(tr, params.demos.task))
            ds.save_episode()
            labels = [tr.success for tr in transitions]
            records.append({"seed": seed, "drop": bool(drops[i]), "frames": len(labels),
                            "positives": int(sum(labels)), "success": bool(any(labels))})
        ds.finalize()
        canonical_stats(partial)
    replace_dir(partial, root)
    return records


def _frame(tr: Transition, task: str, label: bool | None = None) -> dict:
    frame = {k: v for k, v in tr.next_obs.items() if k.startswith("observation.")}
    frame["action"] = tr.action.astype(np.float32)
    # the sim's success after this step, or the person's label (real arm)
    frame[LABEL_KEY] = np.array([float(tr.success if label is None else label)], dtype=np.float32)
    frame["task"] = task
    return frame


def person_labels(transitions: list[Transition]) -> list[bool]:
    """Frame labels from the person's success key: each press (a rising edge of the event) toggles positive."""
    labels, on, held = [], False, False
    for tr in transitions:
        pressed = bool(tr.info["success"])
        if pressed and not held:
            on = not on
        held = pressed
        labels.append(on)
    return labels


def _record_frames_by_a_person(params: StudyParams, partial: Path, drops: np.ndarray) -> list[dict]:
    """The real arm's labelled frames (module docstring): `classifier.episodes` episodes kept, re-recorded ones
    discarded (at most 3x as many attempts)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from hilstudy.real import make_operator, require_a_person
    from hilstudy.sim import make_env

    cfg = params.classifier
    require_a_person(params, "classifier frames are labelled", "`hilstudy record classifier` (it records, trains, "
                     "then `dvc commit`s the classifier stage)")
    records: list[dict] = []
    with make_env(frame_env_params(params), params.real) as env:
        env.terminate_on_success = False  # the success key marks frames; the stop key ends the episode
        operator = make_operator(params, env)
        ds = LeRobotDataset.create(
            repo_id="hilstudy/classifier_frames", fps=params.real.fps, root=partial, features=frame_features(env),
            use_videos=False, robot_type=params.real.robot,
        )
        attempt = 0
        while len(records) < cfg.episodes:
            if attempt >= 3 * cfg.episodes:
                raise RuntimeError(f"only {len(records)} of {cfg.episodes} labelled episodes kept in {attempt} "
                                   "attempts: every other one was re-recorded")
            i, drop = len(records), bool(drops[len(records)])
            print(f"classifier frames, episode {i + 1}/{cfg.episodes}: pick the cube up, press success once it is "
                  f"up, {'then open the gripper, let it fall and press success again as it leaves the gripper, ' if drop else ''}"
                  "then press stop", flush=True)
            seed = FRAME_SEED_BASE + 1000 * cfg.seed + attempt
            attempt += 1
            transitions = list(rollout(env, policy=None, operator=operator, seed=seed))
            if transitions[-1].info.get("rerecord", False):
                continue
            labels = person_labels(transitions)
            for tr, label in zip(transitions, labels, strict=True):
                ds.add_frame(_frame(tr, params.demos.task, label))
            ds.save_episode()
            records.append({"seed": seed, "drop": drop, "frames": len(labels), "positives": int(sum(labels)),
                            "success": bool(any(labels))})
        ds.finalize()
        canonical_stats(partial)
    return records


@dataclass
class Frames:
    obs: dict[str, torch.Tensor]  # the classifier's inputs, as lerobot's loader gives them (images CHW [0, 1])
    label: torch.Tensor  # (N,) 1.0 success, 0.0 not
    episode: np.ndarray  # (N,) episode index
    features: dict[str, dict]  # the dataset's features

    def take(self, idx: np.ndarray) -> Frames:
        t = torch.as_tensor(idx)
        return Frames({k: v[t] for k, v in self.obs.items()}, self.label[t], self.episode[idx], self.features)


def load_frames(root: str | Path, inputs: list[str] | ClassifierParams) -> Frames:
    """A frames dataset (lerobot's loader), restricted to the classifier's inputs (keys, or the ones
    `classifier` params read from these frames); a dataset without them fails naming what it has."""
    from hilstudy.demos import load_demos

    ds = load_demos(root)
    features = {k: dict(v) for k, v in ds.meta.features.items()}
    keys = input_keys(features, inputs) if isinstance(inputs, ClassifierParams) else list(inputs)
    missing = [k for k in keys if k not in features]
    if missing or LABEL_KEY not in features:
        raise ValueError(f"{root}: frames lack {missing or [LABEL_KEY]} (they have {sorted(features)}): "
                         "re-run the classifier stage for this input")
    cols = ds.hf_dataset.with_format("numpy")
    obs = {}
    for k in keys:
        if features[k]["dtype"] in ("image", "video"):
            obs[k] = torch.stack([ds[i][k] for i in range(len(ds))]).float()
        else:
            obs[k] = torch.as_tensor(np.stack(cols[k]), dtype=torch.float32)
    label = torch.as_tensor(np.asarray(cols[LABEL_KEY], dtype=np.float32).ravel())
    return Frames(obs, label, np.asarray(cols["episode_index"]).ravel(), features)


# ---------------------------------------------------------------------------------------------- model
def input_keys(features: dict[str, dict], cfg: ClassifierParams) -> list[str]:
    if cfg.input == "state":
        return ["observation.state"]
    keys = [k for k in features if k.startswith("observation.images.")]
    if not keys:
        raise ValueError("classifier.input is 'images' but the frames have no camera images")
    return keys


def backbone_stages(image_size: int) -> int:
    """ResNet stages that take an image_size square image to the 4x4 map lerobot's spatial embedding is
    hard-wired for: the stem divides by 4, every stage after the first by 2 (128 -> 4 stages, 32 -> 2)."""
    n = int(np.log2(image_size / 16)) + 1 if image_size >= 32 else 0
    if n < 2 or image_size != 8 * 2**n:
        raise ValueError(f"env.image_size {image_size}: lerobot's image classifier needs a power of two >= 32 "
                         "(its spatial embedding expects a 4x4 feature map)")
    return n


def make_backbone(directory: str | Path, channels: list[int], seed: int, image_size: int = 128) -> Path:
    """A small ResNet (transformers' ResNetModel; enough stages to reach the 4x4 map lerobot's spatial
    embedding expects), initialized from `seed` and saved where lerobot's classifier loads its backbone
    from (`model_name`). Nothing is downloaded."""
    from transformers import ResNetConfig, ResNetModel

    n = backbone_stages(image_size)
    if len(channels) < n:
        raise ValueError(f"classifier.backbone_channels: {n} stages are needed for {image_size}x{image_size} images, "
                         f"got {len(channels)} widths")
    widths = list(channels[:n])
    directory = Path(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ResNetModel(ResNetConfig(num_channels=3, embedding_size=widths[0], hidden_sizes=widths,
                                         depths=[1] * n, layer_type="basic"))
    with contextlib.redirect_stderr(io.StringIO()):
        model.save_pretrained(directory)
    return directory


def model_config(features: dict[str, dict], cfg: ClassifierParams, backbone_dir: str | Path | None = None):
    """The lerobot reward-model config for these frames and params."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    import hilstudy.rewards  # noqa: F401  (registers the plugins)
    from hilstudy.rewards import ImageClassifierConfig, StateClassifierConfig

    keys = input_keys(features, cfg)
    out = {LABEL_KEY: PolicyFeature(type=FeatureType.REWARD, shape=(1,))}
    if cfg.input == "state":
        inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=tuple(features["observation.state"]["shape"]))}
        return StateClassifierConfig(input_features=inputs, output_features=out, hidden_dims=list(cfg.hidden_dims),
                                     dropout_rate=cfg.dropout, learning_rate=cfg.lr, weight_decay=cfg.weight_decay)
    inputs = {}
    for k in keys:
        h, w, c = features[k]["shape"]
        inputs[k] = PolicyFeature(type=FeatureType.VISUAL, shape=(c, h, w))
    return ImageClassifierConfig(input_features=inputs, output_features=out, model_name=str(backbone_dir),
                                 num_cameras=len(keys), hidden_dim=cfg.hidden_dims[0], latent_dim=cfg.hidden_dims[0],
                                 dropout_rate=cfg.dropout, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                                 train_backbone=cfg.train_backbone)


def feature_stats(obs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Mean and std of each input over the given (training) frames; per channel for images (shape (C,1,1))."""
    stats = {}
    for k, v in obs.items():
        dims = (0, 2, 3) if v.ndim == 4 else (0,)
        mean, std = v.mean(dim=dims), v.std(dim=dims).clamp_min(1e-6)
        if v.ndim == 4:
            mean, std = mean[:, None, None], std[:, None, None]
        stats[k] = {"mean": mean, "std": std}
    return stats


class ClassifierReward:
    """P(success) and the 0/1 reward from observations, through the saved preprocessor. Callable on one env
    observation: (reward, success) — what `rollout(reward_fn=...)` uses every step."""

    def __init__(self, model, preprocessor, threshold: float):
        self.model, self.pre, self.threshold = model, preprocessor, float(threshold)
        self.input_keys = list(model.config.input_features)

    def preprocess(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batched frames or observations (images CHW float in [0, 1]) -> the model's inputs."""
        from hilstudy.policy import check_images

        batch = {k: obs[k] for k in self.input_keys}
        check_images(batch)
        return {k: v for k, v in self.pre(batch).items() if k in self.input_keys}

    def logits(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.success_logits(self.preprocess(obs))

    @torch.no_grad()
    def probabilities(self, obs: dict[str, torch.Tensor], batch_size: int = 1024) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        n = len(next(iter(obs.values())))
        out = torch.cat([torch.sigmoid(self.logits({k: v[i : i + batch_size] for k, v in obs.items()}))
                         for i in range(0, n, batch_size)])
        self.model.train(was)
        return out

    def __call__(self, obs: dict[str, np.ndarray]) -> tuple[float, bool]:
        from hilstudy.policy import to_policy_batch

        batch = {k: v.unsqueeze(0) for k, v in to_policy_batch(obs).items() if k in self.input_keys}
        missing = [k for k in self.input_keys if k not in batch]
        if missing:
            raise ClassifierError(f"the classifier reads {missing}, which the env does not give (it gives {sorted(obs)})")
        success = bool(self.probabilities(batch)[0] > self.threshold)
        return float(success), success


# --------------------------------------------------------------------------------------------- metrics
def binary_metrics(prob: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the confusion matrix at `threshold` (success = prob > threshold)."""
    pred = np.asarray(prob) > threshold
    y = np.asarray(label) > 0.5
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / len(y), "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


THRESHOLD_GRID = tuple(round(x, 2) for x in np.linspace(0.05, 0.95, 19))


def choose_threshold(prob: np.ndarray, label: np.ndarray) -> float:
    """The grid threshold (0.05 ... 0.95) with the best F1 on the given (training) frames; ties go to the
    one closest to 0.5. Held-out frames never choose it."""
    scored = [(binary_metrics(prob, label, t)["f1"], -abs(t - 0.5), t) for t in THRESHOLD_GRID]
    return max(scored)[2]


# -------------------------------------------------------------------------------------------- training
def split_frames(episode: np.ndarray, val_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from hilstudy.bc import split_episodes

    if val_episodes >= len(np.unique(episode)):
        raise ValueError(f"classifier.val_episodes ({val_episodes}) must be smaller than classifier.episodes "
                         f"({len(np.unique(episode))})")
    return split_episodes(episode, val_episodes, seed)


def train_classifier(params: StudyParams, frames_root: str | Path, out_dir: str | Path, live: Any | None = None) -> dict[str, Any]:
    """Train on the training episodes, choose the threshold on them, save (atomically) to `<out_dir>/model`,
    reload it with `load_classifier` (strict, every tensor compared) and measure *that* on the held-out
    episodes. Returns metrics (with `history`, `timing`, held-out `predictions`)."""
    from hilstudy.bc import torch_threads

    with torch_threads(params.classifier.torch_threads):
        return _train(params, frames_root, Path(out_dir), live)


def _train(params: StudyParams, frames_root: str | Path, out_dir: Path, live: Any | None) -> dict[str, Any]:
    from lerobot.rewards import make_reward_model, make_reward_pre_post_processors

    cfg = params.classifier
    seed_everything(cfg.seed)
    frames = load_frames(frames_root, cfg)
    train_idx, val_idx = split_frames(frames.episode, cfg.val_episodes, cfg.seed)
    train, val = frames.take(train_idx), frames.take(val_idx)
    if train.label.sum() == 0 or train.label.sum() == len(train.label):
        raise ValueError(f"{frames_root}: the training frames hold one class only "
                         f"({int(train.label.sum())} positive of {len(train.label)}): record more episodes")

    final = out_dir / "model"
    partial = partial_dir(final)
    partial.mkdir()
    backbone = (make_backbone(partial / "backbone", cfg.backbone_channels, cfg.seed, params.env.image_size)
                if cfg.input == "images" else None)
    config = model_config(frames.features, cfg, backbone)
    torch.manual_seed(cfg.seed)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' weight-loading progress bar
        model = make_reward_model(config)
    pre, post = make_reward_pre_post_processors(config, dataset_stats=feature_stats(train.obs))
    scorer = ClassifierReward(model, pre, 0.5)
    x_train = scorer.preprocess(train.obs)  # normalized once: the exact inputs run time will give the model

    params_trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params_trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    pos_weight = (len(train.label) - train.label.sum()) / train.label.sum()  # balance the classes in the loss
    history: dict[str, list] = {"step": [], "train_loss": []}

    def log(name: str, step: int, value: float) -> None:
        if live is not None:
            live.step = step
            live.log_metric(name, value)

    model.train()
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(train.label), (cfg.batch_size,), generator=gen)
        logits = model.success_logits({k: v[idx] for k, v in x_train.items()})
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, train.label[idx], pos_weight=pos_weight)
        check_finite({"classifier train loss": loss.item()}, f"classifier: step {step}",
                     "before anything was saved (the previous outputs stay)")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params_trainable, 1.0)
        optimizer.step()
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        log("classifier/train_loss", step, history["train_loss"][-1])
    train_time = time.perf_counter() - t0
    model.eval()

    threshold = cfg.threshold if cfg.threshold is not None else choose_threshold(
        scorer.probabilities(train.obs).numpy(), train.label.numpy())
    save_classifier(model, pre, post, partial, threshold, cfg)
    loaded = load_classifier(partial, expected_inputs=config.input_features)
    for key, tensor in loaded.model.state_dict().items():  # verify, don't assume
        if not torch.equal(tensor, model.state_dict()[key]):
            raise ClassifierError(f"the saved classifier differs from the trained one at {key}")
    replace_dir(partial, final)

    t1 = time.perf_counter()
    prob_val = loaded.probabilities(val.obs).numpy()
    prob_train = loaded.probabilities(train.obs).numpy()
    held = binary_metrics(prob_val, val.label.numpy(), threshold)
    metrics: dict[str, Any] = {
        "input": cfg.input,
        "threshold": threshold,
        "threshold_rule": "fixed by classifier.threshold" if cfg.threshold is not None
        else "best F1 on the training frames over 0.05..0.95 (step 0.05)",
        **{f"val_{k}": v for k, v in held.items()},
        "train_accuracy": binary_metrics(prob_train, train.label.numpy(), threshold)["accuracy"],
        "train_frames": len(train.label), "train_positives": int(train.label.sum()),
        "val_frames": len(val.label), "val_positives": int(val.label.sum()),
        "train_episodes": int(len(np.unique(train.episode))), "val_episodes": int(len(np.unique(val.episode))),
        "final_train_loss": history["train_loss"][-1],
        "trainable_parameters": int(sum(p.numel() for p in params_trainable)),
        "steps": cfg.steps,
    }
    metrics["timing"] = {"train_time_s": train_time, "eval_time_s": time.perf_counter() - t1}
    metrics["history"] = history
    metrics["predictions"] = [{"actual": int(a), "predicted": int(p > threshold)} for a, p in zip(val.label.numpy(), prob_val)]
    return metrics


# ------------------------------------------------------------------------------------------- save/load
def save_classifier(model, pre, post, directory: Path, threshold: float, cfg: ClassifierParams) -> Path:
    from hilstudy.io import write_json
    from hilstudy.policy import canonicalize_safetensors

    directory.mkdir(parents=True, exist_ok=True)
    model_name = getattr(model.config, "model_name", None)
    if model_name is not None:  # the backbone folder travels with the classifier; config.json names it relatively
        model.config.model_name = "backbone"
    try:
        model.save_pretrained(directory)
    finally:
        if model_name is not None:
            model.config.model_name = model_name
    canonicalize_safetensors(directory / MODEL_FILE)  # shared backbone aliases: same bytes every run
    pre.save_pretrained(directory, config_filename=PREPROCESSOR_CONFIG)
    post.save_pretrained(directory, config_filename=POSTPROCESSOR_CONFIG)
    write_json(directory / META_FILE, {"threshold": threshold, "input": cfg.input, "type": model.config.type,
                                       "label": f"success: the cube more than {SUCCESS_LIFT} m above its start (sim)"})
    return directory


def load_classifier(directory: str | Path, expected_inputs: dict | None = None) -> ClassifierReward:
    """Load a saved classifier and prove it loaded: strict keys, every tensor equal to the file's, the
    preprocessor's statistics present. `expected_inputs` (lerobot input features, e.g. of the env) must
    match what it reads, else ClassifierError names both."""
    from lerobot.configs.rewards import RewardModelConfig
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.rewards import get_reward_model_class
    from safetensors.torch import load_file

    import hilstudy.rewards  # noqa: F401  (registers the plugins)
    from hilstudy.policy import check_loaded

    directory = Path(directory)
    needed = ["config.json", MODEL_FILE, PREPROCESSOR_CONFIG, META_FILE]
    missing = [f for f in needed if not (directory / f).exists()]
    if missing:
        raise ClassifierError(f"{directory}: no complete saved classifier here (missing {', '.join(missing)}): "
                              "run the classifier stage (dvc repro classifier)")
    meta = json.loads((directory / META_FILE).read_text())
    cfg = RewardModelConfig.from_pretrained(directory)
    if cfg.type not in (STATE_TYPE, IMAGE_TYPE):
        raise ClassifierError(f"{directory}: a '{cfg.type}' reward model, not one of hilstudy's classifiers")
    if expected_inputs is not None:
        have = {k: tuple(v.shape) for k, v in cfg.input_features.items()}
        want = {k: tuple(v.shape) for k, v in expected_inputs.items() if k in have or cfg.type == STATE_TYPE and k == "observation.state"}
        absent = [k for k in have if k not in expected_inputs]
        if absent or have != want:
            raise ClassifierError(f"{directory}: the classifier reads {have}, but the env gives "
                                  f"{ {k: tuple(v.shape) for k, v in expected_inputs.items()} }: retrain it for this env "
                                  "(classifier.input, env.obs)")
    if cfg.type == IMAGE_TYPE:
        cfg.model_name = str(directory / cfg.model_name)
    cfg.device = "cpu"
    cls = get_reward_model_class(cfg.type)
    # lerobot loads with strict=False, and safetensors' own strict check trips over the image classifier's
    # backbone, which both cameras share (its BatchNorm counters are reported as unexpected). So: load
    # non-strictly, then check strictly here: every tensor in the file is in the model with the file's
    # value, and every tensor of the model (a shared one under any of its names) came from the file.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), _quiet_logging():
        model = cls.from_pretrained(directory, config=cfg, strict=False)
    check_loaded(model, load_file(str(directory / MODEL_FILE)), directory, error=ClassifierError)
    pre = PolicyProcessorPipeline.from_pretrained(directory, config_filename=PREPROCESSOR_CONFIG)
    norm = [s for s in pre.steps if type(s).__name__ == "NormalizerProcessorStep"]
    for k in cfg.input_features:
        if not norm or k not in norm[0].stats:
            raise ClassifierError(f"{directory}: the preprocessor has no statistics for {k}: inputs would not be normalized")
    model.eval()
    return ClassifierReward(model, pre, meta["threshold"])


@contextlib.contextmanager
def _quiet_logging():
    """lerobot logs the shared backbone's aliases as 'unexpected keys' (checked properly by load_classifier)."""
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def run_classifier(params: StudyParams, out_dir: str | Path, frames_root: str | Path | None = None) -> dict[str, Any]:
    """The `classifier` stage: record the labelled frames, train, measure, write the files (see the module
    docstring). Returns the metrics (with `history`, `timing`, `episodes`)."""
    from dvclive import Live

    from hilstudy.io import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames_root = Path(frames_root) if frames_root else out_dir / "frames"
    episodes = record_frames(params, frames_root)
    record_time = time.perf_counter() - t0
    live_partial = partial_dir(out_dir / "live")
    with Live(dir=str(live_partial), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        metrics = train_classifier(params, frames_root, out_dir, live=live)
    replace_dir(live_partial, out_dir / "live")
    metrics["timing"]["record_time_s"] = record_time
    metrics["episodes"] = episodes
    scalar = {k: v for k, v in metrics.items() if k not in ("history", "timing", "predictions", "episodes")}
    scalar["recorded_episodes"] = len(episodes)
    scalar["recorded_drop_episodes"] = int(sum(e["drop"] for e in episodes))
    scalar["recorded_success_rate"] = float(np.mean([e["success"] for e in episodes]))
    write_json(out_dir / "metrics.json", scalar)
    write_json(out_dir / "predictions.json", metrics["predictions"])
    write_json(out_dir / "timing.json", metrics["timing"])
    return metrics
