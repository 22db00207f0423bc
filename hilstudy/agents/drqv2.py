"""`drqv2`: DrQ-v2 (Yarats et al., 2021), devlog 059's original algorithm, as a lerobot RL algorithm.

Registered with `RLAlgorithmConfig.register_subclass("drqv2")`, built on lerobot 0.6.1's SAC machinery
(critic ensemble and targets, optimizers, checkpoint layout, data iterator) with DrQ-v2's update:

- **deterministic actor**: a = tanh(mean(s)) of lerobot's Gaussian actor network (its std head is unused), so
  a BC-pretrained actor (the `bc` stage's) starts DrQ-v2 exactly as it starts SAC;
- **clipped double Q**: the minimum over the critic ensemble (DrQ-v2's two critics: `policy.num_critics: 2`);
- **n-step returns**: transitions reach the buffers already summed over `n_step` steps
  (`hilstudy.agents.nstep`), each with its own discount gamma^m in `complementary_info["discount"]`
  (m < n where the episode ends inside the window);
- **random-shift augmentation** of camera images: lerobot's replay buffer (`use_drq`, pad 4 and crop,
  DrQ's) does it when sampling, as for SAC (lerobot's `random_shift`, eager: `hilstudy.finetune.make_buffer`);
- **scheduled exploration noise with clipping**: std falls linearly from `std_init` to `std_final` over
  `std_steps` env steps; acting adds N(0, std) to tanh(mean) (`NoisyActor`), and the critic target and the
  actor loss add noise clipped to +-`std_clip`; actions are clamped to [-1, 1] with a straight-through
  gradient, as DrQ-v2's truncated normal does.

The actor loss is DrQ-v2's with devlog 059's BC term on intervention transitions (`bc_weight`), computed
by `SACBCAlgorithm.bc_term`, gated and tested the same way as SAC's:

    L_actor = -mean(min_i Q_i(s, clip_noise(pi(s)))) + bc_weight * MSE(pi(s), a_human)   (intervention rows)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lerobot.rl.algorithms.configs import RLAlgorithmConfig, TrainingStats

from hilstudy.agents.sac_bc import SACBCAlgorithm, SACBCAlgorithmConfig

CLAMP_EPS = 1e-6  # DrQ-v2's TruncatedNormal keeps samples this far inside [-1, 1]


@RLAlgorithmConfig.register_subclass("drqv2")
@dataclass
class DrQv2AlgorithmConfig(SACBCAlgorithmConfig):
    """DrQ-v2's update on lerobot's SAC machinery (bc_weight, bc_mode, actor_warmup_updates as sac_bc's)."""

    # Steps summed into one stored transition (hilstudy.agents.nstep makes them; DrQ-v2 uses 3)
    n_step: int = 3
    # Exploration noise std at env step 0
    std_init: float = 1.0
    # Exploration noise std from env step `std_steps` on
    std_final: float = 0.1
    # Env steps of the linear std schedule
    std_steps: int = 5000
    # Noise clip in the critic target and the actor loss (DrQ-v2's stddev_clip)
    std_clip: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bc_mode != "fixed":
            raise ValueError("drqv2 supports bc_mode 'fixed' only (its actor loss has no entropy term to normalize)")
        if self.n_step < 1 or self.std_steps < 1 or not (0 <= self.std_final <= self.std_init) or self.std_clip < 0:
            raise ValueError(f"drqv2: bad schedule or n_step (n_step {self.n_step}, std {self.std_init}->{self.std_final} "
                             f"over {self.std_steps} steps, clip {self.std_clip})")  # fmt: skip


def std_schedule(step: int, std_init: float, std_final: float, std_steps: int) -> float:
    """DrQ-v2's `linear(init, final, duration)` schedule of the exploration std, by env step."""
    mix = min(max(step / std_steps, 0.0), 1.0)
    return (1.0 - mix) * std_init + mix * std_final


def deterministic_actions(actor, observations: dict[str, torch.Tensor], features: torch.Tensor | None = None) -> torch.Tensor:
    """tanh(mean(s)) of a lerobot Gaussian actor, without sampling (no RNG draw); the shared encoder detached
    as lerobot's actor forward does."""
    encoded = actor.encoder(observations, cache=features, detach=actor.encoder_is_shared)
    return torch.tanh(actor.mean_layer(actor.network(encoded)))


def noisy(mu: torch.Tensor, std: float, clip: float | None) -> torch.Tensor:
    """mu + N(0, std) noise (clipped to +-clip when given), clamped inside [-1, 1] with the gradient of mu
    passed straight through, as DrQ-v2's TruncatedNormal.sample."""
    eps = torch.randn_like(mu) * std
    if clip is not None:
        eps = eps.clamp(-clip, clip)
    x = mu + eps
    clamped = x.clamp(-1.0 + CLAMP_EPS, 1.0 - CLAMP_EPS)
    return x - x.detach() + clamped.detach()


class DrQv2Algorithm(SACBCAlgorithm):
    config_class = DrQv2AlgorithmConfig
    name = "drqv2"

    def __init__(self, policy, config: DrQv2AlgorithmConfig):
        super().__init__(policy, config)
        self.env_step = 0  # set by the runner before each update: the std schedule's clock

    @property
    def stddev(self) -> float:
        c: DrQv2AlgorithmConfig = self.config
        return std_schedule(self.env_step, c.std_init, c.std_final, c.std_steps)

    def _discounts(self, batch: dict[str, Any], like: torch.Tensor) -> torch.Tensor:
        """Per-row gamma^m of the n-step transitions (`complementary_info["discount"]`); gamma without it."""
        info = batch.get("complementary_info") or {}
        d = info.get("discount")
        if d is None:
            return torch.full_like(like, self.config.discount)
        return d.reshape(-1).to(like)

    def _compute_loss_critic(self, batch: dict[str, Any]) -> torch.Tensor:
        obs, feats = batch["state"], batch.get("observation_feature")
        next_obs, next_feats = batch["next_state"], batch.get("next_observation_feature")
        reward, done = batch["reward"], batch["done"]
        with torch.no_grad():
            next_action = noisy(deterministic_actions(self.policy.actor, next_obs, next_feats), self.stddev, self.config.std_clip)
            target_q = self._critic_forward(next_obs, next_action, use_target=True, observation_features=next_feats).min(dim=0)[0]
            target = reward + (1.0 - done) * self._discounts(batch, reward) * target_q
        q = self._critic_forward(obs, batch["action"], use_target=False, observation_features=feats)
        return F.mse_loss(q, target.unsqueeze(0).expand_as(q), reduction="none").mean(dim=1).sum()

    def _compute_loss_actor(self, batch: dict[str, Any]) -> torch.Tensor:
        obs, feats = batch["state"], batch.get("observation_feature")
        mu = deterministic_actions(self.policy.actor, obs, feats)
        action = noisy(mu, self.stddev, self.config.std_clip)
        min_q = self._critic_forward(obs, action, use_target=False, observation_features=feats).min(dim=0)[0]
        self.last_mean_q = float(min_q.detach().mean())
        bc = self.bc_mse(batch, mu)  # sac_bc's gating, on pi(s) = tanh(mean)
        self.last_bc_loss = float(bc.detach())
        loss = -min_q.mean()
        return loss if self.config.bc_weight == 0.0 else loss + self.config.bc_weight * bc

    def update(self, batch_iterator: Iterator) -> TrainingStats:
        """utd_ratio critic steps (each followed by the target update), then one actor step on the last batch."""
        clip = self.config.grad_clip_norm
        for i in range(self.config.utd_ratio):
            fb = self._prepare_forward_batch(next(batch_iterator))
            loss_critic = self._compute_loss_critic(fb)
            self.optimizers["critic"].zero_grad()
            loss_critic.backward()
            critic_grad = torch.nn.utils.clip_grad_norm_(self.critic_ensemble.parameters(), max_norm=clip).item()
            self.optimizers["critic"].step()
            if i < self.config.utd_ratio - 1:
                self._update_target_networks()
        stats = TrainingStats(losses={"loss_critic": loss_critic.item()}, grad_norms={"critic": critic_grad})
        loss_actor = self._compute_loss_actor(fb)
        self.optimizers["actor"].zero_grad()
        loss_actor.backward()
        actor_grad = torch.nn.utils.clip_grad_norm_(self.policy.actor.parameters(), max_norm=clip).item()
        if self._optimization_step >= self.config.actor_warmup_updates:
            self.optimizers["actor"].step()
        self._update_target_networks()
        self._optimization_step += 1
        stats.losses["loss_actor"] = loss_actor.item()
        stats.losses["loss_bc"] = self.last_bc_loss
        stats.grad_norms["actor"] = actor_grad
        stats.extra.update({"bc_fraction": self.last_bc_fraction, "mean_q": self.last_mean_q, "stddev": self.stddev})
        return stats


class NoisyActor:
    """DrQ-v2's acting: tanh(mean(s)) plus N(0, std) by the schedule at the current env step (`step_fn`),
    clamped inside [-1, 1]; the rollout policy of a drqv2 fine-tuning run (evaluation stays deterministic)."""

    def __init__(self, policy, preprocessor, config: DrQv2AlgorithmConfig, step_fn):
        self.policy, self.preprocessor, self.config, self.step_fn = policy, preprocessor, config, step_fn

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        from hilstudy.policy import check_images, observations, to_policy_batch

        batch = observations(self.preprocessor(to_policy_batch(obs, self.policy.config.device)))
        check_images(batch)
        c = self.config
        std = std_schedule(self.step_fn(), c.std_init, c.std_final, c.std_steps)
        was_training = self.policy.training
        self.policy.eval()
        try:
            with torch.no_grad():
                action = noisy(deterministic_actions(self.policy.actor, batch), std, None)
        finally:
            self.policy.train(was_training)
        return action[0].cpu().numpy().astype(np.float32)
