import json

import numpy as np
import pytest
import torch

from hilstudy import params as P
from hilstudy.bc import bc_loss, check_features, load_demo_tensors, run_bc, split_episodes, train_bc
from hilstudy.demos import record_demos
from hilstudy.policy import load_policy


def small(**bc) -> P.StudyParams:
    return P.validate({"demos": {"num_episodes": 4},
                       "bc": {"steps": 200, "batch_size": 64, "val_episodes": 1, "val_every": 25, "eval_episodes": 2, **bc}})


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc") / "demos"
    record_demos(small(), root, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bcout")
    return out, run_bc(small(), demos, out)


def test_split_holds_out_whole_episodes():
    ep = np.repeat(np.arange(5), 3)
    tr, va = split_episodes(ep, 2, seed=0)
    assert set(ep[tr]).isdisjoint(ep[va]) and len(set(ep[va])) == 2 and len(tr) + len(va) == 15
    assert np.array_equal(va, split_episodes(ep, 2, seed=0)[1])
    with pytest.raises(ValueError, match="val_episodes"):
        split_episodes(ep, 5, seed=0)


def test_validation_loss_falls_and_metrics_are_reported(trained):
    out, m = trained
    assert m["final_val_loss"] < 0.5 * m["initial_val_loss"]
    assert m["history"]["val_loss"][0] == m["initial_val_loss"] and m["history"]["val_step"][0] == 0
    for key in ["steps", "epochs", "samples", "final_train_loss", "final_val_loss", "eval_success_rate",
                "eval_jitter", "eval_sampled_success_rate", "eval_sampled_jitter"]:
        assert key in m
    assert m["steps"] == 200 and m["val_episodes"] == 1 and m["train_episodes"] == 3
    assert m["epochs"] == pytest.approx(200 * 64 / m["samples"])
    assert m["timing"]["train_time_s"] > 0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert "history" not in on_disk and "timing" not in on_disk and on_disk["steps"] == 200
    assert set(json.loads((out / "timing.json").read_text())) == {"train_time_s", "eval_time_s"}
    assert (out / "policy" / "model.safetensors").exists() and not (out / "policy.partial").exists()


def test_dvclive_curves_for_dvc_plots(trained):
    out, m = trained
    live = out / "live"
    files = sorted(str(p.relative_to(live)) for p in live.rglob("*") if p.is_file())
    assert files == ["metrics.json", "plots/metrics/bc/train_loss.tsv", "plots/metrics/bc/val_loss.tsv"]
    assert not (out / "live.partial").exists() and not list(out.rglob("dvc.yaml"))
    train = (live / "plots/metrics/bc/train_loss.tsv").read_text().splitlines()
    val = (live / "plots/metrics/bc/val_loss.tsv").read_text().splitlines()
    assert train[0] == "step\ttrain_loss" and val[0] == "step\tval_loss"  # no timestamps: same bytes every run
    assert [int(r.split("\t")[0]) for r in train[1:]] == list(range(1, 201))
    assert [int(r.split("\t")[0]) for r in val[1:]] == [0, 25, 50, 75, 100, 125, 150, 175, 200]
    assert float(val[-1].split("\t")[1]) == pytest.approx(m["final_val_loss"])


def test_saved_policy_loads_with_plain_lerobot(trained):
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    out, _ = trained
    plain = GaussianActorPolicy.from_pretrained(out / "policy")
    verified, _, _ = load_policy(out / "policy")
    for k, v in verified.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k


def test_only_the_actor_trains_and_the_shared_encoder_stays(trained, demos):
    from hilstudy.policy import make_policy, make_policy_config
    from hilstudy.seeding import seed_everything

    out, m = trained
    seed_everything(small().bc.seed)
    init, _, _ = make_policy(make_policy_config(load_demo_tensors(demos).features, small().policy))
    loaded, _, _ = load_policy(out / "policy")
    before, after = init.state_dict(), loaded.state_dict()
    for k in after:
        if k.startswith(("encoder_critic.", "encoder_actor.", "actor.encoder.")):  # shared: the critic's to train
            assert torch.equal(after[k], before[k]), k
    assert not torch.equal(loaded.actor.mean_layer.weight, init.actor.mean_layer.weight)
    assert not torch.equal(loaded.actor.network.net[0].weight, init.actor.network.net[0].weight)
    assert m["trainable_parameters"] == sum(p.numel() for p in init.get_optim_params()["actor"])
    assert all(p.requires_grad for p in loaded.parameters())  # lerobot's flags, not BC's freeze


def test_bc_is_reproducible(trained, demos, tmp_path):
    out, m = trained
    again = run_bc(small(), demos, tmp_path)
    assert again["history"] == m["history"]
    for rel in ["policy/model.safetensors", "policy/config.json", "metrics.json",
                "live/plots/metrics/bc/train_loss.tsv", "live/plots/metrics/bc/val_loss.tsv"]:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_loss_uses_the_squashed_action(trained):
    out, _ = trained
    pol, _, _ = load_policy(out / "policy")
    obs = {"observation.state": torch.zeros(4, pol.config.input_features["observation.state"].shape[0])}
    with torch.no_grad():
        _, _, means = pol.actor(obs, None)
        assert float(bc_loss(pol, obs, torch.tanh(means))) == pytest.approx(0.0, abs=1e-12)
        expected = torch.nn.functional.mse_loss(torch.tanh(means), means)  # pre-tanh means as targets
        assert float(bc_loss(pol, obs, means)) == pytest.approx(float(expected))


def test_demos_from_another_layout_are_refused(demos):
    from hilstudy.demos import dataset_features
    from hilstudy.sim import make_env

    feats = load_demo_tensors(demos).features
    with make_env(P.EnvParams(obs="pixels", image_size=48)) as env:
        with pytest.raises(ValueError, match="re-record the demos"):
            check_features(feats, dataset_features(env), demos)


def test_too_many_validation_episodes_fail_before_training(demos, tmp_path):
    with pytest.raises(ValueError, match=r"bc.val_episodes \(4\)"):
        train_bc(small(val_episodes=4), demos, tmp_path)
    assert not (tmp_path / "policy").exists()


def test_a_nan_loss_stops_bc_naming_the_step_and_keeps_the_previous_outputs(trained, demos, monkeypatch):
    """A NaN loss (here forced at step 3) stops training before the next optimizer step; the stage's
    outputs from the last good run stay as they were."""
    import hilstudy.bc as bc
    from hilstudy.faults import NumericalFault

    out, _ = trained

    def outputs():  # the stage's outputs (a failed run may leave its *.partial work folders; the next run clears them)
        return {f: f.read_bytes() for f in out.rglob("*") if f.is_file() and not any(p.endswith(".partial") for p in f.parts)}

    before = outputs()
    real, calls = bc.bc_loss, []

    def nan_at_step_3(*args):
        calls.append(1)
        loss = real(*args)
        return loss * float("nan") if len(calls) == 4 else loss  # call 1 is the step-0 validation loss

    monkeypatch.setattr(bc, "bc_loss", nan_at_step_3)
    with pytest.raises(NumericalFault, match=r"bc: step 3: bc train loss = nan; stopped"):
        run_bc(small(), demos, out)
    assert outputs() == before


KILLABLE = """
import json, sys
from hilstudy import params as P
from hilstudy.bc import run_bc
run_bc(P.validate(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3])
"""


def checkpointed_step(out) -> int:
    try:
        return torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def test_sigkill_during_bc_resumes_from_the_last_checkpoint_to_the_same_weights(demos, tmp_path):
    """Kill BC (SIGKILL) at random points after checkpoints, twice; running it again resumes from the
    last checkpoint and ends with an uninterrupted run's weights, curves and metrics, byte for byte."""
    import signal
    import subprocess
    import sys
    import time

    params = small(steps=300, checkpoint_every=40, eval_episodes=1)
    reference = run_bc(params, demos, tmp_path / "ref")
    assert not (tmp_path / "ref" / "checkpoint.pt").exists()  # removed once the weights are in policy/
    out = tmp_path / "killed"
    rng = np.random.default_rng(3)
    kills = []
    for _ in range(2):  # a kill, a resume that is killed in turn, a resume that finishes
        before = checkpointed_step(out)
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, json.dumps(params.model_dump(mode="json")), str(demos), str(out)])
        while proc.poll() is None and checkpointed_step(out) <= before:
            time.sleep(0.1)  # each look loads the checkpoint: not too often
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        if proc.wait() == 0:
            break
        kills.append(checkpointed_step(out))
    print("checkpointed BC step at each kill:", kills)
    assert kills and kills[-1] > 0, "no kill after a checkpoint: the test tried no resume"
    again = run_bc(params, demos, out)
    assert again["history"] == reference["history"]
    assert {k: v for k, v in again.items() if k not in ("timing", "history")} == \
        {k: v for k, v in reference.items() if k not in ("timing", "history")}
    for rel in ["policy/model.safetensors", "metrics.json", "live/plots/metrics/bc/train_loss.tsv", "live/plots/metrics/bc/val_loss.tsv"]:
        assert (out / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), rel


def test_a_bc_checkpoint_records_the_code_and_versions(tmp_path, monkeypatch):
    """A killed BC run resumes only under the code and package versions that made its checkpoint."""
    import hilstudy.provenance as prov
    from hilstudy.bc import bc_digest

    params = P.validate({"demos": {"num_episodes": 1}})
    record_demos(params, tmp_path / "demos", progress=False)
    before = bc_digest(params, tmp_path / "demos")
    assert bc_digest(params, tmp_path / "demos") == before
    monkeypatch.setattr(prov, "provenance", lambda entry: {"code": "0" * 16, "versions": prov.versions_digest()})
    assert bc_digest(params, tmp_path / "demos") != before
