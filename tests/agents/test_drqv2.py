"""DrQ-v2 (`algorithm: drqv2`): registry, noise schedule and clipping, augmentation, critic target, BC gating."""

import copy
import itertools

import pytest
import torch

from hilstudy.agents import DrQv2Algorithm, DrQv2AlgorithmConfig, make_algorithm
from hilstudy.agents.drqv2 import deterministic_actions, noisy, std_schedule
from hilstudy.params import PolicyParams
from hilstudy.policy import make_policy, make_policy_config

STATE = 6
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (STATE,), "names": None},
    "action": {"dtype": "float32", "shape": (4,), "names": None},
}


def batch(n=32, interventions=16, seed=0, discount=None, done=None):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n)
    mask[:interventions] = 1.0
    info = {"is_intervention": mask}
    if discount is not None:
        info["discount"] = torch.full((n,), float(discount))
    return {
        "state": {"observation.state": torch.randn(n, STATE, generator=g)},
        "next_state": {"observation.state": torch.randn(n, STATE, generator=g)},
        "action": torch.rand(n, 4, generator=g) * 2 - 1,
        "reward": torch.rand(n, generator=g),
        "done": torch.zeros(n) if done is None else torch.full((n,), float(done)),
        "truncated": torch.zeros(n),
        "complementary_info": info,
    }


def algo(seed=0, **kw):
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import CriticNetworkConfig

    torch.manual_seed(seed)
    pcfg = make_policy_config(FEATURES, PolicyParams(actor_hidden_dims=[32], latent_dim=16, state_encoder_hidden_dim=16, critic_hidden_dims=[32]))
    policy, _, _ = make_policy(pcfg)
    cfg = DrQv2AlgorithmConfig(policy_config=pcfg, critic_network_kwargs=CriticNetworkConfig(hidden_dims=[32]), **kw)
    a = DrQv2Algorithm(policy, cfg)
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

    assert RLAlgorithmConfig.get_choice_class("drqv2") is DrQv2AlgorithmConfig
    assert isinstance(make_algorithm_config("drqv2", n_step=3), DrQv2AlgorithmConfig)
    a = algo()
    assert isinstance(make_algorithm(a.policy, a.config), DrQv2Algorithm)
    with pytest.raises(ValueError, match="bc_mode 'fixed' only"):
        DrQv2AlgorithmConfig(bc_mode="q_normalized")
    with pytest.raises(ValueError, match="bad schedule"):
        DrQv2AlgorithmConfig(std_init=0.1, std_final=0.5)


def test_noise_schedule_is_drqv2s_linear():
    assert std_schedule(0, 1.0, 0.1, 1000) == 1.0
    assert std_schedule(500, 1.0, 0.1, 1000) == pytest.approx(0.55)
    assert std_schedule(1000, 1.0, 0.1, 1000) == pytest.approx(0.1)
    assert std_schedule(10**6, 1.0, 0.1, 1000) == pytest.approx(0.1)
    a = algo(std_init=1.0, std_final=0.2, std_steps=100)
    a.env_step = 50
    assert a.stddev == pytest.approx(0.6)
    assert update(a, [batch()]).extra["stddev"] == pytest.approx(0.6)


def test_noise_is_clipped_clamped_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    mu = (torch.rand(10_000, 4) * 1.6 - 0.8).requires_grad_(True)
    a = noisy(mu, std=5.0, clip=0.3)
    assert ((a - mu).abs() <= 0.3 + 1e-6).all()  # the clip bounds the noise whatever the std
    assert (a.abs() < 1.0).all()  # clamped inside [-1, 1]
    a.sum().backward()
    assert torch.equal(mu.grad, torch.ones_like(mu))  # straight through, even where clamped
    free = noisy(torch.zeros(20_000, 1), std=0.5, clip=None)
    assert free.std().item() == pytest.approx(0.5, rel=0.05)  # unclipped acting noise has the scheduled std


def test_augmentation_is_a_random_shift_of_at_most_4_pixels():
    """lerobot's DrQ augmentation (the replay buffer's `use_drq`, on for pixel runs): same shape, and each image
    is its original shifted by at most 4 pixels (edges replicated)."""
    import torch.nn.functional as F
    from lerobot.rl.buffer import random_shift

    torch.manual_seed(0)
    images = torch.rand(8, 3, 16, 16)
    out = random_shift(images, pad=4)
    assert out.shape == images.shape
    padded = F.pad(images, (4, 4, 4, 4), mode="replicate")
    shifts = set()
    for i in range(len(images)):
        match = [(dy, dx) for dy, dx in itertools.product(range(9), range(9))
                 if torch.allclose(out[i], padded[i, :, dy : dy + 16, dx : dx + 16])]  # fmt: skip
        assert match, f"image {i} is not a shift within 4 pixels"
        shifts.add(match[0])
    assert len(shifts) > 1  # shifts are drawn per image


def test_critic_target_uses_the_n_step_discount_and_stops_at_done():
    a = algo()
    for discount, done in ((0.0, 0.0), (0.5, 1.0)):  # no bootstrap either way: the target is the reward
        b = a._prepare_forward_batch(batch(discount=discount, done=done))
        q = a._critic_forward(b["state"], b["action"]).detach()
        expect = ((q - b["reward"].unsqueeze(0)) ** 2).mean(dim=1).sum()
        assert float(a._compute_loss_critic(b)) == pytest.approx(float(expect), rel=1e-6)
    torch.manual_seed(3)
    gamma3 = float(a._compute_loss_critic(a._prepare_forward_batch(batch(discount=0.9**3))))
    torch.manual_seed(3)
    gamma1 = float(a._compute_loss_critic(a._prepare_forward_batch(batch())))  # no discount key: config.discount
    assert gamma3 != gamma1


def test_bc_term_is_nonzero_with_interventions_and_moves_the_actor():
    with_bc, without = algo(bc_weight=0.5), algo(bc_weight=0.0)
    stats = update(with_bc, [batch()])
    update(without, [batch()])
    assert stats.losses["loss_bc"] > 0 and stats.extra["bc_fraction"] == 0.5
    moved = [k for k in params_of(with_bc) if k.startswith("policy.actor.mean") and not torch.equal(params_of(with_bc)[k], params_of(without)[k])]
    assert moved, "the BC term did not change the actor update"


def test_no_interventions_gives_zero_bc_and_the_same_update_as_without_bc():
    ours, plain = algo(bc_weight=0.5), algo(bc_weight=0.0)
    stats = update(ours, [batch(interventions=0)])
    update(plain, [batch(interventions=0)])
    assert stats.losses["loss_bc"] == 0.0
    for k, v in params_of(ours).items():
        assert torch.equal(v, params_of(plain)[k]), k


def test_bc_compares_the_deterministic_action():
    a = algo(bc_weight=1.0)
    b = batch()
    with torch.no_grad():
        mu = deterministic_actions(a.policy.actor, b["state"])
    b["action"] = mu.clone()
    assert float(a.bc_mse(b, mu)) == pytest.approx(0.0, abs=1e-12)
    b["action"] = -mu
    assert float(a.bc_mse(b, mu)) > 0


def test_actor_warmup_freezes_only_the_actor():
    a = algo(bc_weight=0.5, actor_warmup_updates=2)
    before = params_of(a)
    update(a, [batch()])
    after = params_of(a)
    actor_keys = [k for k in before if k.startswith("policy.actor.") and "encoder" not in k]
    assert all(torch.equal(before[k], after[k]) for k in actor_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("algo.critic_ensemble"))
