"""lerobot's GaussianActorPolicy for the study's features: build, run, save, and load *verified*.

Where normalization happens (lerobot's policy and SAC apply none themselves):
- **state**: in the env (`hilstudy.sim`), with fixed constants, to about [-1, 1];
- **images**: `to_policy_batch` turns uint8 HWC camera frames into float CHW in [0, 1] (datasets already
  return that); `check_images` rejects anything else (the devlog's x255 bug);
- **action**: the env takes actions in [-1, 1], which is the range of the actor's `tanh`.
So the lerobot processors are configured with IDENTITY normalization for every feature type: they add
the batch dimension and move to the device, and they are saved with the weights, so whoever runs the
policy later (our stages, lerobot's actor) applies the same (no-op) normalization.

Loading is verified, not assumed: lerobot loads with `strict=False` (a partial checkpoint loads
silently, the rest stays random), and its HIL-SERL resume rebuilds the actor randomly. `load_policy`
loads strictly, checks the features against what the caller expects, and compares every loaded tensor
with the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilstudy.params import PolicyParams

IMAGE_PREFIX = "observation.images."
MODEL_FILE = "model.safetensors"


class CheckpointError(RuntimeError):
    """A saved policy that does not load exactly as saved, or does not fit the study's features."""


def _identity_normalization() -> dict:
    from lerobot.configs.types import NormalizationMode

    return {k: NormalizationMode.IDENTITY for k in ("VISUAL", "STATE", "ENV", "ACTION")}


def policy_features(features: dict[str, dict]) -> tuple[dict, dict]:
    """lerobot dataset-style features (see `hilstudy.demos.dataset_features`) -> (inputs, outputs)."""
    from lerobot.utils.feature_utils import dataset_to_policy_features

    pf = dataset_to_policy_features({k: v for k, v in features.items() if k == "action" or k.startswith("observation.")})
    inputs = {k: v for k, v in pf.items() if k.startswith("observation.")}
    outputs = {k: v for k, v in pf.items() if k == "action"}
    return inputs, outputs


def make_policy_config(features: dict[str, dict], p: PolicyParams, device: str = "cpu"):
    """A GaussianActorConfig for these features, sized by the `policy` params section."""
    from lerobot.policies.gaussian_actor import GaussianActorConfig
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import ActorNetworkConfig

    inputs, outputs = policy_features(features)
    return GaussianActorConfig(
        input_features=inputs,
        output_features=outputs,
        normalization_mapping=_identity_normalization(),
        dataset_stats=None,
        device=device,
        vision_encoder_name=None,  # lerobot's from-scratch conv encoder: nothing to download
        freeze_vision_encoder=False,  # a random conv encoder must learn (lerobot freezes by default)
        image_encoder_hidden_dim=p.image_encoder_hidden_dim,
        shared_encoder=p.shared_encoder,
        state_encoder_hidden_dim=p.state_encoder_hidden_dim,
        latent_dim=p.latent_dim,
        actor_network_kwargs=ActorNetworkConfig(hidden_dims=list(p.actor_hidden_dims)),
        # critic sizes live in the SAC algorithm config (and lerobot's from_policy_config drops them)
        push_to_hub=False,
    )


def make_policy(config) -> tuple[Any, Any, Any]:
    """(policy, preprocessor, postprocessor) for a GaussianActorConfig, freshly initialised."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    policy = GaussianActorPolicy(config)
    pre, post = make_pre_post_processors(config, dataset_stats=None)
    return policy, pre, post


# ---------------------------------------------------------------------------------------- inputs
def check_images(batch: dict[str, Any]) -> None:
    """Images reaching the policy must be float in [0, 1]. uint8 or 0..255 floats fail, naming the key."""
    for key, value in batch.items():
        if not key.startswith(IMAGE_PREFIX) or not isinstance(value, torch.Tensor):
            continue
        if not torch.is_floating_point(value):
            raise ValueError(f"{key}: images must be float in [0, 1], got dtype {value.dtype} (convert with /255)")
        lo, hi = float(value.min()), float(value.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{key}: images must be float in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                "(scaled twice, or never divided by 255?)"
            )


def to_policy_batch(obs: dict[str, np.ndarray], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """One env observation (numpy, as the env returns it) -> unbatched tensors as a dataset returns them."""
    out: dict[str, torch.Tensor] = {}
    for key, value in obs.items():
        if key.startswith(IMAGE_PREFIX):
            arr = np.asarray(value)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(f"{key}: expected a uint8 HWC camera frame, got {arr.dtype} {arr.shape}")
            out[key] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(device, torch.float32) / 255.0
        elif key.startswith("observation."):
            out[key] = torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
    return out


def observations(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k.startswith("observation.")}


def deterministic_action(policy, preprocessor, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The actor's mode, tanh(mean), for one env observation: what evaluation and BC compare."""
    batch = observations(preprocessor(to_policy_batch(obs, policy.config.device)))
    check_images(batch)
    with torch.no_grad():
        _, _, means = policy.actor(batch, None)
    return torch.tanh(means)[0].cpu().numpy().astype(np.float32)


