"""lerobot's GaussianActorPolicy for the study's features: build, run, save, and load *verified*.

**Where normalization happens.** lerobot's `GaussianActorPolicy` and `SACAlgorithm` normalize nothing
themselves; only the processors from `make_pre_post_processors` do. The study normalizes each input in
exactly one place, before the processors:
- **state** (`observation.state`): in the env (`hilstudy.sim`), with fixed constants, to about [-1, 1];
- **images** (`observation.images.*`): `to_policy_batch` turns uint8 HWC camera frames into float CHW in
  [0, 1], which is also what lerobot's dataset loader and its gym_manipulator env pipeline return;
  `check_images` rejects anything else (devlog 059's x255 bug);
- **action**: the env takes actions in [-1, 1], the range of the actor's `tanh`; demo actions and replay
  buffer actions are stored in that same range.
So the policy's config carries `normalization_mapping` = IDENTITY for every feature type and
`dataset_stats` = None, and its processors are: rename (no-op) -> add batch dim -> to device -> identity
normalizer; postprocessor: identity unnormalizer -> to cpu. We chose IDENTITY over MIN_MAX with stats at
+-1 because it is exact (MIN_MAX computes 2(x+1)/2-1, which is not x in float32), and because lerobot's
defaults are wrong for us: MIN_MAX/MEAN_STD with placeholder `dataset_stats` (a 2-D state in [0, 1], a 3-D
action in [0, 1], ImageNet mean/std), and a MIN_MAX action would be un-normalized by lerobot's actor while
SAC trains on raw buffer actions. Note that lerobot's learner and actor (`lerobot.rl.learner/actor`)
build their processors from `policy.normalization_mapping` + `policy.dataset_stats` of the config, not
from the saved processor files: the config and the processor files say the same thing, and
`load_policy` checks that they do. BC trains on exactly what the preprocessor produces.

**Loading is verified, not assumed**: lerobot loads with `strict=False` (a partial checkpoint loads
silently, the rest stays random), and its HIL-SERL resume rebuilds the actor randomly. `load_policy`
checks the config against what the caller expects (features, sizes, normalization), loads strictly,
compares every loaded tensor with the file, and checks the processor files against the config.

**Actions.** `GaussianActorPolicy.select_action` returns a *sample* of the tanh-Gaussian (lerobot's
actor explores with it); `forward` / `policy.actor(...)` return `(sample, log_prob, mean)` where `mean`
is *pre-tanh*. The deterministic action, used for BC targets and evaluation, is `tanh(mean)`.
"""

from __future__ import annotations

import contextlib
import io

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hilstudy.params import PolicyParams

IMAGE_PREFIX = "observation.images."
# lerobot's DefaultImageEncoder (convs k7/s2, k5/s2, k3/s2, k3/s2, no padding) needs images of at least
# this side: a smaller one fails deep inside lerobot with "Kernel size can't be greater than input size"
MIN_IMAGE_SIDE = 39
MODEL_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"

