"""Typed study parameters, loaded from `params.yaml` and validated before any compute.

One section per stage (`env`, `operator`, `demos`, ...). Every section is a frozen pydantic model that
forbids unknown keys and coerces nothing (a string is not an int), so a typo such as
`demos.num_episode` or `seed: "3"` fails at once with the dotted key named, before a single sim step
or a single file is touched.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """A params file or override that does not match the schema. The message names every bad key."""


class Section(BaseModel):
    """Base of every params section: frozen, strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


class EnvParams(Section):
    """The world the study acts in: gym-hil's MuJoCo pick-cube (default) or a real lerobot arm."""

    kind: Literal["sim", "real"] = "sim"  # sim: gym-hil MuJoCo Panda pick-cube; real: a lerobot robot + teleoperator
    obs: Literal["state", "pixels"] = "state"  # state: one flat normalized vector; pixels: that vector + front/wrist images
    image_size: int = Field(128, ge=32, le=512)  # side of the square camera images (pixels), when obs is pixels
    random_cube: bool = True  # sample the cube's xy position at every reset (from the episode seed)
    action_scale: float = Field(0.025, gt=0.0, le=0.1)  # metres the end effector target moves per unit xyz action
    max_episode_steps: int = Field(100, ge=1, le=10_000)  # time limit in control steps (10 Hz): then `truncated`


class OperatorParams(Section):
    """The simulated human: a scripted expert plus the rule that decides when it takes over."""

    noise_std: float = Field(0.1, ge=0.0, le=1.0)  # std of Gaussian noise on the expert's xyz action (seeded)
    no_progress_steps: int = Field(10, ge=1, le=1000)  # take over when task progress has not improved for this many steps
    progress_eps: float = Field(0.005, ge=0.0, le=0.1)  # improvement (metres) below which a step counts as no progress
    harmful_gripper: bool = True  # take over when the policy closes far from the cube or opens while holding it
    budget_steps: int = Field(50, ge=0, le=10_000)  # most intervention steps per episode (0: never intervene)
    takeover_steps: int = Field(15, ge=1, le=1000)  # how many steps one takeover lasts before control returns
    reaction_delay_max: int = Field(2, ge=0, le=100)  # steps between trigger and takeover, uniform in [0, max], seeded


class DemosParams(Section):
    """Demonstration recording: the operator drives every step of every episode."""

    seed: int = Field(0, ge=0)  # base seed: episode i resets with seed + i (cube position, noise)
    num_episodes: int = Field(20, ge=1, le=10_000)  # episodes written to the dataset
    keep_failed: bool = False  # keep episodes that did not succeed (else re-record them, with a fresh seed)
    task: str = Field("Pick up the cube and lift it.", min_length=1)  # task string stored with every frame
    repo_id: str = Field("hilstudy/pick_cube_demos", pattern=r"^[\w.-]+/[\w.-]+$")  # dataset name (never pushed)


class PolicyParams(Section):
    """The networks, shared by BC and fine-tuning so that BC weights load into the fine-tuned actor."""

    actor_hidden_dims: list[int] = Field([256, 256], min_length=1)  # actor MLP widths (lerobot GaussianActor)
    critic_hidden_dims: list[int] = Field([256, 256], min_length=1)  # critic MLP widths (each ensemble member)
    num_critics: int = Field(2, ge=1, le=20)  # critic ensemble size (RLPD uses 10)
    latent_dim: int = Field(256, ge=8, le=4096)  # observation encoder output size (state: Linear+LayerNorm+Tanh to this)
    state_encoder_hidden_dim: int = Field(256, ge=8, le=4096)  # INERT in lerobot 0.6.1 (its state encoder is Linear(state, latent_dim)); kept in config.json
    image_encoder_hidden_dim: int = Field(32, ge=4, le=1024)  # conv channels of the from-scratch image encoder
    shared_encoder: bool = True  # actor and critic share the observation encoder (lerobot's default)


class BCParams(Section):
    """Stage `bc`: behaviour cloning of the actor on the demos (critic frozen), as devlog 059's update did."""

    seed: int = Field(0, ge=0)  # torch/numpy seed for init, batches and the train/val split
    steps: int = Field(2000, ge=1, le=1_000_000)  # gradient steps
    batch_size: int = Field(256, ge=1, le=65_536)  # frames per step
    lr: float = Field(3e-4, gt=0.0, le=1.0)  # Adam learning rate
    val_episodes: int = Field(4, ge=1)  # whole demo episodes held out for validation
    val_every: int = Field(50, ge=1)  # steps between validation-loss evaluations
    eval_episodes: int = Field(20, ge=0, le=10_000)  # sim episodes for the success rate (0: skip)
    eval_seed: int = Field(100_000, ge=0)  # first seed of the evaluation episodes (apart from demo seeds)
    torch_threads: int = Field(1, ge=1, le=256)  # torch CPU threads while BC runs; the losses depend on it (reductions split per thread)