def sampled_action(policy, preprocessor, obs: dict[str, np.ndarray]) -> np.ndarray:
    """A sample from the tanh-Gaussian (exploration), for one env observation."""
    batch = observations(preprocessor(to_policy_batch(obs, policy.config.device)))
    check_images(batch)
    with torch.no_grad():
        actions, _, _ = policy.actor(batch, None)
    return actions[0].cpu().numpy().astype(np.float32)


class ActorPolicy:
    """A rollout policy (obs dict -> action) over a GaussianActorPolicy: deterministic or sampled."""

    def __init__(self, policy, preprocessor, deterministic: bool = True):
        self.policy, self.preprocessor, self.deterministic = policy, preprocessor, deterministic

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        was_training = self.policy.training
        self.policy.eval()
        try:
            fn = deterministic_action if self.deterministic else sampled_action
            return fn(self.policy, self.preprocessor, obs)
        finally:
            self.policy.train(was_training)


# ------------------------------------------------------------------------------------ save / load
def save_policy(policy, preprocessor, postprocessor, directory: str | Path) -> Path:
    """lerobot's format: config.json, model.safetensors, policy_{pre,post}processor*.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(directory)
    canonicalize_safetensors(directory / MODEL_FILE)
    preprocessor.save_pretrained(directory)
    postprocessor.save_pretrained(directory)
    return directory


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite a safetensors header as JSON with sorted keys: same tensors, same bytes every run.

    lerobot (through safetensors' shared-tensor de-duplication) records the aliases of a shared encoder
    in the header's `__metadata__`, which the Rust writer serializes from a hash map in an order that
    changes from process to process, so identical weights gave different files and DVC hashes. The
    format is an 8-byte little-endian header length, the JSON header (space padding allowed), then the
    data, whose offsets are relative to the data block, so a re-ordered header leaves the data as is.
    """
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data block 8-byte aligned
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def _feature_shapes(features: dict) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in features.items()}


def load_policy(directory: str | Path, expected_config=None, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Load a saved GaussianActorPolicy and prove it loaded: strict keys, same features, same tensors.

    expected_config: the config the caller would build for its own features and sizes; a checkpoint
    for another observation layout, another action size or other network sizes fails with the difference.
    """
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.gaussian_actor import GaussianActorConfig, GaussianActorPolicy
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / MODEL_FILE).exists() or not (directory / "config.json").exists():
        raise CheckpointError(f"{directory}: no saved policy here (config.json and {MODEL_FILE} expected)")
    saved_cfg = GaussianActorConfig.from_pretrained(directory)
    saved_cfg.device = device
    if expected_config is not None:
        problems = []
        for what in ("input_features", "output_features"):
            a, b = _feature_shapes(getattr(saved_cfg, what)), _feature_shapes(getattr(expected_config, what))
            if a != b:
                problems.append(f"{what}: checkpoint {a} vs expected {b}")
        for attr in ("actor_network_kwargs", "latent_dim", "shared_encoder", "image_encoder_hidden_dim"):
            a, b = getattr(saved_cfg, attr), getattr(expected_config, attr)
            if a != b:
                problems.append(f"{attr}: checkpoint {a} vs expected {b}")
        if problems:
            raise CheckpointError(f"{directory} does not fit this study: " + "; ".join(problems))
    try:
        policy = GaussianActorPolicy.from_pretrained(directory, config=saved_cfg, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise CheckpointError(f"{directory}: checkpoint does not match the policy it describes: {exc}") from None
    saved = load_file(str(directory / MODEL_FILE))
    loaded = policy.state_dict()
    # a shared encoder appears under several names (encoder_actor.*, actor.encoder.*); the file keeps one
    groups: dict[int, list[str]] = {}
    for key, tensor in loaded.items():
        groups.setdefault(tensor.data_ptr(), []).append(key)
    uncovered = sorted(keys[0] for keys in groups.values() if not any(k in saved for k in keys))
    if uncovered:
        raise CheckpointError(f"{directory}: checkpoint lacks {len(uncovered)} tensor(s), e.g. {uncovered[:3]}")
    for key, tensor in saved.items():
        if key not in loaded or not torch.equal(loaded[key].cpu(), tensor.cpu()):
            raise CheckpointError(f"{directory}: tensor {key} is not what the file holds after loading")
    pre, post = make_pre_post_processors(saved_cfg, pretrained_path=str(directory))
    policy.eval()
    return policy, pre, post


def saved_features(directory: str | Path) -> dict[str, Any]:
    """The input/output features recorded in a saved policy's config.json (for messages and checks)."""
    cfg = json.loads((Path(directory) / "config.json").read_text())
    return {"input_features": cfg.get("input_features"), "output_features": cfg.get("output_features")}
