import copy

import pytest
import torch

from hilstudy.agents import SACBCAlgorithm, SACBCAlgorithmConfig, make_algorithm
from hilstudy.params import PolicyParams
from hilstudy.policy import make_policy, make_policy_config

STATE = 6
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (STATE,), "names": None},
    "action": {"dtype": "float32", "shape": (4,), "names": None},
}


def batch(n=32, interventions=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n)
    mask[:interventions] = 1.0
    return {
        "state": {"observation.state": torch.randn(n, STATE, generator=g)},
        "next_state": {"observation.state": torch.randn(n, STATE, generator=g)},
        "action": torch.rand(n, 4, generator=g) * 2 - 1,
        "reward": torch.rand(n, generator=g),
        "done": torch.zeros(n),
        "truncated": torch.zeros(n),
        "complementary_info": {"is_intervention": mask},
    }


def algo(cls=SACBCAlgorithm, seed=0, **kw):
    torch.manual_seed(seed)
    pcfg = make_policy_config(FEATURES, PolicyParams(actor_hidden_dims=[32], latent_dim=16, state_encoder_hidden_dim=16, critic_hidden_dims=[32]))
    policy, _, _ = make_policy(pcfg)
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import CriticNetworkConfig
    from lerobot.rl.algorithms.sac.configuration_sac import SACAlgorithmConfig

    cfg_cls = SACBCAlgorithmConfig if cls is SACBCAlgorithm else SACAlgorithmConfig
    cfg = cfg_cls(policy_config=pcfg, critic_network_kwargs=CriticNetworkConfig(hidden_dims=[32]), **kw)
    a = cls(policy, cfg)
    a.make_optimizers_and_scheduler()
    return a


def params_of(a):
    out = {f"policy.{k}": v.clone() for k, v in a.policy.state_dict().items()}
    out.update({f"algo.{k}": v.clone() for k, v in a.state_dict().items()})
    return out


def update(a, batches, seed=1):
    torch.manual_seed(seed)
    return a.update(iter(copy.deepcopy(batches)))


def test_registered_in_lerobots_registry():
    from lerobot.rl.algorithms.configs import RLAlgorithmConfig
    from lerobot.rl.algorithms.factory import make_algorithm_config

    assert RLAlgorithmConfig.get_choice_class("sac_bc") is SACBCAlgorithmConfig
    assert isinstance(make_algorithm_config("sac_bc", bc_weight=0.5), SACBCAlgorithmConfig)
    a = algo()
    assert isinstance(make_algorithm(a.policy, a.config), SACBCAlgorithm)
    with pytest.raises(ValueError, match="bc_mode"):
        SACBCAlgorithmConfig(bc_mode="dagger")


def test_bc_term_is_nonzero_with_interventions_and_moves_the_actor():
    with_bc, without = algo(bc_weight=0.5), algo(bc_weight=0.0)
    stats = update(with_bc, [batch()])
    update(without, [batch()])
    assert stats.losses["loss_bc"] > 0 and stats.extra["bc_fraction"] == 0.5
    moved = [k for k in params_of(with_bc) if k.startswith("policy.actor.mean") and not torch.equal(params_of(with_bc)[k], params_of(without)[k])]
    assert moved, "the BC term did not change the actor update"


def test_mask_reaches_the_actor_update_with_utd():
    # lerobot builds the batch the actor update uses without complementary_info (DESIGN.md trap)
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    plain = algo(SACAlgorithm)
    assert "complementary_info" not in plain._prepare_forward_batch(batch(), include_complementary_info=False)
    a = algo(bc_weight=0.5, utd_ratio=3)
    batches = [batch(interventions=0, seed=1), batch(interventions=0, seed=2), batch(interventions=8, seed=3)]
    stats = update(a, batches)
    assert stats.losses["loss_bc"] > 0 and stats.extra["bc_fraction"] == 0.25


@pytest.mark.parametrize("interventions", [16, 0])
def test_bc_weight_zero_is_plain_sac(interventions):
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    ours, plain = algo(bc_weight=0.0), algo(SACAlgorithm)
    assert all(torch.equal(v, params_of(plain)[k]) for k, v in params_of(ours).items())
    b = [batch(interventions=interventions)]
    s1, s2 = update(ours, b), update(plain, b)
    assert s1.losses["loss_actor"] == s2.losses["loss_actor"] and s1.losses["loss_critic"] == s2.losses["loss_critic"]
    for k, v in params_of(ours).items():
        assert torch.equal(v, params_of(plain)[k]), k


def test_no_interventions_gives_zero_bc_and_plain_sac_even_with_weight():
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    ours, plain = algo(bc_weight=0.5), algo(SACAlgorithm)
    stats = update(ours, [batch(interventions=0)])
    update(plain, [batch(interventions=0)])
    assert stats.losses["loss_bc"] == 0.0
    for k, v in params_of(ours).items():
        assert torch.equal(v, params_of(plain)[k]), k


def test_bc_compares_the_squashed_action():
    a = algo(bc_weight=1.0)
    b = batch()
    with torch.no_grad():
        _, _, means = a.policy.actor(b["state"], None)
    assert (means.abs() > 0).all()
    b["action"] = torch.tanh(means)  # the demo action equals the squashed mean: zero loss...
    assert float(a.bc_term(b, means)) == pytest.approx(0.0, abs=1e-12)
    b["action"] = means.clone()  # ...while comparing with the pre-tanh mean would not be
    assert float(a.bc_term(b, means)) > 0


def test_q_normalized_mode_runs_and_weights_bc():
    a = algo(bc_weight=1.0, bc_mode="q_normalized")
    stats = update(a, [batch()])
    assert stats.losses["loss_bc"] > 0 and "mean_q" in stats.extra


def test_actor_warmup_freezes_only_the_actor():
    a = algo(bc_weight=0.5, actor_warmup_updates=2)
    before = params_of(a)
    update(a, [batch()])
    after = params_of(a)
    actor_keys = [k for k in before if k.startswith("policy.actor.") and "encoder" not in k]
    critic_keys = [k for k in before if k.startswith("algo.critic_ensemble")]
    assert all(torch.equal(before[k], after[k]) for k in actor_keys)
    assert any(not torch.equal(before[k], after[k]) for k in critic_keys)
    update(a, [batch(seed=5)])
    update(a, [batch(seed=6)])  # the third update: the actor learns again
    assert any(not torch.equal(after[k], params_of(a)[k]) for k in actor_keys)
