import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hilstudy import params as P
from hilstudy.bc import train_bc
from hilstudy.demos import record_demos
from hilstudy.finetune import Run, StopRun, critic_sizes, finetune
from hilstudy.policy import CheckpointError

TINY = {
    "demos": {"num_episodes": 3},
    "bc": {"steps": 30, "batch_size": 32, "val_episodes": 1, "eval_episodes": 0},
    "policy": {"actor_hidden_dims": [64, 64], "critic_hidden_dims": [48, 32], "num_critics": 3, "latent_dim": 32,
               "state_encoder_hidden_dim": 32},
    "finetune": {"env_steps": 160, "learning_starts": 40, "batch_size": 32, "eval_every": 80, "eval_episodes": 1,
                 "checkpoint_every": 60, "log_every": 10, "init": "scratch"},
}


def tiny(**finetune) -> P.StudyParams:
    raw = {k: dict(v) for k, v in TINY.items()}
    raw["finetune"].update(finetune)
    return P.validate(raw)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    record_demos(tiny(), root / "demos", progress=False)
    train_bc(tiny(), root / "demos", root / "bc")
    return root / "demos", root / "bc" / "policy"


@pytest.fixture(scope="module")
def full(inputs, tmp_path_factory):
    demos, bc = inputs
    out = tmp_path_factory.mktemp("full")
    summary, run = finetune(tiny(), demos, out, bc_dir=bc)
    return out, summary, run


def test_params_reach_the_networks(inputs, tmp_path):
    demos, bc = inputs
    run = Run(tiny(discount=0.9, temperature_init=0.2, utd_ratio=2), demos, bc, tmp_path)
    assert critic_sizes(run.algorithm) == [[48, 32]] * 3  # lerobot's from_policy_config would drop these
    assert run.algorithm.config.discount == 0.9 and run.algorithm.config.utd_ratio == 2
    assert run.algorithm.temperature == pytest.approx(0.2)
    assert [m.out_features for m in run.algorithm.policy.actor.network.net if isinstance(m, torch.nn.Linear)] == [64, 64]


def test_bc_init_loads_the_bc_weights(inputs, tmp_path):
    demos, bc = inputs
    run = Run(tiny(init="bc"), demos, bc, tmp_path)
    saved = load_file(str(bc / "model.safetensors"))
    mine = run.algorithm.policy.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in saved.items())


def test_run_metrics_and_outputs(full):
    out, s, run = full
    assert s["env_steps"] == 160 and s["updates"] == 120 and not s["resumed"]
    assert len(run.logs["evals"]) == 3 and run.logs["evals"][0]["env_step"] == 0  # success at step 0 is measured
    # every evaluation: the deterministic policy alone, and with the operator in the loop (its intervention rate)
    assert all({"success_rate", "jitter", "intervention_rate", "success_with_operator"} <= set(e) for e in run.logs["evals"])
    assert s["eval_intervention_rate_mean"] == pytest.approx(np.mean([e["intervention_rate"] for e in run.logs["evals"][1:]]))
    row = run.logs["updates"][-1]
    for key in ["loss_critic", "loss_actor", "loss_temperature", "loss_bc", "temperature", "mean_q"]:
        assert key in row
    for key in ["success", "length", "intervention_steps", "intervention_rate", "jitter", "return"]:
        assert key in run.logs["episodes"][0]
    assert (out / "policy" / "model.safetensors").exists() and (out / "checkpoint" / "pretrained_model").exists()
    assert (out / "live" / "plots" / "metrics" / "eval" / "success_rate.tsv").exists()


def online_rows(run):
    b, n = run.online, len(run.online)
    return (b.dones[:n].numpy(), b.truncateds[:n].numpy(), b.rewards[:n].numpy(),
            b.complementary_info["is_intervention"][:n].numpy().ravel() > 0.5)


def test_takeover_ends_the_policys_attempt(full):
    _, _, run = full
    done, trunc, reward, inter = online_rows(run)
    takeovers = sum(e["takeovers"] for e in run.logs["episodes"])
    assert takeovers > 0, "the tiny scratch run should need the operator"
    failed = np.flatnonzero(done & ~inter & (reward == 0))
    assert len(failed) >= 1
    assert all(inter[i + 1] for i in failed if i + 1 < len(inter))  # each is followed by the operator's step
    # an episode goes on after such a "done": the flag is for the policy's attempt, not the env
    assert not trunc[failed].any()


