"""Bad input, systematically: one table, each case a clear one-line error naming what is wrong, raised before
any compute, with the stage's earlier outputs left as they were (issue 11).

Each case calls the entry point a stage's notebook calls (`params.load`, `train_bc`, `finetune`,
`run_classifier`, `load_classifier`, the notebook runner) on real files: a params file edited in one place,
a real LeRobotDataset, saved lerobot policies and classifiers. Where a stage has an output folder, it holds
a previous result (a sentinel file and a metrics.json) that must survive the failed call byte for byte.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hilstudy import params as P
from hilstudy.bc import bc_loss, train_bc
from hilstudy.demos import dataset_features, record_demos
from hilstudy.finetune import finetune
from hilstudy.policy import CheckpointError, make_policy, make_policy_config, save_policy, to_policy_batch
from hilstudy.reward import ClassifierError, load_classifier, run_classifier
from hilstudy.runner import NotebookError, run_notebook
from hilstudy.sim import make_env

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "demos": {"num_episodes": 3},
    "bc": {"steps": 20, "batch_size": 32, "val_episodes": 1, "eval_episodes": 0},
    "policy": {"actor_hidden_dims": [32], "critic_hidden_dims": [32], "latent_dim": 32, "state_encoder_hidden_dim": 32},
    "finetune": {"env_steps": 50, "learning_starts": 20, "batch_size": 16, "eval_episodes": 0, "init": "scratch"},
    "classifier": {"episodes": 3, "hold_steps": 2, "val_episodes": 1, "steps": 20, "batch_size": 16, "hidden_dims": [16]},
}


def tiny(**sections) -> P.StudyParams:
    raw = {k: dict(v) for k, v in TINY.items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return P.validate(raw)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Real inputs: demos (state), a BC-sized pixel policy, a state classifier, and a demos copy with actions x3."""
    root = tmp_path_factory.mktemp("bad")
    record_demos(tiny(), root / "demos", progress=False)
    run_classifier(tiny(), root / "clf")
    with make_env(P.EnvParams(obs="pixels", image_size=64)) as env:
        pix_policy, pre, post = make_policy(make_policy_config(dataset_features(env), tiny().policy))
    save_policy(pix_policy, pre, post, root / "pixel_policy")
    shutil.copytree(root / "demos", root / "demos_x3")
    for f in (root / "demos_x3" / "data").rglob("*.parquet"):
        df = pd.read_parquet(f)
        df["action"] = [np.asarray(a) * 3.0 for a in df["action"]]  # an unscaled teleop command: metres, not [-1, 1]
        df.to_parquet(f)
    return {"root": root, "demos": root / "demos", "demos_x3": root / "demos_x3", "clf": root / "clf" / "model",
            "pixel_policy": root / "pixel_policy"}  # fmt: skip


def params_file(tmp: Path, edit: Callable[[str], str]) -> Path:
    """The project's params.yaml with one textual edit (as a user would make it)."""
    text = (ROOT / "params.yaml").read_text()
    changed = edit(text)
    assert changed != text, "the edit must change the file"
    path = tmp / "params.yaml"
    path.write_text(changed)
    return path


def replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


def load_edited(old: str, new: str) -> Callable[[Path, dict], None]:
    return lambda tmp, files: P.load(params_file(tmp, replace(old, new)))


def x255_batch(tmp, files):
    with make_env(P.EnvParams(obs="pixels", image_size=64)) as env:
        obs, _ = env.reset(seed=0)
        policy, _, _ = make_policy(make_policy_config(dataset_features(env), tiny().policy))
    batch = {k: v.unsqueeze(0) for k, v in to_policy_batch(obs).items()}
    batch = {k: (v * 255 if "images" in k else v) for k, v in batch.items()}  # devlog 059's x255 bug
    bc_loss(policy, batch, torch.zeros(1, 4))


def uint8_frame(tmp, files):
    to_policy_batch({"observation.images.front": np.zeros((3, 64, 64), dtype=np.float32)})  # CHW float, not HWC uint8


def incomplete_classifier(tmp, files):
    broken = tmp / "clf"
    shutil.copytree(files["clf"], broken)
    (broken / "model.safetensors").unlink()
    load_classifier(broken)


