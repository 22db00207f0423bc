"""The real-arm env with hilstudy's simulated SO-101 and scripted teleoperator (no hardware).

Both devices are built by lerobot's own factories from configs registered in lerobot's registries, and the
end-effector control runs through lerobot's robot-env processor steps and placo kinematics, as on the arm.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from lerobot.robots import make_robot_from_config
from lerobot.teleoperators import make_teleoperator_from_config

from hilstudy.mock import MockSO101, ScriptedTeleop
from hilstudy.params import EnvParams, ParamsError, RealParams, load
from hilstudy.real import RealArmEnv, TeleopOperator, robot_config, teleop_config, teleop_to_action
from hilstudy.rollout import episode_metrics, rollout


def real_params(tmp_path: Path, script: list[dict] | None = None, **kw) -> RealParams:
    cal = {"calibration_dir": str(tmp_path / "calibration")}
    return RealParams(robot="hilstudy_mock_so101", teleop="hilstudy_scripted_teleop", realtime=False,
                      reset_time_s=0.3, robot_options=cal, teleop_options={**cal, "script": script or []}, **kw)


def make(tmp_path: Path, script: list[dict] | None = None, obs: str = "state", max_steps: int = 40, **kw) -> RealArmEnv:
    env_cfg = EnvParams(kind="real", obs=obs, image_size=64, max_episode_steps=max_steps)
    return RealArmEnv(env_cfg, real_params(tmp_path, script, **kw))


def test_lerobot_factories_build_the_registered_mock_devices(tmp_path):
    real = real_params(tmp_path)
    assert isinstance(make_robot_from_config(robot_config(real)), MockSO101)
    assert isinstance(make_teleoperator_from_config(teleop_config(real)), ScriptedTeleop)


def test_unknown_device_types_are_named(tmp_path):
    with pytest.raises(ValueError, match="real.robot: unknown lerobot robot type 'so1O1_follower'"):
        robot_config(RealParams(robot="so1O1_follower"))
    with pytest.raises(ValueError, match="real.teleop: unknown lerobot teleoperator type 'joypad'"):
        teleop_config(RealParams(teleop="joypad"))


def test_params_reject_a_real_robot_without_urdf_and_a_bad_workspace():
    with pytest.raises(ParamsError, match="real.urdf_path: robot 'so101_follower' needs its URDF"):
        load(overrides={"env.kind": "real"})
    with pytest.raises(ParamsError, match="real.ee_min must be below real.ee_max"):
        load(overrides={"real.ee_min": [0.3, 0.0, 0.0], "real.ee_max": [0.2, 0.1, 0.1]})
    assert load(overrides={"env.kind": "real", "real.robot": "hilstudy_mock_so101"}).env.kind == "real"


def test_reset_moves_to_the_reset_pose_and_observes_like_the_sim(tmp_path):
    with make(tmp_path, obs="pixels") as env:
        obs, info = env.reset(seed=3)
        np.testing.assert_allclose(env._joints(), env.real.reset_joints, atol=1e-9)
        assert set(obs) == {"observation.state", "observation.images.front", "observation.images.wrist"}
        assert obs["observation.state"].dtype == np.float32 and obs["observation.state"].shape == (9,)
        assert np.all(np.abs(obs["observation.state"]) <= 1.0)
        for key in ("observation.images.front", "observation.images.wrist"):
            assert obs[key].dtype == np.uint8 and obs[key].shape == (64, 64, 3)
        assert info["success"] is False and info["step"] == 0
        # reset is a straight joint-space line, each command within the robot's per-command cap
        sent = np.array([[c[f"{m}.pos"] for m in env.motors] for c in env.robot.sent])
        assert len(sent) == 3 and np.all(np.abs(np.diff(sent, axis=0)) <= env.real.max_joint_step + 1e-9)


def test_a_policy_action_moves_the_end_effector_that_way(tmp_path):
    with make(tmp_path) as env:
        env.reset(seed=0)
        start = env._ee_pos()
        for _ in range(3):
            _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0, 0.0]))
        moved = info["tcp_pos"] - start
        assert moved[0] > 0.05 and abs(moved[1]) < 1e-6, moved
        assert (reward, terminated, truncated) == (0.0, False, False)


def test_targets_stay_in_the_workspace_and_steps_stay_small(tmp_path):
    with make(tmp_path, max_steps=200) as env:
        env.reset(seed=0)
        lo, hi = np.array(env.real.ee_min), np.array(env.real.ee_max)
        rng = np.random.default_rng(0)
        prev_q, prev_ee = env._joints(), env._ee_pos()
        for t in range(120):
            push = np.array([-1.0, 1.0, -1.0, 1.0]) if t < 60 else rng.uniform(-1, 1, 4)  # into a corner, then random
            _, _, _, _, info = env.step(push)
            q, ee = env._joints(), info["tcp_pos"]
            assert np.all(np.abs(q - prev_q)[:-1] <= env.real.max_joint_step + 1e-6)  # arm joints: the cap
            assert np.linalg.norm(ee - prev_ee) <= env.real.max_ee_step + 0.01  # the safety step, plus IK tracking
            assert np.all(ee >= lo - 0.01) and np.all(ee <= hi + 0.01), (t, ee)  # the box, plus IK tracking
            prev_q, prev_ee = q, ee
        assert 0.0 <= info["gripper"] <= 1.0


def test_the_person_overrides_the_policy_while_holding_the_button(tmp_path):
    script = [{}] * 3 + [{"intervene": True, "delta": (0.0, 0.0, 1.0), "gripper": "open"}] * 4 + [{}] * 3
    with make(tmp_path, script, max_steps=10) as env:
        op = TeleopOperator(env)
        steps = list(rollout(env, policy=lambda o: np.array([0.5, 0.0, 0.0, 1.0]), operator=op, seed=0))
    assert [s.is_intervention for s in steps] == [False] * 3 + [True] * 4 + [False] * 3
    assert [s.intervention_start for s in steps] == [False] * 3 + [True] + [False] * 6
    for s in steps:
        want = [0.0, 0.0, 1.0, -1.0] if s.is_intervention else [0.5, 0.0, 0.0, 1.0]
        np.testing.assert_array_equal(s.action, np.float32(want))
        np.testing.assert_array_equal(s.policy_action, np.float32([0.5, 0.0, 0.0, 1.0]))
    assert steps[-1].truncated and not steps[-1].terminated  # the time limit
    assert episode_metrics(steps)["intervention_rate"] == pytest.approx(0.4)


def test_the_stop_key_ends_the_episode_and_holds_the_arm(tmp_path):
    script = [{}] * 4 + [{"stop": True}]
    with make(tmp_path, script) as env:
        steps = list(rollout(env, policy=lambda o: np.array([1.0, 0.0, -1.0, 1.0]), operator=TeleopOperator(env), seed=0))
        last = steps[-1]
        assert len(steps) == 5 and last.terminated and not last.truncated
        assert last.reward == 0.0 and not last.success and last.info["stopped"]
        before = steps[-2].info["tcp_pos"]
        np.testing.assert_allclose(last.info["tcp_pos"], before, atol=1e-12)  # the step's action was not executed
        held = env.robot.sent[-1]
        np.testing.assert_allclose([held[f"{m}.pos"] for m in env.motors], env._joints(), atol=1e-12)


def test_success_and_rerecord_keys(tmp_path):
    with make(tmp_path, [{}, {"success": True}]) as env:
        steps = list(rollout(env, policy=lambda o: np.zeros(4), seed=0))  # no operator: events are still read
    assert len(steps) == 2 and steps[-1].terminated and steps[-1].success and steps[-1].reward == 1.0
    with make(tmp_path, [{}, {}, {"rerecord": True}]) as env:
        steps = list(rollout(env, operator=TeleopOperator(env), seed=0))
    assert len(steps) == 3 and steps[-1].truncated and not steps[-1].terminated and steps[-1].info["rerecord"]
    assert all(s.is_intervention for s in steps)  # recording: the person drives every step


def test_teleop_commands_map_to_the_study_action():
    np.testing.assert_array_equal(teleop_to_action({"delta_x": 2.0, "delta_y": -0.5, "delta_z": 0.0, "gripper": 0.0}),
                                  np.float32([1.0, -0.5, 0.0, 1.0]))
    np.testing.assert_array_equal(teleop_to_action({"delta_x": 0, "delta_y": 0, "delta_z": 0, "gripper": 2.0}),
                                  np.float32([0, 0, 0, -1.0]))
    with pytest.raises(ValueError, match="gripper command 3.0"):
        teleop_to_action({"gripper": 3.0})


def test_recording_demos_from_the_person_into_a_lerobot_dataset(tmp_path):
    """Two episodes with the mock arm: the person drives, presses success (kept), re-records one (dropped)."""
    from hilstudy import demos as D

    ep = [{"delta": (1.0, 0.0, 0.0)}] * 3 + [{"delta": (0.0, 0.0, -1.0), "gripper": "close", "success": True}]
    script = ep + [{"delta": (0.0, 1.0, 0.0)}, {"rerecord": True}] + ep
    params = load(overrides={
        "env.kind": "real", "env.max_episode_steps": 20,
        "real": real_params(tmp_path, script).model_dump(mode="json"),
        "demos.num_episodes": 2,
    })
    rec = D.record_demos(params, tmp_path / "demos", progress=False)
    assert [e["success"] for e in rec.episodes] == [1.0, 1.0] and [e["length"] for e in rec.episodes] == [4.0, 4.0]
    assert len(rec.discarded) == 1 and rec.discarded[0]["rerecord"]
    ds = D.load_demos(tmp_path / "demos")
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames == 8 and ds.meta.robot_type == "hilstudy_mock_so101"
    frame = ds[3]
    assert frame["observation.state"].shape == (9,) and bool(frame["next.done"]) and bool(frame["next.success"])
    assert float(frame["complementary_info.is_intervention"]) == 1.0
    assert frame["action"].tolist() == [0.0, 0.0, -1.0, 1.0]  # the person's command: down, close


def test_dvc_repro_never_waits_for_a_person(monkeypatch):
    from hilstudy import demos as D
    from hilstudy.params import INTERACTIVE_ENV

    monkeypatch.delenv(INTERACTIVE_ENV, raising=False)
    params = load(overrides={"env.kind": "real", "real.urdf_path": "arm.urdf"})
    with pytest.raises(RuntimeError, match="Run `hilstudy record`"):
        D.record_demos(params, "unused", progress=False)


@pytest.mark.slow
def test_hilstudy_record_then_dvc_repro_fine_tunes_on_the_mock_arm(project_copy, tmp_path):
    """The real-arm workflow on the mock arm, in a copy of the project: `hilstudy record` runs the demos stage's
    notebook and dvc-commits it (so `dvc status` finds it up to date and `dvc repro` never records by itself);
    two seeds sharing one recording (runs.replicate_inputs false): it is recorded once and committed for both;
    `hilstudy record classifier` likewise for the person's labelled frames, then `dvc repro` of one
    classifier-rewarded fine-tuning run trains on the arm with the person's takeovers and success keys."""
    import os
    import subprocess
    import sys

    import yaml
    from test_pipeline import dvc, flatten, hilstudy_repro, set_params

    demo = [{"delta": (1.0, 0.0, 0.0)}, {"delta": (0.0, 0.0, -1.0), "gripper": "close", "success": True}]
    rescue = [{}] * 3 + [{"intervene": True, "delta": (0.0, 0.0, -1.0), "gripper": "close"}] * 3 + [{"success": True}]
    smoke = flatten(yaml.safe_load((Path(__file__).parent / "smoke_params.yaml").read_text()))
    common = {**smoke, "env.kind": "real", "env.max_episode_steps": 10, "demos.num_episodes": 2, "runs.seeds": [0, 1],
              "runs.replicate_inputs": False}
    # one script for all (each process's teleoperator starts it over): the demos use its first two episodes; the
    # classifier's three 10-step episodes see success presses that start and end positives
    real = real_params(tmp_path, demo * 2 + rescue * 30).model_dump(mode="json")
    set_params(project_copy, {**common, **{f"real.{k}": v for k, v in real.items()}})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["hilstudy", "record"], cwd=project_copy, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demos committed to DVC" in res.stdout and "1 set(s) of 2 episodes (shared by every seed)" in res.stdout
    assert res.stdout.count("hilstudy record demos: seed") == 1  # one recording for both seeds
    status = dvc(project_copy, "status", "demos@0", "demos@1", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
    ds = json.loads((project_copy / "data/demos/s0/dataset/meta/info.json").read_text())
    assert ds["total_episodes"] == 2 and ds["robot_type"] == "hilstudy_mock_so101"
    same = lambda rel: (project_copy / "data/demos/s0" / rel).read_bytes() == (project_copy / "data/demos/s1" / rel).read_bytes()  # noqa: E731
    assert same("dataset/meta/info.json") and same("metrics.json")

    # the classifier's frames, labelled by the person's success key (a press starts positives, the next ends them)
    res = subprocess.run(["hilstudy", "record", "classifier"], cwd=project_copy, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "classifier committed to DVC" in res.stdout and "press success once it is up" in res.stdout  # the prompts
    status = dvc(project_copy, "status", "demos@0", "classifier@0", "classifier@1", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
    clf = json.loads((project_copy / "data/classifier/s0/metrics.json").read_text())
    assert clf["recorded_episodes"] == 3 and 0 < clf["train_positives"] < clf["train_frames"]

    # a classifier-rewarded fine-tuning run: the person's demos and labels are kept, not recorded again
    res = hilstudy_repro(project_copy, "ft-scratch-clf@scratch-clf-0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "stage 'demos@0'" not in res.stdout and "stage 'classifier@0'" not in res.stdout
    summary = json.loads((project_copy / "data/finetune/scratch-clf-s0/metrics.json").read_text())
    assert summary["env_steps"] == 100 and summary["intervention_rate_mean"] > 0 and "reward_disagreement_rate" in summary

def test_fine_tuning_on_the_mock_arm_with_the_person_intervening(tmp_path):
    """Record demos, then fine-tune with env.kind real: the person takes over on schedule and presses success;
    evaluations run on the same arm connection (one robot, one teleoperator)."""
    from hilstudy import demos as D
    from hilstudy.finetune import finetune

    demo = [{"delta": (1.0, 0.0, 0.0)}] * 2 + [{"delta": (0.0, 0.0, -1.0), "gripper": "close", "success": True}]
    rescue = [{}] * 3 + [{"intervene": True, "delta": (0.0, 0.0, -1.0), "gripper": "close"}] * 3 + [{"success": True}]
    base = {"env.kind": "real", "env.max_episode_steps": 10, "demos.num_episodes": 2,
            "policy.actor_hidden_dims": [32, 32], "policy.critic_hidden_dims": [32, 32], "policy.num_critics": 2,
            "policy.latent_dim": 16, "policy.state_encoder_hidden_dim": 16,
            "finetune.env_steps": 60, "finetune.learning_starts": 20, "finetune.batch_size": 16,
            "finetune.eval_every": 30, "finetune.eval_episodes": 1, "finetune.checkpoint_every": 30,
            "finetune.log_every": 5, "finetune.init": "scratch"}
    rec = load(overrides={**base, "real": real_params(tmp_path, demo * 2).model_dump(mode="json")})
    D.record_demos(rec, tmp_path / "demos", progress=False)
    params = load(overrides={**base, "real": real_params(tmp_path, rescue * 20).model_dump(mode="json")})
    summary, run = finetune(params, tmp_path / "demos", tmp_path / "ft")
    assert summary["env_steps"] == 60 and summary["updates"] == 40
    episodes = run.logs["episodes"]
    assert episodes[0]["intervention_steps"] == 3 and episodes[0]["takeovers"] == 1 and episodes[0]["success"] == 1.0
    assert summary["offline_buffer"] > 6  # the demos' 6 frames plus the person's interventions
    assert [e["env_step"] for e in run.logs["evals"]] == [0, 30, 60]
    assert len(run.logs["updates"]) == 8 and all(np.isfinite(u["loss_critic"]) for u in run.logs["updates"])



def test_classifier_frames_labelled_by_the_person_train_the_classifier(tmp_path):
    """The person labels frames with the success key: a press starts the positives, the next ends them (a keyboard
    reports one step per press, a gamepad every step the button is held: both label alike); stop ends the episode
    without ending it at the first success; a re-recorded episode is dropped. The classifier trains on them."""
    from hilstudy.reward import load_frames, run_classifier

    pressed_twice = [{}, {}, {"success": True}, {}, {}, {"success": True}, {}, {"stop": True}]
    held = [{}, {"success": True}, {"success": True}, {"success": True}, {}, {"stop": True}]
    script = pressed_twice + [{}, {"rerecord": True}] + held
    params = load(overrides={
        "env.kind": "real", "env.max_episode_steps": 20,
        "real": real_params(tmp_path, script).model_dump(mode="json"),
        "classifier.episodes": 2, "classifier.val_episodes": 1, "classifier.steps": 20, "classifier.batch_size": 8,
        "classifier.hidden_dims": [16],
    })
    metrics = run_classifier(params, tmp_path / "clf")
    assert [(e["frames"], e["positives"]) for e in metrics["episodes"]] == [(8, 3), (6, 5)]
    frames = load_frames(tmp_path / "clf" / "frames", params.classifier)
    assert frames.label.tolist() == [0, 0, 1, 1, 1, 0, 0, 0] + [0, 1, 1, 1, 1, 1]
    assert frames.obs["observation.state"].shape == (14, 9)
    info = json.loads((tmp_path / "clf" / "frames" / "meta" / "info.json").read_text())
    assert info["robot_type"] == "hilstudy_mock_so101" and info["fps"] == params.real.fps
    assert {metrics["train_frames"], metrics["val_frames"]} == {8, 6} and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert (tmp_path / "clf" / "model" / "model.safetensors").exists()


def test_dvc_repro_never_labels_frames_for_a_person(monkeypatch, tmp_path):
    from hilstudy.params import INTERACTIVE_ENV
    from hilstudy.reward import record_frames

    monkeypatch.delenv(INTERACTIVE_ENV, raising=False)
    params = load(overrides={"env.kind": "real", "real.urdf_path": "arm.urdf"})
    with pytest.raises(RuntimeError, match="Run `hilstudy record classifier`"):
        record_frames(params, tmp_path / "frames")


def test_the_hardware_configs_are_lerobots_own():
    """The default robot and teleoperators resolve through lerobot's registries with the params' values."""
    so101 = robot_config(RealParams(cameras={"front": 0, "wrist": "/dev/video2"}, max_joint_step=7.5))
    # lerobot registers one config class under both names; `.type` reads back the first, so100_follower
    assert type(so101).__name__ == "SOFollowerRobotConfig" and so101.port == "/dev/ttyACM0" and so101.use_degrees
    assert so101.max_relative_target["elbow_flex"] == 7.5 and so101.max_relative_target["gripper"] == 100.0
    assert {n: c.index_or_path for n, c in so101.cameras.items()} == {"front": 0, "wrist": Path("/dev/video2")}
    assert teleop_config(RealParams()).type == "gamepad" and teleop_config(RealParams()).use_gripper
    assert teleop_config(RealParams(teleop="keyboard_ee")).type == "keyboard_ee"