def test_time_limit_is_not_stored_as_done(inputs, tmp_path):
    demos, bc = inputs
    raw = {k: dict(v) for k, v in TINY.items()}
    raw["env"] = {"max_episode_steps": 15}
    raw["finetune"].update(interventions=False, env_steps=60, learning_starts=30, eval_episodes=0)
    _, run = finetune(P.validate(raw), demos, tmp_path)
    done, trunc, _, inter = online_rows(run)
    assert trunc.sum() >= 3 and not (done & trunc).any() and not inter.any()


def test_interventions_go_to_both_buffers(full, inputs):
    _, _, run = full
    from hilstudy.bc import load_demo_tensors

    n_demo = len(load_demo_tensors(inputs[0]))
    _, _, _, inter = online_rows(run)
    assert len(run.offline) == n_demo + inter.sum()  # policy transitions only online
    assert len(run.online) == 160


def test_stop_and_resume_continues_exactly(full, inputs, tmp_path):
    demos, bc = inputs
    _, summary, run = full
    with pytest.raises(StopRun):
        finetune(tiny(), demos, tmp_path, bc_dir=bc, stop_at=60)
    assert (tmp_path / "checkpoint" / "training_state" / "training_step.json").exists()
    resumed_summary, resumed = finetune(tiny(), demos, tmp_path, bc_dir=bc)
    assert resumed_summary.pop("resumed") is True
    assert resumed_summary == {k: v for k, v in summary.items() if k != "resumed"}
    assert resumed.logs == run.logs
    for k, v in run.algorithm.policy.state_dict().items():
        assert torch.equal(resumed.algorithm.policy.state_dict()[k], v), k
    for k, v in run.algorithm.state_dict().items():
        assert torch.equal(resumed.algorithm.state_dict()[k], v), k
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "success_rate.tsv").read_text() == \
        (full[0] / "live" / "plots" / "metrics" / "eval" / "success_rate.tsv").read_text()


