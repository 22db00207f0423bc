"""Typed study parameters, loaded from `params.yaml` and validated before any compute.

One section per stage (`env`, `operator`, `demos`, ...). Every section is a frozen pydantic model that
forbids unknown keys and coerces nothing (a string is not an int), so a typo such as
`demos.num_episode` or `seed: "3"` fails at once with the dotted key named, before a single sim step
or a single file is touched.
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAMLError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_FILE = "params.yaml"
INTERACTIVE_ENV = "HILSTUDY_INTERACTIVE"  # set by `hilstudy record`: a person is at the real arm


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
    fast_sim: bool = True  # sim: gym-hil's controller compiled (hilstudy/fastsim.py), same trajectories bit for bit, ~3x faster
    lean_render: bool = True  # pixels: render policy images without shadows, reflections, haze and multisampling (~8x faster)
    render_mesh_faces: int = Field(1000, ge=0)  # pixels: triangles per mesh in the renderer's own copy of the model (physics keeps all); 0: all


class RealParams(Section):
    """The real arm (`env.kind: real`): a lerobot robot, the person's teleoperator, and the safety envelope.

    The policy's 4-D action moves an end-effector target (xyz: `env.action_scale` metres per unit, clipped to
    the `ee_min`..`ee_max` box and to `max_ee_step` per step) that inverse kinematics turn into joint goals,
    which the robot caps again at `max_joint_step` degrees per command. The person's teleoperator overrides
    the policy while its intervention button is held; its success key ends an episode as solved, its
    stop/failure key ends it and holds the arm, its re-record key ends it for recording again.
    """

    robot: str = Field("so101_follower", min_length=1)  # lerobot robot type (RobotConfig registry); hilstudy_mock_so101: no hardware
    port: str = "/dev/ttyACM0"  # the follower's serial port (`lerobot-find-port`); real robots only
    robot_id: str = Field("hilstudy_follower", min_length=1)  # calibration id (`lerobot-calibrate --robot.id=...`)
    robot_options: dict[str, Any] = {}  # further fields of the robot's lerobot config, e.g. {calibration_dir: ...}
    cameras: dict[str, int | str] = {"front": 0, "wrist": 1}  # camera name -> OpenCV index or device path (real robots)
    camera_width: int = Field(640, ge=16)  # requested camera frame width (pixels); frames are resized to env.image_size
    camera_height: int = Field(480, ge=16)  # requested camera frame height (pixels)
    camera_fps: int = Field(30, ge=1)  # requested camera frame rate
    teleop: str = Field("gamepad", min_length=1)  # lerobot teleoperator with end-effector deltas + events: gamepad | keyboard_ee
    teleop_options: dict[str, Any] = {}  # further fields of the teleoperator's lerobot config
    urdf_path: str = ""  # the arm's URDF for kinematics (SO101: SO-ARM100's so101_new_calib.urdf); "": hilstudy's mock arm
    target_frame: str = Field("gripper_frame_link", min_length=1)  # the end-effector frame in urdf_path
    ee_min: list[float] = [0.12, -0.20, 0.02]  # workspace box, low corner (m, robot base frame): the target never leaves it
    ee_max: list[float] = [0.38, 0.20, 0.25]  # workspace box, high corner (m)
    max_ee_step: float = Field(0.03, gt=0.0, le=0.1)  # most metres the end-effector target moves in one step
    max_joint_step: float = Field(10.0, gt=0.0, le=90.0)  # most degrees a joint goal moves in one command
    gripper_min: float = 0.0  # gripper position fully open (the robot's units: 0..100 on an SO-101)
    gripper_max: float = 100.0  # gripper position fully closed
    reset_joints: list[float] = [0.0, 0.0, 15.0, 30.0, 0.0, 0.0]  # joint positions at reset (degrees, gripper 0..100 last); set your arm's
    reset_time_s: float = Field(3.0, ge=0.0, le=120.0)  # seconds to move there (and for the person to reset the scene)
    fps: int = Field(10, ge=1, le=100)  # control rate (steps per second); steps are paced to it
    realtime: bool = True  # pace steps and resets to fps; false: as fast as the robot answers (the mock, tests)

    def urdf_problem(self) -> str | None:
        """Why this robot cannot be driven with these params' URDF, or None (only the mock arm ships one)."""
        if self.urdf_path or self.robot == "hilstudy_mock_so101":
            return None
        return (f"real.urdf_path: robot '{self.robot}' needs its URDF for the end-effector control (SO-101: "
                "so101_new_calib.urdf from the SO-ARM100 repository); only hilstudy_mock_so101 ships one")

    @model_validator(mode="after")
    def _check(self) -> RealParams:
        if len(self.ee_min) != 3 or len(self.ee_max) != 3:
            raise ValueError(f"real.ee_min and real.ee_max need 3 values (x, y, z), got {self.ee_min} and {self.ee_max}")
        if any(lo >= hi for lo, hi in zip(self.ee_min, self.ee_max)):
            raise ValueError(f"real.ee_min must be below real.ee_max on every axis, got {self.ee_min} and {self.ee_max}")
        if self.gripper_min >= self.gripper_max:
            raise ValueError(f"real.gripper_min ({self.gripper_min}) must be below real.gripper_max ({self.gripper_max})")
        return self


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
    checkpoint_every: int = Field(500, ge=1)  # steps between checkpoints (<out>/checkpoint.pt): a killed run resumes from the last


