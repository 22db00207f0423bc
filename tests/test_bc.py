import numpy as np
import pytest
import torch

from hilstudy import params as P
from hilstudy.bc import bc_loss, check_features, load_demo_tensors, split_episodes, train_bc
from hilstudy.demos import record_demos
from hilstudy.policy import load_policy


def small(**bc) -> P.StudyParams:
    return P.validate({"demos": {"num_episodes": 4}, "bc": {"steps": 120, "batch_size": 64, "val_episodes": 1,
                                                            "val_every": 20, "eval_episodes": 2, **bc}})


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc") / "demos"
    record_demos(small(), root, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bcout")
    return out, train_bc(small(), demos, out)


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
    for key in ["steps", "epochs", "samples", "final_train_loss", "final_val_loss", "eval_success_rate"]:
        assert key in m
    assert m["steps"] == 120 and m["val_episodes"] == 1 and m["train_episodes"] == 3
    assert m["timing"]["train_time_s"] > 0
    assert (out / "policy" / "model.safetensors").exists() and not (out / "policy.partial").exists()


def test_only_the_actor_trains_and_the_shared_encoder_stays(trained, demos):
    from hilstudy.policy import make_policy, make_policy_config
    from hilstudy.seeding import seed_everything

    out, _ = trained
    seed_everything(small().bc.seed)
    init, _, _ = make_policy(make_policy_config(load_demo_tensors(demos).features, small().policy))
    loaded, _, _ = load_policy(out / "policy")
    enc = "actor.encoder.state_encoder.0.weight"
    assert torch.equal(loaded.state_dict()[enc], init.state_dict()[enc])  # shared encoder: critic's to train
    assert not torch.equal(loaded.actor.mean_layer.weight, init.actor.mean_layer.weight)


def test_bc_is_reproducible(trained, demos, tmp_path):
    _, m = trained
    again = train_bc(small(), demos, tmp_path)
    assert again["history"] == m["history"]
    assert (tmp_path / "policy" / "model.safetensors").read_bytes() == (trained[0] / "policy" / "model.safetensors").read_bytes()


def test_loss_uses_the_squashed_action(trained):
    out, _ = trained
    pol, _, _ = load_policy(out / "policy")
    obs = {"observation.state": torch.zeros(4, pol.config.input_features["observation.state"].shape[0])}
    with torch.no_grad():
        _, _, means = pol.actor(obs, None)
        target = torch.tanh(means)
        assert float(bc_loss(pol, obs, target)) == pytest.approx(0.0, abs=1e-12)


def test_demos_from_another_layout_are_refused(demos):
    from hilstudy.demos import dataset_features
    from hilstudy.sim import make_env

    feats = load_demo_tensors(demos).features
    with make_env(P.EnvParams(obs="pixels", image_size=32)) as env:
        with pytest.raises(ValueError, match="re-record the demos"):
            check_features(feats, dataset_features(env), demos)