def test_overlapped_updates_give_the_same_run_as_sequential(full, inputs, tmp_path):
    """finetune.overlap (the default) runs each update in a thread beside the env step; with it off, the same
    run in one thread must give the same logs, weights and checkpoint files, byte for byte."""
    demos, bc = inputs
    out, summary, run = full
    assert P.FinetuneParams().overlap is True and run.cfg.overlap is True
    assert any(e["intervention_steps"] for e in run.logs["episodes"]), "no takeover: the store order is not exercised"
    seq_summary, seq = finetune(tiny(overlap=False), demos, tmp_path, bc_dir=bc)
    assert seq_summary == summary and seq.logs == run.logs
    for k, v in run.algorithm.state_dict().items():
        assert torch.equal(seq.algorithm.state_dict()[k], v), k
    files = sorted(f.relative_to(out) for f in (out / "checkpoint").rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(tmp_path) for f in (tmp_path / "checkpoint").rglob("*") if f.is_file())
    for f in files:
        assert (out / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_resume_refuses_a_corrupt_actor(inputs, tmp_path):
    demos, bc = inputs
    with pytest.raises(StopRun):
        finetune(tiny(), demos, tmp_path, bc_dir=bc, stop_at=60)
    f = tmp_path / "checkpoint" / "pretrained_model" / "model.safetensors"
    tensors = load_file(str(f))
    del tensors["actor.mean_layer.bias"]
    save_file(tensors, str(f))
    with pytest.raises(CheckpointError, match="mean_layer.bias"):
        finetune(tiny(), demos, tmp_path, bc_dir=bc)


def test_checkpoint_of_other_params_is_not_resumed(inputs, tmp_path):
    demos, bc = inputs
    with pytest.raises(StopRun):
        finetune(tiny(), demos, tmp_path, bc_dir=bc, stop_at=60)
    s, _ = finetune(tiny(env_steps=100), demos, tmp_path, bc_dir=bc)
    assert s["resumed"] is False and s["env_steps"] == 100


def test_checkpoint_from_other_inputs_is_not_resumed(inputs, tmp_path):
    """A checkpoint made from other BC weights (a retrained BC stage) must not be resumed."""
    demos, bc = inputs
    with pytest.raises(StopRun):
        finetune(tiny(init="bc"), demos, tmp_path / "run", bc_dir=bc, stop_at=60)
    raw = {k: dict(v) for k, v in TINY.items()}
    raw["bc"]["seed"] = 1
    train_bc(P.validate(raw), demos, tmp_path / "bc1")
    s, _ = finetune(tiny(init="bc", env_steps=100), demos, tmp_path / "run", bc_dir=tmp_path / "bc1" / "policy")
    assert s["resumed"] is False


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from hilstudy.reward import run_classifier

    out = tmp_path_factory.mktemp("clf")
    run_classifier(P.validate({"classifier": {"episodes": 3, "hold_steps": 2, "val_episodes": 1, "steps": 60,
                                              "batch_size": 32, "hidden_dims": [32]}}), out)
    return out / "model"


def test_classifier_reward_runs_and_logs_disagreements(inputs, classifier, tmp_path):
    from hilstudy.reward import load_classifier

    demos, _ = inputs
    s, run = finetune(tiny(reward="classifier", env_steps=80, eval_every=80), demos, tmp_path, classifier_dir=classifier)
    assert {"reward_disagreement_rate", "reward_false_pos", "reward_false_neg"} <= set(s)
    assert all("reward_disagreements" in e for e in run.logs["episodes"])
    # the online buffer holds the classifier's rewards: 1 exactly where it said success (policy steps too)
    clf = load_classifier(classifier)
    n = len(run.online)
    states = run.online.next_states["observation.state"][:n]
    said = (clf.probabilities({"observation.state": states}) > clf.threshold).float().numpy()
    stored = run.online.rewards[:n].numpy()
    takeover_fail = run.online.dones[:n].numpy() & (stored == 0) & (said == 1)  # none: a takeover step is no success
    assert not takeover_fail.any()
    assert np.array_equal(stored[said == 1], np.ones(int(said.sum())))


def test_classifier_reward_without_a_classifier_fails_before_compute(inputs, tmp_path):
    demos, _ = inputs
    with pytest.raises(ValueError, match="no classifier folder"):
        finetune(tiny(reward="classifier"), demos, tmp_path)
    assert not (tmp_path / "checkpoint").exists()


def test_episode_end_reward_rewards_only_the_last_step(inputs, tmp_path):
    """reward episode_end (devlog 059's terminal-only signal): every episode runs to the time limit and only its
    last step may be rewarded; that step is stored as done (the verdict), never as a truncation."""
    demos, _ = inputs
    raw = {k: dict(v) for k, v in TINY.items()}
    raw["env"] = {"max_episode_steps": 20}
    raw["finetune"].update(reward="episode_end", env_steps=100, learning_starts=30, eval_episodes=0)
    s, run = finetune(P.validate(raw), demos, tmp_path)
    assert s["env_steps"] == 100 and [e["length"] for e in run.logs["episodes"]] == [20.0] * 5
    done, trunc, reward, inter = online_rows(run)
    ends = np.flatnonzero(np.array([t for e in run.logs["episodes"] for t in [0] * 19 + [1]]))
    assert not trunc.any() and done[ends].all()
    others = np.setdiff1d(np.arange(len(reward)), ends)
    assert (reward[others] == 0).all()
    # the verdict is 0 or 1, and it is each episode's whole return
    assert set(np.unique(reward[ends])) <= {0.0, 1.0}
    assert reward[ends].sum() == sum(e["return"] for e in run.logs["episodes"])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(inputs, tmp_path):
    """Corrupt transitions (NaN rewards in the offline buffer) after a resume: the first update's critic
    loss is NaN, the run stops naming the update and the loss, and the checkpoint stays byte for byte."""
    from hilstudy.faults import NumericalFault

    demos, bc = inputs
    with pytest.raises(StopRun):
        finetune(tiny(), demos, tmp_path, bc_dir=bc, stop_at=60)
    before = {f: f.read_bytes() for f in (tmp_path / "checkpoint").rglob("*") if f.is_file()}
    run = Run(tiny(), demos, bc, tmp_path)
    assert run.resume()
    run.offline.rewards[: len(run.offline)] = float("nan")
    with pytest.raises(NumericalFault, match=r"update \d+ \(env step \d+\): .*(loss_critic = nan|non-finite weights in).*last good checkpoint is kept"):
        run.run()
    assert {f: f.read_bytes() for f in (tmp_path / "checkpoint").rglob("*") if f.is_file()} == before


KILLABLE = """
import json, sys
from hilstudy import params as P
from hilstudy.finetune import finetune
finetune(P.validate(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3], bc_dir=sys.argv[4])
"""


def checkpointed_step(out) -> int:
    for d in ("checkpoint", "checkpoint.old"):
        try:
            return json.loads((out / d / "training_state" / "training_step.json").read_text())["env_step"]
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return 0


def test_sigkill_during_finetuning_resumes_to_the_uninterrupted_run(full, inputs, tmp_path):
    """Kill a fine-tuning run (SIGKILL) at random points after checkpoints, twice; running it again
    resumes from the last checkpoint and ends with the uninterrupted run's metrics, logs and weights."""
    demos, bc = inputs
    _, summary, run = full
    raw = {k: dict(v) for k, v in TINY.items()}
    rng = np.random.default_rng(5)
    kills = []
    for _ in range(2):  # a kill, a resume that is killed in turn, a resume that finishes
        before = checkpointed_step(tmp_path)
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, json.dumps(raw), str(demos), str(tmp_path), str(bc)])
        while proc.poll() is None and checkpointed_step(tmp_path) <= before:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # in an episode, an update, an evaluation or a checkpoint's writing
        proc.send_signal(signal.SIGKILL)
        if proc.wait() == 0:
            break  # it finished first
        kills.append(checkpointed_step(tmp_path))
    print("checkpointed env step at each kill:", kills)
    assert kills, "every run finished before its kill: the test tried no kill point"
    resumed_summary, resumed = finetune(tiny(), demos, tmp_path, bc_dir=bc)
    assert resumed_summary.pop("resumed") is True
    assert resumed_summary == {k: v for k, v in summary.items() if k != "resumed"}
    assert resumed.logs == run.logs
    for k, v in run.algorithm.state_dict().items():
        assert torch.equal(resumed.algorithm.state_dict()[k], v), k