class ClassifierParams(Section):
    """Stage `classifier`: labelled sim frames -> a success classifier, HIL-SERL's per-step reward."""

    input: Literal["state", "images"] = "state"  # state: MLP on observation.state (fast; the default study's) | images: lerobot's CNN classifier on front+wrist
    seed: int = Field(0, ge=0)  # seeds the labelled episodes, the split, the init and the batches
    episodes: int = Field(40, ge=2, le=10_000)  # labelled operator episodes recorded into data/classifier/frames
    hold_steps: int = Field(10, ge=0, le=1000)  # steps the operator keeps the cube up after success (positive frames)
    drop_fraction: float = Field(0.5, ge=0.0, le=1.0)  # share of episodes where the operator then opens the gripper (the cube falls: hard negatives)
    val_episodes: int = Field(10, ge=1)  # whole episodes held out: every reported metric is on them
    hidden_dims: list[int] = Field([256, 256], min_length=1)  # state: MLP widths; images: the head width is the first
    steps: int = Field(1000, ge=1, le=1_000_000)  # gradient steps
    batch_size: int = Field(256, ge=2, le=65_536)  # frames per step
    lr: float = Field(3e-4, gt=0.0, le=1.0)  # AdamW learning rate
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)  # AdamW weight decay
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # dropout rate (training only)
    threshold: float | None = Field(None, gt=0.0, lt=1.0)  # P(success) above which the reward is 1; null: best F1 on the training frames
    backbone_channels: list[int] = Field([16, 32, 64, 128], min_length=1, max_length=8)  # images: widths of the from-scratch ResNet's stages (128x128 uses 4, 32x32 the first 2)
    train_backbone: bool = True  # images: train the backbone (it starts random); lerobot's classifier freezes it
    torch_threads: int = Field(1, ge=1, le=256)  # torch CPU threads for training

    @model_validator(mode="after")
    def _split_fits(self) -> ClassifierParams:  # checked here, not after recording the frames
        if self.val_episodes >= self.episodes:
            raise ValueError(f"classifier.val_episodes ({self.val_episodes}) must be smaller than classifier.episodes ({self.episodes})")
        return self


