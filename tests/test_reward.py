"""The reward classifier stage: labelled frames, training, verified save/load, one input path, metrics."""

import json

import numpy as np
import pytest
import torch

from hilstudy import params as P
from hilstudy.demos import load_demos
from hilstudy.policy import to_policy_batch
from hilstudy.reward import (
    ClassifierError,
    LABEL_KEY,
    binary_metrics,
    choose_threshold,
    load_classifier,
    load_frames,
    record_frames,
    run_classifier,
)
from hilstudy.rollout import episode_metrics, rollout
from hilstudy.sim import make_env

CLF = {"episodes": 5, "hold_steps": 3, "drop_fraction": 0.5, "val_episodes": 1, "steps": 150, "batch_size": 64,
       "hidden_dims": [32]}


def tiny(**clf) -> P.StudyParams:
    return P.validate({"classifier": {**CLF, **clf}})


@pytest.fixture(scope="module")
def state_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    metrics = run_classifier(tiny(), out)
    return out, metrics


def test_frames_are_labelled_by_the_sims_success_and_load_in_lerobot(state_run):
    out, metrics = state_run
    ds = load_demos(out / "frames")  # lerobot's LeRobotDataset
    assert ds.meta.total_episodes == 5 and LABEL_KEY in ds.meta.features
    eps = metrics["episodes"]
    assert all(e["success"] for e in eps) and any(e["drop"] for e in eps) and not all(e["drop"] for e in eps)
    frames = load_frames(out / "frames", ["observation.state"])
    for i, e in enumerate(eps):
        labels = frames.label[torch.as_tensor(frames.episode == i)].numpy()
        first = int(np.argmax(labels))
        assert labels[first:first + 4].all()  # success, then held up for hold_steps (3) more steps
        if e["drop"]:
            assert labels[-1] == 0  # dropped: the episode ends on negative frames right after positive ones
        else:
            assert labels[-1] == 1


def test_frames_are_reproducible(state_run, tmp_path):
    out, _ = state_run
    record_frames(tiny(), tmp_path / "again")
    a = load_frames(out / "frames", ["observation.state"])
    b = load_frames(tmp_path / "again", ["observation.state"])
    assert torch.equal(a.obs["observation.state"], b.obs["observation.state"]) and torch.equal(a.label, b.label)


def test_metrics_are_on_held_out_episodes(state_run):
    out, m = state_run
    assert m["val_episodes"] == 1 and m["train_episodes"] == 4
    assert m["val_tp"] + m["val_fp"] + m["val_fn"] + m["val_tn"] == m["val_frames"]
    assert m["val_positives"] == m["val_tp"] + m["val_fn"]
    assert 0.0 < m["threshold"] < 1.0 and "training frames" in m["threshold_rule"]
    assert m["val_accuracy"] >= 0.8  # a state classifier learns the lift threshold quickly
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_accuracy"] == pytest.approx(m["val_accuracy"], abs=1e-9) and "timing" not in saved
    assert len(json.loads((out / "predictions.json").read_text())) == m["val_frames"]


def test_training_and_run_time_see_the_same_inputs(state_run):
    """A frame from the dataset (lerobot's loader) and the env observation it was recorded from give the
    classifier identical inputs and probabilities."""
    out, _ = state_run
    clf = load_classifier(out / "model")
    params = tiny()
    frames = load_frames(out / "frames", ["observation.state"])
    from hilstudy.operator import ScriptedOperator

    with make_env(params.env) as env:
        op = ScriptedOperator(params.operator, params.env.action_scale)
        transitions = list(rollout(env, operator=op, seed=300_000))  # the first labelled episode's seed
    n = len(transitions)
    ep0 = {k: v[:n] for k, v in frames.obs.items()}
    live = {k: torch.stack([to_policy_batch(t.next_obs)[k] for t in transitions]) for k in ep0}
    assert torch.equal(clf.preprocess(ep0)["observation.state"], clf.preprocess(live)["observation.state"])
    assert torch.equal(clf.probabilities(ep0), clf.probabilities(live))
    rewards = [clf(t.next_obs)[0] for t in transitions]
    assert rewards == [float(p > clf.threshold) for p in clf.probabilities(live).tolist()]


def test_load_is_verified(state_run, tmp_path):
    out, _ = state_run
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(out / "model", bad)
    tensors = load_file(str(bad / "model.safetensors"))
    key = sorted(tensors)[0]
    del tensors[key]
    save_file(tensors, str(bad / "model.safetensors"))
    with pytest.raises(ClassifierError, match="lacks"):
        load_classifier(bad)
    (bad / "classifier.json").unlink()
    with pytest.raises(ClassifierError, match="missing classifier.json"):
        load_classifier(bad)


def test_a_classifier_for_other_inputs_fails_clearly(state_run):
    from lerobot.configs.types import FeatureType, PolicyFeature

    out, _ = state_run
    other = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(18,))}  # pixels env: no cube xyz
    with pytest.raises(ClassifierError, match="retrain it for this env"):
        load_classifier(out / "model", expected_inputs=other)


def test_rollout_with_a_reward_fn_ends_on_its_success_and_counts_disagreements():
    params = tiny()
    from hilstudy.operator import ScriptedOperator

    said = []

    def early(obs):  # a deliberately wrong classifier: success as soon as the cube is 2 cm up
        ok = bool(obs["observation.state"][-1] > -0.9) and len(said) > 5
        said.append(ok)
        return float(ok), ok

    with make_env(params.env) as env:
        op = ScriptedOperator(params.operator, params.env.action_scale)
        truth = list(rollout(env, operator=op, seed=3))
        judged = list(rollout(env, operator=op, seed=3, reward_fn=early))
    assert len(judged) < len(truth)  # it ended the episode before the sim's success
    last = judged[-1]
    assert last.terminated and last.reward == 1.0 and not last.success and last.info["env_reward"] == 0.0
    m = episode_metrics(judged)
    assert m["reward_false_pos"] >= 1 and m["reward_disagreements"] == m["reward_false_pos"] + m["reward_false_neg"]
    assert m["success"] == 0.0  # success is the sim's truth, not the classifier's say-so


def test_binary_metrics_and_threshold_choice():
    prob = np.array([0.1, 0.4, 0.6, 0.9, 0.7, 0.2])
    label = np.array([0, 0, 1, 1, 0, 1])
    m = binary_metrics(prob, label, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    t = choose_threshold(prob, label)
    assert binary_metrics(prob, label, t)["f1"] == max(binary_metrics(prob, label, x)["f1"] for x in np.linspace(0.05, 0.95, 19))


def test_image_classifier_trains_and_loads(tmp_path):
    """classifier.input images: lerobot's CNN classifier on both cameras (32x32 here), saved and reloaded."""
    params = P.validate({"env": {"image_size": 32}, "classifier": {**CLF, "input": "images", "episodes": 3,
                                                                   "steps": 3, "batch_size": 16, "backbone_channels": [8, 16]}})
    m = run_classifier(params, tmp_path)
    clf = load_classifier(tmp_path / "model")
    assert m["input"] == "images" and sorted(clf.input_keys) == ["observation.images.front", "observation.images.wrist"]
    assert (tmp_path / "model" / "backbone" / "config.json").exists()
    with make_env(params.env.model_copy(update={"obs": "pixels"})) as env:
        obs, _ = env.reset(seed=0)
    r, s = clf(obs)
    assert r in (0.0, 1.0) and r == float(s)
    with make_env(params.env) as env:  # a state env has no cameras for it
        obs, _ = env.reset(seed=0)
    with pytest.raises(ClassifierError, match="does not give"):
        clf(obs)