def test_drqv2_runs_from_the_same_params_stores_n_step_transitions_and_resumes_exactly(inputs, tmp_path):
    """`algorithm: drqv2` with everything else the same: the BC start loads, the buffers hold n-step
    transitions (a discount per row), the logs carry the noise schedule, and a stopped run resumes exactly."""
    demos, bc = inputs
    params = tiny(algorithm="drqv2", bc_weight=0.5, init="bc")
    run = Run(params, demos, bc, tmp_path / "probe")
    saved = load_file(str(bc / "model.safetensors"))
    assert all(torch.equal(run.algorithm.policy.state_dict()[k], v) for k, v in saved.items())
    assert type(run.algorithm).__name__ == "DrQv2Algorithm"
    n = len(run.offline)
    discounts = run.offline.complementary_info["discount"][:n].numpy().ravel().astype(float)
    assert set(np.round(discounts, 6).tolist()) <= {round(0.97**k, 6) for k in (1, 2, 3)}
    assert (np.round(discounts, 6) == round(0.97**3, 6)).any()

    summary, full_run = finetune(params, demos, tmp_path / "full", bc_dir=bc)
    assert summary["updates"] == 120 and full_run.logs["updates"][-1]["stddev"] < 1.0
    assert full_run.logs["updates"][-1]["loss_bc"] > 0
    with pytest.raises(StopRun):
        finetune(params, demos, tmp_path / "resumed", bc_dir=bc, stop_at=60)
    resumed_summary, resumed = finetune(params, demos, tmp_path / "resumed", bc_dir=bc)
    assert resumed_summary.pop("resumed") is True
    assert resumed_summary == {k: v for k, v in summary.items() if k != "resumed"} and resumed.logs == full_run.logs
    for k, v in full_run.algorithm.state_dict().items():
        assert torch.equal(resumed.algorithm.state_dict()[k], v), k


def test_drqv2_short_learning_run_improves_over_its_start(tmp_path):
    """DrQ-v2 from scratch with the BC loss, 800 env steps: evaluation success rises from its start (0)."""
    raw = {
        "demos": {"num_episodes": 5},
        "policy": {"actor_hidden_dims": [128, 128], "critic_hidden_dims": [128, 128], "latent_dim": 64, "state_encoder_hidden_dim": 64},
        "finetune": {"env_steps": 800, "learning_starts": 100, "batch_size": 64, "eval_every": 400, "eval_episodes": 5,
                     "checkpoint_every": 800, "log_every": 50, "init": "scratch", "algorithm": "drqv2", "bc_weight": 0.5, "std_steps": 500},
    }  # fmt: skip
    params = P.validate(raw)
    record_demos(params, tmp_path / "demos", progress=False)
    summary, run = finetune(params, tmp_path / "demos", tmp_path / "ft")
    evals = [e["success_rate"] for e in run.logs["evals"]]
    print("drqv2 eval success at 0, 400, 800 env steps:", evals)
    assert evals[0] == 0.0 and evals[-1] >= 0.6 and summary["intervention_rate_last20"] < summary["intervention_rate_first20"]