class FinetuneParams(Section):
    """Stage `finetune`: HIL-SERL-style SAC (or DrQ-v2) with the simulated operator, with or without a BC loss."""

    seed: int = Field(0, ge=0)  # torch/numpy/python seed; episode i resets with seed * 1_000_003 + i
    init: Literal["scratch", "bc"] = "bc"  # actor start: random, or the BC stage's weights (load verified)
    algorithm: Literal["sac", "drqv2"] = "sac"  # sac: lerobot's SAC (+ BC term) | drqv2: DrQ-v2 (hilstudy/agents/drqv2.py), the devlog's original
    n_step: int = Field(3, ge=1, le=50)  # drqv2: steps summed into each stored transition (n-step returns; sac uses 1)
    std_init: float = Field(1.0, ge=0.0, le=10.0)  # drqv2: exploration noise std at env step 0
    std_final: float = Field(0.1, ge=0.0, le=10.0)  # drqv2: exploration noise std after std_steps
    std_steps: int = Field(5000, ge=1)  # drqv2: env steps of the linear std schedule
    std_clip: float = Field(0.3, ge=0.0, le=10.0)  # drqv2: noise clip in the critic target and the actor loss
    bc_weight: float = Field(0.0, ge=0.0, le=100.0)  # BC loss weight on intervention transitions (0: plain SAC)
    bc_mode: Literal["fixed", "q_normalized"] = "fixed"  # devlog's L_SAC + w*MSE, or TD3+BC's Q-normalized weighting
    bc_alpha: float = Field(2.5, gt=0.0)  # TD3+BC alpha for q_normalized
    reward: Literal["terminal", "episode_end", "classifier"] = "terminal"  # terminal: the sim's per-step success check (1 on the step the cube is up, which ends the episode) | episode_end: judged once at the time limit | classifier: the classifier stage's verdict every step (only through runs.classifier_from_*)
    interventions: bool = True  # the simulated operator may take over (False: no human in the loop)
    takeover_is_failure: bool = True  # the policy's transition before a takeover ends its attempt (done, reward 0)
    env_steps: int = Field(8000, ge=1, le=10_000_000)  # environment steps of fine-tuning
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
    eval_every: int = Field(2000, ge=1)  # env steps between evaluations (deterministic: alone, and with the operator)
    eval_episodes: int = Field(20, ge=0, le=1000)  # episodes per evaluation (success in steps of 1/eval_episodes)
    eval_seed: int = Field(200_000, ge=0)  # first evaluation seed; run seed s evaluates on eval_seed + 1000 s + i, the same at every evaluation
    eval_with_operator: bool = True  # also evaluate the deterministic policy with the operator in the loop: its intervention rate
    checkpoint_every: int = Field(1000, ge=1)  # env steps between checkpoints (taken at the next episode end)
    log_every: int = Field(50, ge=1)  # updates averaged into one logged point
    torch_threads: int = Field(1, ge=1, le=256)  # torch CPU threads for the run (1: fastest for these nets on few cores)
    overlap: bool = True  # the learner update runs in a thread beside the env step; results bit-identical to false
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # the learner's torch device; auto: cuda when present. CPU: tested, reproducible

    @model_validator(mode="after")
    def _drqv2_fits(self) -> FinetuneParams:  # checked before anything runs
        if self.std_final > self.std_init:
            raise ValueError(f"finetune.std_final ({self.std_final}) must not exceed finetune.std_init ({self.std_init})")
        if self.algorithm == "drqv2" and self.bc_mode != "fixed":
            raise ValueError("finetune.bc_mode must be 'fixed' with algorithm drqv2 (q_normalized rescales SAC's entropy-regularized loss)")
        return self


RUN_NAME = r"[a-z0-9][a-z0-9_-]{0,63}"  # a run's name is part of stage names, folder names and shell commands: the whole name must match
RUN_FIXED_KEYS = ("seed", "init")  # set by the matrix (seeds) and by the run's group (init; reward in classifier groups)
# run group -> (init, reward, DVC stage group): a group fixes what its stages depend on (the BC actor, the
# classifier). reward None: the run's own `reward` (terminal or episode_end, which need no input file)
RUN_GROUPS = {
    "from_scratch": ("scratch", None, "ft-scratch"),
    "from_bc": ("bc", None, "ft-bc"),
    "classifier_from_scratch": ("scratch", "classifier", "ft-scratch-clf"),
    "classifier_from_bc": ("bc", "classifier", "ft-bc-clf"),
}
# what a run summary reports and a hypothesis may decide on (hilstudy.report.run_summary)
DECIDING_METRICS = (
    "eval_success_start",  # deterministic evaluation success at env step 0: what the start (scratch, BC) is worth
    "eval_success_final",  # deterministic evaluation success at the end of the run
    "eval_success_mean",  # mean over the evaluations after step 0 (area under the learning curve: learning speed)
    "eval_intervention_rate_mean",  # the deterministic policy with the operator in the loop, evaluations after step 0
    "eval_intervention_rate_final",  # ... at the end of the run: how much help the learned policy needs
    "eval_jitter_mean",  # mean |a_t - a_t-1| of the deterministic policy alone, evaluations after step 0
    "intervention_rate_last20",  # intervened share of steps, last 20 training episodes (exploration included)
    "intervention_rate_mean",  # over all training episodes: the operator's workload during training
    "success_last20",  # training-episode success with the operator, last 20 episodes
    "jitter_last20",  # mean |a_t - a_t-1|, last 20 training episodes (devlog 059's "shaking", exploration included)
)