def bc_from_another_layout(tmp, files):
    finetune(tiny(finetune={"init": "bc"}), files["demos"], tmp / "out", bc_dir=files["pixel_policy"])


def tampered_bc_weights(tmp, files):
    from safetensors.torch import load_file, save_file

    bad = tmp / "bc"
    with make_env(P.EnvParams()) as env:
        policy, pre, post = make_policy(make_policy_config(dataset_features(env), tiny().policy))
    save_policy(policy, pre, post, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    key = next(k for k in sorted(tensors) if "actor" in k and k.endswith("weight"))
    tensors[key] = tensors[key][:, :-1].contiguous()  # a layer of another width
    save_file(tensors, str(bad / "model.safetensors"))
    finetune(tiny(finetune={"init": "bc"}), files["demos"], tmp / "out", bc_dir=bad)


def classifier_for_other_cameras(tmp, files):
    with make_env(P.EnvParams(obs="pixels", image_size=64)) as env:
        config = make_policy_config(dataset_features(env), tiny().policy)
    load_classifier(files["clf"], expected_inputs=config.input_features)


def unknown_notebook_parameter(tmp, files):
    run_notebook(ROOT / "notebooks" / "20_bc.py", tmp / "out" / "notebook.ipynb", overrides={"bc_wieght": 1},
                 params_file=ROOT / "params.yaml")  # fmt: skip


# (id, call, exception type, text the one-line message must contain, output folder that must survive or None)
CASES = [
    # params: named before anything runs
    ("misspelt key", load_edited("  bc_weight: 0.0 ", "  bc_wieght: 0.0 "), P.ParamsError,
     "finetune.bc_wieght: unknown key (did you mean 'bc_weight'?)", None),
    ("misspelt section", load_edited("\nfinetune:", "\nfinetun:"), P.ParamsError, "finetun: unknown key (did you mean 'finetune'?)", None),
    ("text for an int", load_edited("env_steps: 8000 ", "env_steps: ten "), P.ParamsError,
     "finetune.env_steps: Input should be a valid integer", None),
    ("float for an int", load_edited("  steps: 2000", "  steps: 2000.5"), P.ParamsError, "bc.steps: Input should be a valid integer", None),
    ("out of range", load_edited("online_ratio: 0.5", "online_ratio: 1.5"), P.ParamsError,
     "finetune.online_ratio: Input should be less than or equal to 1", None),
    ("unknown device", load_edited("device: cpu ", "device: gpu "), P.ParamsError,
     "finetune.device: Input should be 'cpu', 'cuda' or 'auto'", None),
    ("unknown choice", load_edited("obs: state ", "obs: rgb "), P.ParamsError, "env.obs: Input should be 'state' or 'pixels'", None),
    ("negative weight", load_edited("scratch-bcloss: {bc_weight: 0.5}", "scratch-bcloss: {bc_weight: -0.5}"), P.ParamsError,
     "runs.from_scratch.scratch-bcloss.bc_weight: Input should be greater than or equal to 0", None),
    ("misspelt run key", load_edited("scratch-bcloss: {bc_weight: 0.5}", "scratch-bcloss: {bc_wieght: 0.5}"), P.ParamsError,
     "runs.from_scratch.scratch-bcloss.bc_wieght: unknown key (did you mean 'bc_weight'?)", None),
    ("run sets its seed", load_edited("scratch-bcloss: {bc_weight: 0.5}", "scratch-bcloss: {bc_weight: 0.5, seed: 3}"), P.ParamsError,
     "runs.from_scratch.scratch-bcloss.seed: set by the study, not per run", None),
    ("classifier reward outside its group", load_edited("scratch-bcloss: {bc_weight: 0.5}", "scratch-bcloss: {bc_weight: 0.5, reward: classifier}"),
     P.ParamsError, "runs.from_scratch.scratch-bcloss.reward: a classifier-rewarded run belongs under runs.classifier_from_scratch", None),
    ("devlog names an unknown variant", load_edited("runs: [scratch, scratch-bcloss,", "runs: [scratch, scratch-bclos,"), P.ParamsError,
     "devlogs.059.runs: unknown run 'scratch-bclos' (did you mean 'scratch-bcloss'?)", None),
    ("unknown deciding metric", load_edited("metrics: {eval_success_mean: higher}", "metrics: {eval_sucess_mean: higher}"), P.ParamsError,
     "devlogs.059.hypotheses.H3.metrics.eval_sucess_mean: unknown metric (did you mean 'eval_success_mean'?)", None),
    ("unknown notebook parameter", unknown_notebook_parameter, NotebookError, "unknown notebook parameter(s) bc_wieght", None),
    # data: checked when loaded, before training
    ("missing dataset", lambda tmp, f: train_bc(tiny(), tmp / "nothing", tmp / "out"), FileNotFoundError,
     "no LeRobotDataset here (meta/info.json missing): run the demos stage first", "out"),
    ("dataset of another observation layout", lambda tmp, f: train_bc(tiny(env={"obs": "pixels", "image_size": 64}), f["demos"], tmp / "out"),
     ValueError, "but the env (params `env`) gives", "out"),
    ("actions outside [-1, 1]", lambda tmp, f: train_bc(tiny(), f["demos_x3"], tmp / "out"), ValueError,
     "demo actions must lie in [-1, 1], found |a| up to 3", "out"),
    ("more held-out episodes than demos", lambda tmp, f: train_bc(tiny(bc={"val_episodes": 3}), f["demos"], tmp / "out"), ValueError,
     "bc.val_episodes (3) must be smaller than the number of demo episodes (3)", "out"),
    ("images in 0..255", x255_batch, ValueError, "observation.images.front: images must be float in [0, 1], got values in", None),
    ("camera frame not uint8 HWC", uint8_frame, ValueError, "observation.images.front: expected a uint8 HWC camera frame", None),
    ("BC checkpoint from another observation layout", bc_from_another_layout, CheckpointError, "does not fit this study", "out"),
    ("BC checkpoint with a tensor of another shape", tampered_bc_weights, CheckpointError,
     "checkpoint does not match the policy it describes: Error(s) in loading state_dict for GaussianActorPolicy: size mismatch for actor.", "out"),
    ("init bc without a BC policy", lambda tmp, f: finetune(tiny(finetune={"init": "bc"}), f["demos"], tmp / "out"), ValueError,
     "finetune.init is 'bc' but no BC policy folder was given", "out"),
    ("classifier reward without a classifier", lambda tmp, f: finetune(tiny(finetune={"reward": "classifier"}), f["demos"], tmp / "out"),
     ValueError, "finetune.reward is 'classifier' but no classifier folder was given", "out"),
    *([("cuda without a GPU", lambda tmp, f: finetune(tiny(finetune={"device": "cuda"}), f["demos"], tmp / "out"), ValueError,
        "finetune.device is 'cuda' but torch sees no CUDA device here; use 'cpu' or 'auto'", "out")]
      if not torch.cuda.is_available() else []),
    ("classifier for other cameras", classifier_for_other_cameras, ClassifierError, "the classifier reads", None),
    ("incomplete classifier folder", incomplete_classifier, ClassifierError, "no complete saved classifier here (missing model.safetensors", None),
    ("classifier held-out episodes >= episodes", lambda tmp, f: run_classifier(tiny(classifier={"val_episodes": 3}), tmp / "out"),
     P.ParamsError, "classifier.val_episodes (3) must be smaller than classifier.episodes (3)", "out"),
]  # fmt: skip


def test_the_table_is_big_enough():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "call", "error", "text", "out"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, error, text, out, files, tmp_path):
    kept = {}
    if out is not None:  # an earlier result in the stage's output folder
        (tmp_path / out).mkdir()
        kept = {"KEEP": b"an earlier result\n", "metrics.json": b'{"earlier": 1}\n'}
        for fname, data in kept.items():
            (tmp_path / out / fname).write_bytes(data)
    with pytest.raises(error) as err:
        call(tmp_path, files)
    message = str(err.value).strip()
    assert text in message, message
    assert "\n" not in message, f"not one line: {message!r}"
    if out is not None:
        now = {p.name: p.read_bytes() for p in (tmp_path / out).iterdir() if p.is_file()}
        assert now == kept, f"{name}: the output folder changed: {sorted(now)}"
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == sorted(kept), "nothing new may be left there"