class FinetuneParams(Section):
    """Stage `finetune`: HIL-SERL-style SAC with the simulated operator, with or without a BC loss."""

    seed: int = Field(0, ge=0)  # torch/numpy/python seed; episode i resets with seed * 1_000_003 + i
    init: Literal["scratch", "bc"] = "bc"  # actor start: random, or the BC stage's weights (load verified)
    bc_weight: float = Field(0.0, ge=0.0, le=100.0)  # BC loss weight on intervention transitions (0: plain SAC)
    bc_mode: Literal["fixed", "q_normalized"] = "fixed"  # devlog's L_SAC + w*MSE, or TD3+BC's Q-normalized weighting
    bc_alpha: float = Field(2.5, gt=0.0)  # TD3+BC alpha for q_normalized
    reward: Literal["terminal"] = "terminal"  # reward source: the sim's sparse terminal reward (classifier: issue 7)
    interventions: bool = True  # the simulated operator may take over (False: no human in the loop)
    takeover_is_failure: bool = True  # the policy's transition before a takeover ends its attempt (done, reward 0)
    env_steps: int = Field(10_000, ge=1, le=10_000_000)  # environment steps of fine-tuning
    learning_starts: int = Field(300, ge=0)  # env steps collected before the first update
    actor_warmup_updates: int = Field(0, ge=0)  # first updates train only the critics (protects a BC start)
    utd_ratio: int = Field(1, ge=1, le=100)  # critic updates per env step (RLPD uses 20)
    batch_size: int = Field(256, ge=2, le=65_536)  # transitions per update, half online half offline
    online_ratio: float = Field(0.5, ge=0.0, le=1.0)  # share of each batch from the online buffer (RLPD: 0.5)
    discount: float = Field(0.97, gt=0.0, le=1.0)  # SAC discount
    temperature_init: float = Field(0.01, gt=0.0, le=10.0)  # initial entropy temperature
    actor_lr: float = Field(3e-4, gt=0.0, le=1.0)  # actor Adam learning rate
    critic_lr: float = Field(3e-4, gt=0.0, le=1.0)  # critic Adam learning rate
    temperature_lr: float = Field(3e-4, gt=0.0, le=1.0)  # temperature Adam learning rate
    buffer_capacity: int = Field(100_000, ge=1000)  # online buffer size (transitions)
    eval_every: int = Field(1000, ge=1)  # env steps between evaluations (deterministic, no operator)
    eval_episodes: int = Field(10, ge=0)  # episodes per evaluation
    eval_seed: int = Field(200_000, ge=0)  # first seed of the evaluation episodes (the same at every evaluation)
    checkpoint_every: int = Field(1000, ge=1)  # env steps between checkpoints (taken at the next episode end)
    log_every: int = Field(50, ge=1)  # updates averaged into one logged point
    torch_threads: int = Field(1, ge=1, le=256)  # torch CPU threads for the run (1: fastest for these nets on few cores)


class VariantsParams(Section):
    """The fine-tuning matrix DVC expands: stage groups `ft-scratch` and `ft-bc` (the two inits), each over
    bc_weight x seed. The matrix values override finetune.bc_weight / finetune.seed / finetune.init."""

    bc_weight: list[float] = Field([0.0, 0.5], min_length=1)  # BC loss weights (0: plain SAC; devlog: 0.5)
    seed: list[int] = Field([0, 1, 2], min_length=1)  # seeds per variant


class StudyParams(Section):
    """The whole params.yaml: one section per stage."""

    env: EnvParams = EnvParams()
    operator: OperatorParams = OperatorParams()
    demos: DemosParams = DemosParams()
    policy: PolicyParams = PolicyParams()
    bc: BCParams = BCParams()
    finetune: FinetuneParams = FinetuneParams()
    variants: VariantsParams = VariantsParams()


SECTIONS: tuple[str, ...] = tuple(StudyParams.model_fields)


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(options)})"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The section model that owns the field at a pydantic error location (for key suggestions)."""
    model: type[BaseModel] = StudyParams
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = _suggest(str(loc[-1]), list(model.model_fields)) if model else ""
            lines.append(f"{source}: {key}: unknown key{hint}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r}, a {type(got).__name__})"
            lines.append(f"{source}: {key}: {e['msg']}{got_s}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """A command-line value as YAML: `5` is an int, `0.5` a float, `true` a bool, `[1, 2]` a list."""
    return yaml.safe_load(text) if text.strip() else text


def apply_overrides(raw: dict, overrides: dict[str, Any] | None) -> dict:
    """Return a copy of `raw` with dotted-key overrides applied, e.g. {"demos.num_episodes": 5}."""
    out = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        parts = dotted.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ParamsError(f"override {dotted}: '{p}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def validate(raw: dict, source: str = PARAMS_FILE) -> StudyParams:
    """Validate a raw params mapping; raise ParamsError naming every bad key."""
    try:
        return StudyParams.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(format_errors(err, source)) from None


def load(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> StudyParams:
    """Load and validate the study's params file, with optional dotted-key overrides."""
    return validate(apply_overrides(read_yaml(path), overrides), source=str(path))


def find_params_file(start: str | Path | None = None) -> Path:
    """params.yaml in `start` (default: cwd) or its nearest parent: notebooks opened by hand find it."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PARAMS_FILE).exists():
            return d / PARAMS_FILE
    raise ParamsError(f"no {PARAMS_FILE} in {here} or any parent folder")


def project_root(start: str | Path | None = None) -> Path:
    """The folder holding params.yaml: the root that every `data/...` path is relative to."""
    return find_params_file(start).parent


def resolve(params_file: str | Path | None = None, **sections: dict | None) -> StudyParams:
    """What a notebook calls with its `parameters` cell: each section papermill injected (a dict) is laid
    over the same section of params.yaml; a section left as None is read from params.yaml as is.

    Opened by hand in JupyterLab, the notebook therefore runs on the project's params.yaml.
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ParamsError(f"unknown params section(s): {', '.join(unknown)}{_suggest(unknown[0], list(SECTIONS))}")
    path = Path(params_file) if params_file else find_params_file()
    raw = read_yaml(path)
    for name, given in sections.items():
        if given is None:
            continue
        if not isinstance(given, dict):
            raise ParamsError(f"section {name}: expected a mapping, got {type(given).__name__}")
        merged = dict(raw.get(name) or {})
        merged.update(given)
        raw[name] = merged
    return validate(raw, source=str(path))


def section_dict(params: StudyParams, name: str) -> dict:
    """One section as a plain dict (what the notebook runner injects)."""
    return getattr(params, name).model_dump(mode="json")