class RunsParams(Section):
    """The fine-tuning runs: `finetune` plus each run's overrides, repeated over `seeds`.

    DVC expands stage groups `ft-scratch` (runs under `from_scratch`) and `ft-bc` (under `from_bc`, which
    start from the BC stage's actor) into one stage per run x seed, each writing
    `data/finetune/<run>-s<seed>/`. A run shared by several devlogs runs once.
    """

    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=1)  # every run is repeated with each of these seeds
    replicate_inputs: bool = True  # each seed records its own demos and classifier frames and trains its own BC actor and classifier (false: all seeds' inputs are made from the base seeds, the same bytes)
    from_scratch: dict[str, dict[str, Any]] = {}  # run name -> `finetune` overrides; the actor starts random
    from_bc: dict[str, dict[str, Any]] = {}  # run name -> `finetune` overrides; the actor starts from its seed's BC actor (data/bc/s<seed>/policy)
    classifier_from_scratch: dict[str, dict[str, Any]] = {}  # as from_scratch, rewarded by the classifier stage's model every step
    classifier_from_bc: dict[str, dict[str, Any]] = {}  # as from_bc, rewarded by the classifier stage's model every step


class HypothesisParams(Section):
    """One hypothesis of a devlog: treatment runs vs control runs (paired in order, and by seed)."""

    claim: str = Field(min_length=1)  # what is claimed, in words
    treatment: list[str] = []  # runs with the change (paired with `control` in order)
    control: list[str] = []  # runs without it
    metrics: dict[str, Literal["higher", "lower"]] = {}  # metric -> the direction the claim predicts
    margin: float = Field(0.05, ge=0.0)  # smallest effect that matters: shown below it, "not supported"; seeds are planned to detect it
    stronger_than: list[str] = []  # other hypotheses of the devlog whose effect this one claims to exceed (same metrics, seed by seed)
    pending: str | None = None  # why it cannot be decided yet (e.g. needs a stage that does not exist)


class DevlogParams(Section):
    """A devlog experiment: the runs it compares, its hypotheses, and how confident a verdict must be."""

    title: str = Field(min_length=1)  # one line
    runs: list[str] = Field(min_length=1)  # runs (names under `runs`) its report shows
    hypotheses: dict[str, HypothesisParams] = {}  # id (e.g. H1) -> hypothesis, registered before running
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # 1 - alpha of each hypothesis' one-sided exact tests (hilstudy.stats)
    bootstrap_reps: int = Field(2000, ge=100, le=200_000)  # resamples of the per-run IQM interval (rliable; shown from 10 seeds)


class StudyParams(Section):
    """The whole params.yaml: one section per stage."""

    env: EnvParams = EnvParams()
    real: RealParams = RealParams()
    operator: OperatorParams = OperatorParams()
    demos: DemosParams = DemosParams()
    policy: PolicyParams = PolicyParams()
    bc: BCParams = BCParams()
    classifier: ClassifierParams = ClassifierParams()
    finetune: FinetuneParams = FinetuneParams()
    runs: RunsParams = RunsParams()
    devlogs: dict[str, DevlogParams] = {}  # devlog id (e.g. "059") -> its experiment (report stage `report@<id>`)

    @model_validator(mode="after")
    def _check_real(self) -> StudyParams:
        problem = self.real.urdf_problem()
        if self.env.kind == "real" and problem:
            raise ValueError(problem)
        return self


SECTIONS: tuple[str, ...] = tuple(StudyParams.model_fields)


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(options)})"


def _model_at(loc: tuple, root: type[BaseModel] | None = None) -> type[BaseModel] | None:
    """The model that owns the field at a pydantic error location (for key suggestions); walks through
    `dict[str, Model]` fields such as `devlogs`."""
    model: type[BaseModel] = root or StudyParams
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = field.annotation if field else None
        if typing.get_origin(ann) is dict and parts:
            ann = typing.get_args(ann)[1]
            parts.pop(0)  # the dict key (a devlog id, a hypothesis id)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def format_errors(err: ValidationError, source: str, root: type[BaseModel] | None = None, prefix: str = "") -> str:
    """One line per error: `source: dotted.key: what is wrong`; `root` is the model validated (default the
    whole study), `prefix` what to put before its keys."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        key = prefix + ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            model = _model_at(loc, root)
            hint = _suggest(str(loc[-1]), list(model.model_fields)) if model else ""
            lines.append(f"{source}: {key}: unknown key{hint}")
        elif e["type"] == "value_error" and isinstance(e.get("input"), dict):  # a section's own check: it names its keys
            lines.append(f"{source}: {e['msg'].removeprefix('Value error, ')}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r}, a {type(got).__name__})"
            lines.append(f"{source}: {key}: {e['msg']}{got_s}")
    return "\n".join(lines)


def yaml_load(text: str) -> Any:
    """YAML 1.2, as DVC reads params.yaml (ruamel), so hilstudy and DVC see the same values: PyYAML's
    YAML 1.1 reads `lr: 1e-3` as a string and `059:` as a string, DVC as a float and the int 59."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def parse_value(text: str) -> Any:
    """A command-line value as YAML: `5` is an int, `0.5` a float, `true` a bool, `[1, 2]` a list."""
    return yaml_load(text) if text.strip() else text


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
        raw = yaml_load(path.read_text()) or {}
    except YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def validate(raw: dict, source: str = PARAMS_FILE) -> StudyParams:
    """Validate a raw params mapping; raise ParamsError naming every bad key."""
    problems = _check_names(raw, source)
    if problems:
        raise ParamsError("\n".join(problems))
    try:
        study = StudyParams.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(format_errors(err, source)) from None
    problems = _check_runs(study, source) + _check_devlogs(study, source)
    if problems:
        raise ParamsError("\n".join(problems))
    return study