# config fields that decide the network's shape or its inputs: a checkpoint must agree on all of them
ARCHITECTURE_FIELDS = (
    "actor_network_kwargs",
    "policy_kwargs",
    "latent_dim",
    "shared_encoder",
    "image_encoder_hidden_dim",
    "image_embedding_pooling_dim",
    "vision_encoder_name",
    "num_discrete_actions",
    "normalization_mapping",
    "dataset_stats",
)


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
    """A GaussianActorConfig for these features, sized by the `policy` params section.

    features: dataset-style features (`hilstudy.demos.dataset_features(env)` or a dataset's
    `meta.features`); only `observation.*` and `action` are used.
    """
    from lerobot.policies.gaussian_actor import GaussianActorConfig
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import ActorNetworkConfig

    inputs, outputs = policy_features(features)
    for key, ft in inputs.items():
        if key.startswith(IMAGE_PREFIX) and min(ft.shape[1:]) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"{key}: images of {ft.shape[1]}x{ft.shape[2]} are too small for lerobot's from-scratch image "
                f"encoder (4 unpadded stride-2 convs): use env.image_size >= {MIN_IMAGE_SIDE}"
            )
    return GaussianActorConfig(
        input_features=inputs,
        output_features=outputs,
        normalization_mapping=_identity_normalization(),
        dataset_stats=None,
        device=device,
        vision_encoder_name=None,  # lerobot's DefaultImageEncoder: 4 convs from scratch, nothing to download
        freeze_vision_encoder=False,  # lerobot freezes by default, which would leave a random conv stack frozen
        image_encoder_hidden_dim=p.image_encoder_hidden_dim,
        shared_encoder=p.shared_encoder,
        state_encoder_hidden_dim=p.state_encoder_hidden_dim,  # recorded; GaussianActor 0.6.1 does not use it
        latent_dim=p.latent_dim,
        actor_network_kwargs=ActorNetworkConfig(hidden_dims=list(p.actor_hidden_dims)),
        # critic sizes live in the SAC algorithm config (and lerobot's from_policy_config drops them)
        push_to_hub=False,
    )


def make_policy(config) -> tuple[Any, Any, Any]:
    """(policy, preprocessor, postprocessor) for a GaussianActorConfig, freshly initialised (torch's RNG)."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    policy = GaussianActorPolicy(config).to(config.device)  # initialised on the CPU's RNG whatever the device
    pre, post = make_pre_post_processors(config, dataset_stats=None)
    return policy, pre, post


def resolve_device(name: str, what: str = "finetune.device") -> str:
    """'cpu' | 'cuda' | 'auto' -> a torch device name; 'cuda' without a CUDA device fails here, before compute."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is 'cuda' but torch sees no CUDA device here; use 'cpu' or 'auto'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"{what} must be 'cpu', 'cuda' or 'auto', got {name!r}")
    return name


# ---------------------------------------------------------------------------------------- inputs
def check_images(batch: dict[str, Any]) -> None:
    """Images reaching the policy must be float in [0, 1]. uint8 or 0..255 floats fail, naming the key."""
    for key, value in batch.items():
        if not key.startswith(IMAGE_PREFIX):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{key}: images must be a float tensor in [0, 1], got {type(value).__name__}")
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