def test_drqv2_runs_on_pixel_observations(tmp_path):
    """Camera images (front + wrist, 48x48 here) through the same loop: lerobot's image encoder, the random-shift
    augmentation of the replay buffer, the n-step transitions holding images. (SAC goes through the same
    buffers and encoder; one pixel run keeps the suite short.)"""
    algorithm = "drqv2"
    raw = {
        "env": {"obs": "pixels", "image_size": 48, "max_episode_steps": 30},
        "demos": {"num_episodes": 2},
        "policy": {"actor_hidden_dims": [32], "critic_hidden_dims": [32], "latent_dim": 32, "state_encoder_hidden_dim": 32,
                   "image_encoder_hidden_dim": 8},
        "finetune": {"env_steps": 40, "learning_starts": 20, "batch_size": 8, "eval_every": 40, "eval_episodes": 1,
                     "checkpoint_every": 40, "log_every": 5, "init": "scratch", "algorithm": algorithm, "bc_weight": 0.5},
    }  # fmt: skip
    params = P.validate(raw)
    record_demos(params, tmp_path / "demos", progress=False)
    summary, run = finetune(params, tmp_path / "demos", tmp_path / "ft")
    assert summary["updates"] == 20 and run.online.use_drq
    assert run.online.states["observation.images.front"].shape[1:] == (3, 48, 48)
    row = run.logs["updates"][-1]
    assert np.isfinite(row["loss_critic"]) and np.isfinite(row["loss_actor"])
    assert ("stddev" in row) == (algorithm == "drqv2")


def test_image_buffers_shift_images_with_lerobots_random_shift_uncompiled():
    """lerobot's buffer would torch.compile its augmentation (49 s on the first call here): hilstudy hands it
    lerobot's own random_shift, eager; images move by at most the pad (4 px) and keep their shape."""
    import functools

    from lerobot.rl.buffer import random_shift

    from hilstudy.finetune import make_buffer

    buf = make_buffer(4, ["observation.images.front"], pixels=True)
    aug = buf.image_augmentation_function
    assert isinstance(aug, functools.partial) and aug.func is random_shift and aug.keywords == {"pad": 4}
    torch.manual_seed(0)
    img = torch.zeros(16, 3, 32, 32)
    img[:, :, 14:18, 14:18] = 1.0  # a 4x4 square in the middle
    out = aug(img)
    assert out.shape == img.shape
    ys, xs = zip(*[(int(o[0].nonzero()[:, 0].float().mean().round()), int(o[0].nonzero()[:, 1].float().mean().round())) for o in out])
    assert max(abs(y - 16) for y in ys) <= 4 and max(abs(x - 16) for x in xs) <= 4 and len(set(zip(ys, xs))) > 1


def test_a_finished_run_made_by_other_code_trains_again(full, inputs, tmp_path, monkeypatch):
    """A finished run's checkpoint persists. Rerun with the same code it is resumed (nothing to train); rerun
    after a change to the code the stage runs (or to the installed versions) it is not: the run trains again
    from the start instead of writing the old results under the new code's name. (The digest's reaction to a
    real file edit: test_provenance; under `dvc repro`: test_pipeline.)"""
    import shutil

    import hilstudy.finetune as ft

    demos, bc = inputs
    out, summary, run = full
    shutil.copytree(out, tmp_path / "run")
    same, _ = finetune(tiny(), demos, tmp_path / "run", bc_dir=bc)
    assert same.pop("resumed") is True and same == {k: v for k, v in summary.items() if k != "resumed"}
    made_with = ft.provenance("hilstudy.finetune")
    for changed in ({**made_with, "code": "0" * 16}, {**made_with, "versions": "0" * 16}):
        shutil.rmtree(tmp_path / "run")
        shutil.copytree(out, tmp_path / "run")
        monkeypatch.setattr(ft, "provenance", lambda entry, c=changed: c)
        again, rerun = finetune(tiny(), demos, tmp_path / "run", bc_dir=bc)
        assert again.pop("resumed") is False and again["updates"] == 120  # trained: 160 env steps, updates from 40
        assert "not resuming" in (tmp_path / "run" / "progress.log").read_text()
        assert rerun.logs == run.logs  # same code in fact: the retrained run is the same run


def test_evaluation_cubes_differ_between_seeds_and_match_within_one():
    from hilstudy.finetune import eval_seed

    cfgs = [tiny(seed=s).finetune for s in (0, 1)]
    assert eval_seed(cfgs[0]) == 200_000 and eval_seed(cfgs[1]) == 201_000  # 1000 apart: eval_episodes <= 1000
    assert eval_seed(tiny(seed=1, bc_weight=0.5).finetune) == eval_seed(cfgs[1])  # treatment and control of a seed: the same cubes