def _check_names(raw: dict, source: str) -> list[str]:
    """Devlog ids and run names are strings: YAML reads an unquoted `059:` as the number 59."""
    problems = []
    groups = [("devlogs", raw.get("devlogs"))]
    runs = raw.get("runs")
    if isinstance(runs, dict):
        groups += [(f"runs.{g}", runs.get(g)) for g in RUN_GROUPS]
    for where, mapping in groups:
        if isinstance(mapping, dict):
            for key in mapping:
                if not isinstance(key, str):
                    problems.append(f"{source}: {where}: name {key!r} is a {type(key).__name__}: quote it "
                                    f"(e.g. \"{key}\"; YAML reads 059 as the number 59)")
    return problems


def run_groups(study: StudyParams) -> dict[str, str]:
    """run name -> its group under `runs` (from_scratch, from_bc, classifier_from_scratch, ...)."""
    return {name: group for group in RUN_GROUPS for name in getattr(study.runs, group)}


def all_runs(study: StudyParams) -> dict[str, tuple[str, dict[str, Any]]]:
    """run name -> (init, overrides), over all groups."""
    return {name: (RUN_GROUPS[g][0], getattr(study.runs, g)[name]) for name, g in run_groups(study).items()}


def run_stage(study: StudyParams, run: str, seed: int) -> str:
    """The DVC stage that makes run x seed, e.g. ft-bc@bcinit-0."""
    return f"{RUN_GROUPS[run_groups(study)[run]][2]}@{run}-{seed}"


def _check_runs(study: StudyParams, source: str) -> list[str]:
    """Each run's overrides must make a valid `finetune` section; names must be unique and path-safe."""
    problems = []
    seen: dict[str, str] = {}
    for group in RUN_GROUPS:
        for name in getattr(study.runs, group):
            if name in seen:
                problems.append(f"{source}: runs: run '{name}' is in both {seen[name]} and {group} (names must be unique)")
            seen.setdefault(name, group)
    base = study.finetune.model_dump()
    for group in RUN_GROUPS:
        for name, overrides in getattr(study.runs, group).items():
            where = f"runs.{group}.{name}"
            if not re.fullmatch(RUN_NAME, name):
                problems.append(f"{source}: {where}: a run name must match {RUN_NAME} (it names stages and folders)")
            for key in overrides:
                if key in RUN_FIXED_KEYS:
                    problems.append(f"{source}: {where}.{key}: set by the study, not per run "
                                    "(seed: runs.seeds; init: the run's group, e.g. from_bc or from_scratch)")
            fixed_reward = RUN_GROUPS[group][1]
            if fixed_reward is not None and "reward" in overrides:
                problems.append(f"{source}: {where}.reward: set by the run's group ({group}: {fixed_reward}), not per run")
            elif fixed_reward is None and overrides.get("reward", study.finetune.reward) == "classifier":
                key = f"{where}.reward" if "reward" in overrides else "finetune.reward"
                problems.append(f"{source}: {key}: a classifier-rewarded run belongs under runs.classifier_from_scratch "
                                "or runs.classifier_from_bc (their stages depend on the classifier); here: terminal or episode_end")
            try:
                FinetuneParams.model_validate({**base, **{k: v for k, v in overrides.items() if k not in RUN_FIXED_KEYS}})
            except ValidationError as err:
                problems.extend(format_errors(err, source, root=FinetuneParams, prefix=f"{where}.").splitlines())
    return problems