def actor_outputs(policy, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sampled action, log_prob, pre-tanh mean) for a preprocessed batch, after the image guard."""
    check_images(batch)
    return policy.actor(batch, None)


class _eval_mode:
    """Run a policy in eval mode (no dropout: lerobot's image post-encoders have Dropout(0.1)), then restore."""

    def __init__(self, policy):
        self.policy = policy

    def __enter__(self):
        self.was_training = self.policy.training
        self.policy.eval()

    def __exit__(self, *exc):
        self.policy.train(self.was_training)


def deterministic_action(policy, preprocessor, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The actor's mode, tanh(mean), for one env observation (eval mode): what evaluation and BC compare."""
    batch = observations(preprocessor(to_policy_batch(obs, policy.config.device)))
    with torch.no_grad(), _eval_mode(policy):
        _, _, means = actor_outputs(policy, batch)
    return torch.tanh(means)[0].cpu().numpy().astype(np.float32)


def sampled_action(policy, preprocessor, obs: dict[str, np.ndarray]) -> np.ndarray:
    """A sample from the tanh-Gaussian (exploration; what lerobot's `select_action` returns), eval mode."""
    batch = observations(preprocessor(to_policy_batch(obs, policy.config.device)))
    with torch.no_grad(), _eval_mode(policy):
        actions, _, _ = actor_outputs(policy, batch)
    return actions[0].cpu().numpy().astype(np.float32)


class ActorPolicy:
    """A rollout policy (obs dict -> np.ndarray (4,)) over a GaussianActorPolicy: deterministic or sampled."""

    def __init__(self, policy, preprocessor, deterministic: bool = True):
        self.policy, self.preprocessor, self.deterministic = policy, preprocessor, deterministic

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        fn = deterministic_action if self.deterministic else sampled_action
        return fn(self.policy, self.preprocessor, obs)


# ------------------------------------------------------------------------------------ save / load
def save_policy(policy, preprocessor, postprocessor, directory: str | Path) -> Path:
    """lerobot's format: config.json, model.safetensors, policy_{pre,post}processor.json.

    `GaussianActorPolicy.from_pretrained(directory)` loads it; so does lerobot's learner/actor with
    `policy.path` (see the README). With identity normalization there are no stats files.
    """
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


def _feature_layout(features: dict) -> dict[str, tuple]:
    """{key: (type, shape)} of PolicyFeatures: names, kinds and sizes of the inputs/outputs."""
    return {k: (getattr(v.type, "value", str(v.type)), tuple(v.shape)) for k, v in features.items()}


def _plain(value: Any) -> Any:
    """A config value as comparable plain data (dataclasses -> dicts, enums -> values)."""
    import dataclasses
    import enum

    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(getattr(k, "value", k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def config_differences(saved_cfg, expected_cfg) -> list[str]:
    """What differs between a checkpoint's config and the config the caller would build ([] if it fits)."""
    problems = []
    for what in ("input_features", "output_features"):
        a, b = _feature_layout(getattr(saved_cfg, what)), _feature_layout(getattr(expected_cfg, what))
        if a != b:
            problems.append(f"{what}: checkpoint {a} vs expected {b}")
    for attr in ARCHITECTURE_FIELDS:
        a, b = _plain(getattr(saved_cfg, attr)), _plain(getattr(expected_cfg, attr))
        if a != b:
            problems.append(f"{attr}: checkpoint {a} vs expected {b}")
    return problems


def _check_processors(directory: Path, cfg, pre, post) -> None:
    """The saved processors must be the ones this config makes (same steps, settings and stats)."""
    from lerobot.policies.factory import make_pre_post_processors

    fresh_pre, fresh_post = make_pre_post_processors(cfg, dataset_stats=cfg.dataset_stats)
    for name, loaded, fresh in (("preprocessor", pre, fresh_pre), ("postprocessor", post, fresh_post)):
        got = [(type(s).__name__, _plain(s.get_config())) for s in loaded.steps]
        want = [(type(s).__name__, _plain(s.get_config())) for s in fresh.steps]
        if [g[0] for g in got] != [w[0] for w in want]:
            raise CheckpointError(f"{directory}: saved {name} steps {[g[0] for g in got]} are not what its config "
                                  f"makes: {[w[0] for w in want]}")
        for (step, a), (_, b) in zip(got, want, strict=True):
            if a != b:
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                raise CheckpointError(f"{directory}: saved {name} step {step} differs from what config.json makes "
                                      f"(saved, expected): {diff}")
        for s_got, s_want in zip(loaded.steps, fresh.steps, strict=True):
            a, b = s_got.state_dict(), s_want.state_dict()
            if a.keys() != b.keys() or any(not torch.equal(a[k].cpu(), b[k].cpu()) for k in a):
                raise CheckpointError(f"{directory}: saved {name} step {type(s_got).__name__} has other stats")


def check_loaded(module: torch.nn.Module, saved: dict[str, torch.Tensor], directory: Path, error=CheckpointError) -> None:
    """After a (non-strict) load: every tensor of the file is in `module` with the file's value, and every
    tensor of `module` came from the file. A shared tensor (a shared encoder or backbone) appears under
    several names in the module and under one in the file (safetensors keeps one), so coverage is checked
    per storage. Raises `error` naming the first problem."""
    loaded = module.state_dict()
    groups: dict[int, list[str]] = {}
    for key, tensor in loaded.items():
        groups.setdefault(tensor.data_ptr(), []).append(key)
    uncovered = sorted(keys[0] for keys in groups.values() if not any(k in saved for k in keys))
    if uncovered:
        raise error(f"{directory}: checkpoint lacks {len(uncovered)} tensor(s), e.g. {uncovered[:3]}")
    for key, tensor in saved.items():
        if key not in loaded:
            raise error(f"{directory}: checkpoint has tensor {key}, which the model does not")
        if loaded[key].shape != tensor.shape or not torch.equal(loaded[key].cpu(), tensor.cpu()):
            raise error(f"{directory}: tensor {key} is not what the file holds after loading")


def load_policy(
    directory: str | Path,
    expected_config=None,
    device: str = "cpu",
    *,
    expected_features: dict[str, dict] | None = None,
    policy_params: PolicyParams | None = None,
) -> tuple[Any, Any, Any]:
    """Load a saved GaussianActorPolicy and prove it loaded: (policy in eval mode, preprocessor, postprocessor).

    What the caller expects, either as `expected_config` (a GaussianActorConfig) or as
    `expected_features` (dataset-style features, e.g. `dataset_features(env)`) plus `policy_params`
    (default: PolicyParams()). A checkpoint for another observation layout, another action size, other
    network sizes or another normalization fails naming the difference. Then: strict key match, every
    tensor equal to the file's, and processor files equal to what the config makes. Any failure raises
    CheckpointError.
    """
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.gaussian_actor import GaussianActorConfig, GaussianActorPolicy
    from safetensors.torch import load_file

    directory = Path(directory)
    if expected_config is None and expected_features is not None:
        expected_config = make_policy_config(expected_features, policy_params or PolicyParams(), device)
    missing = [f for f in ("config.json", MODEL_FILE, PREPROCESSOR_FILE, POSTPROCESSOR_FILE) if not (directory / f).exists()]
    if missing:
        raise CheckpointError(
            f"{directory}: no complete saved policy here (missing {', '.join(missing)}; "
            f"expected config.json, {MODEL_FILE}, {PREPROCESSOR_FILE}, {POSTPROCESSOR_FILE})"
        )
    try:
        saved_cfg = GaussianActorConfig.from_pretrained(directory)
    except Exception as exc:  # another policy type, or a config.json that does not parse
        raise CheckpointError(f"{directory}/config.json is not a gaussian_actor config: {exc}") from None
    saved_cfg.device = device
    if expected_config is not None:
        problems = config_differences(saved_cfg, expected_config)
        if problems:
            raise CheckpointError(f"{directory} does not fit this study: " + "; ".join(problems))
    try:
        # lerobot prints "Loading weights from local directory": kept out of the executed notebooks, whose
        # output must not depend on whether a run started fresh or resumed from a checkpoint
        with contextlib.redirect_stdout(io.StringIO()):
            policy = GaussianActorPolicy.from_pretrained(directory, config=saved_cfg, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        detail = " ".join(str(exc).split())  # torch's message spans lines: one line, as every hilstudy error
        raise CheckpointError(f"{directory}: checkpoint does not match the policy it describes: {detail}") from None
    check_loaded(policy, load_file(str(directory / MODEL_FILE)), directory)
    try:
        pre, post = make_pre_post_processors(
            saved_cfg, pretrained_path=str(directory), preprocessor_overrides={"device_processor": {"device": device}}
        )
    except Exception as exc:
        raise CheckpointError(f"{directory}: the processor files do not load: {exc}") from None
    _check_processors(directory, saved_cfg, pre, post)
    policy.eval()
    return policy, pre, post


def saved_features(directory: str | Path) -> dict[str, Any]:
    """The input/output features recorded in a saved policy's config.json (for messages and checks)."""
    cfg = json.loads((Path(directory) / "config.json").read_text())
    return {"input_features": cfg.get("input_features"), "output_features": cfg.get("output_features")}