def _check_devlogs(study: StudyParams, source: str) -> list[str]:
    """A devlog may only name runs that exist, and its hypotheses only runs of the devlog."""
    problems = []
    known = all_runs(study)
    for did, d in study.devlogs.items():
        where = f"devlogs.{did}"
        if not re.fullmatch(RUN_NAME, did):
            problems.append(f"{source}: {where}: a devlog id must match {RUN_NAME} (it names a stage and a folder)")
        unknown_runs = [r for r in d.runs if r not in known]
        for r in unknown_runs:
            problems.append(f"{source}: {where}.runs: unknown run '{r}'{_suggest(r, sorted(known))}")
        for hid, h in d.hypotheses.items():
            hw = f"{where}.hypotheses.{hid}"
            if h.pending is not None:
                continue
            if not h.treatment or len(h.treatment) != len(h.control):
                problems.append(f"{source}: {hw}: treatment and control must be non-empty lists of equal length "
                                "(paired in order), or set `pending` with the reason it cannot be decided yet")
            if not h.metrics:
                problems.append(f"{source}: {hw}.metrics: name at least one metric ({', '.join(DECIDING_METRICS)})")
            for r in [*h.treatment, *h.control]:
                if r not in d.runs and not unknown_runs:  # with a misspelt run in .runs, that one error says it
                    problems.append(f"{source}: {hw}: run '{r}' is not in {where}.runs{_suggest(r, list(d.runs))}")
            for m in h.metrics:
                if m not in DECIDING_METRICS:
                    problems.append(f"{source}: {hw}.metrics.{m}: unknown metric{_suggest(m, list(DECIDING_METRICS))}")
            for other in h.stronger_than:
                o = d.hypotheses.get(other)
                if o is None or other == hid:
                    problems.append(f"{source}: {hw}.stronger_than: '{other}' is not another hypothesis of {where}"
                                    f"{_suggest(other, [k for k in d.hypotheses if k != hid])}")
                elif o.pending is not None:
                    problems.append(f"{source}: {hw}.stronger_than: '{other}' is pending; it has no effect to compare with")
                else:
                    for m in h.metrics:
                        if m in DECIDING_METRICS and m not in o.metrics:  # an unknown metric is reported once, above
                            problems.append(f"{source}: {hw}.stronger_than: '{other}' does not measure {m}")
    return problems


def run_params(study: StudyParams, run: str, seed: int | None = None) -> StudyParams:
    """The study params with `finetune` as run `run` sees it: the section, the run's overrides, its init,
    and `seed` (default: finetune.seed as given)."""
    groups = run_groups(study)
    if run not in groups:
        raise ParamsError(f"unknown run '{run}'{_suggest(run, sorted(groups))}")
    init, reward, _ = RUN_GROUPS[groups[run]]
    ft = {**study.finetune.model_dump(), **getattr(study.runs, groups[run])[run], "init": init}
    if reward is not None:
        ft["reward"] = reward
    if seed is not None:
        ft["seed"] = seed
    return study.model_copy(update={"finetune": FinetuneParams.model_validate(ft)})


DEMO_SEED_STRIDE = 10_000  # seed k's demo attempts start at demos.seed + k * stride (at most 3 x num_episodes attempts)
BC_EVAL_SEED_STRIDE = 1_000  # seed k's BC evaluation episodes start at bc.eval_seed + k * stride


def input_params(study: StudyParams, input_seed: int) -> StudyParams:
    """The params of seed `input_seed`'s inputs (stages demos@k, bc@k, classifier@k): with
    `runs.replicate_inputs`, every seed of its own (demo episodes, BC's initialization, batches and evaluation
    episodes, the classifier's frames and training), so a verdict's seed-to-seed spread includes what a new demo
    set, BC actor and classifier bring; without, the base seeds' for every k. Seed 0's inputs are the base ones
    either way."""
    if not study.runs.replicate_inputs or input_seed == 0:
        return study
    k = input_seed
    if study.demos.num_episodes * 3 > DEMO_SEED_STRIDE:
        raise ParamsError(f"demos.num_episodes: at most {DEMO_SEED_STRIDE // 3} with runs.replicate_inputs (seeds' demo episodes would overlap)")
    return study.model_copy(update={
        "demos": study.demos.model_copy(update={"seed": study.demos.seed + k * DEMO_SEED_STRIDE}),
        "bc": study.bc.model_copy(update={"seed": study.bc.seed + k, "eval_seed": study.bc.eval_seed + k * BC_EVAL_SEED_STRIDE}),
        "classifier": study.classifier.model_copy(update={"seed": study.classifier.seed + k}),
    })  # fmt: skip


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
    return params.model_dump(mode="json")[name]
