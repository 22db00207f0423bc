"""`sac_bc`: lerobot 0.6.1's SAC with devlog 059's BC loss on intervention transitions.

Registered with `RLAlgorithmConfig.register_subclass("sac_bc")`; nothing of lerobot is copied or patched.
The actor loss is SAC's, plus a behaviour-cloning term on the transitions a human (the operator) chose:

    fixed          L = L_SAC + bc_weight * MSE(tanh(mean(s)), a_human)                (the devlog's formula)
    q_normalized   L = (bc_alpha / mean|Q|) * L_SAC + bc_weight * MSE(...)            (TD3+BC's weighting)

The MSE compares the *squashed* action `tanh(mean)` with the stored action (both in [-1, 1]), averaged
over the intervention rows of the batch only; with no intervention in the batch the term is exactly zero.

Two lerobot traps are handled here (see DESIGN.md):
- `SACAlgorithm.update` builds the batch its actor update uses without `complementary_info`, so a BC
  loss that reads `is_intervention` there silently sees nothing. `_prepare_forward_batch` keeps it.
- `RLTrainer` samples batches in a prefetch thread by default, which makes the sampling order (and so
  the run) depend on thread timing, and even lerobot's synchronous iterator samples batches ahead, from a
  buffer that has grown since. `configure_data_iterator` samples each batch when the update asks for it,
  so a run is reproducible and a resumed run continues exactly where the stopped one was.
With `bc_weight = 0` an update is the same computation as lerobot's `SACAlgorithm.update` (tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lerobot.rl.algorithms.configs import RLAlgorithmConfig, TrainingStats
from lerobot.rl.algorithms.sac.configuration_sac import SACAlgorithmConfig
from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

BC_MODES = ("fixed", "q_normalized")


@RLAlgorithmConfig.register_subclass("sac_bc")
@dataclass
class SACBCAlgorithmConfig(SACAlgorithmConfig):
    """SAC plus a BC term on intervention transitions."""

    # Weight of the BC term (0 disables it: plain SAC). Devlog 059 used 0.5.
    bc_weight: float = 0.0
    # "fixed": L_SAC + bc_weight*MSE; "q_normalized": (bc_alpha/mean|Q|)*L_SAC + bc_weight*MSE (TD3+BC)
    bc_mode: str = "fixed"
    # TD3+BC's alpha for the Q-normalized weighting (their default 2.5)
    bc_alpha: float = 2.5
    # Number of initial updates during which the actor does not learn (critic warm-up protects a BC start)
    actor_warmup_updates: int = 0

    def __post_init__(self) -> None:
        if self.bc_mode not in BC_MODES:
            raise ValueError(f"bc_mode must be one of {BC_MODES}, got {self.bc_mode!r}")
        if self.bc_weight < 0:
            raise ValueError(f"bc_weight must be >= 0, got {self.bc_weight}")


class SACBCAlgorithm(SACAlgorithm):
    config_class = SACBCAlgorithmConfig
    name = "sac_bc"

    def __init__(self, policy, config: SACBCAlgorithmConfig):
        super().__init__(policy, config)
        self.last_bc_loss = 0.0
        self.last_bc_fraction = 0.0
        self.last_mean_q = 0.0

    def configure_data_iterator(self, data_mixer, batch_size: int, *, async_prefetch: bool = True, queue_size: int = 2) -> Iterator:
        def lazily() -> Iterator:  # one batch per request, sampled from the buffers as they are now
            while True:
                yield data_mixer.sample(batch_size)

        return lazily()

    def _prepare_forward_batch(self, batch, *, include_complementary_info: bool = True) -> dict[str, Any]:
        # lerobot passes include_complementary_info=False for the batch the actor update uses
        return super()._prepare_forward_batch(batch, include_complementary_info=True)

    def bc_term(self, batch: dict[str, Any], means: torch.Tensor) -> torch.Tensor:
        """MSE(tanh(mean), stored action) over the batch's intervention rows; 0 when there are none."""
        return self.bc_mse(batch, torch.tanh(means))

    def bc_mse(self, batch: dict[str, Any], actions: torch.Tensor) -> torch.Tensor:
        """MSE(actions, stored action) over the batch's intervention rows (`complementary_info.is_intervention`);
        exactly 0 when there are none. `actions` are squashed, in [-1, 1], as the stored ones."""
        info = batch.get("complementary_info") or {}
        mask = info.get("is_intervention")
        if mask is None:
            self.last_bc_fraction = 0.0
            return actions.new_zeros(())
        mask = mask.reshape(-1).to(actions.device) > 0.5
        self.last_bc_fraction = float(mask.float().mean())
        if not bool(mask.any()):
            return actions.new_zeros(())
        return F.mse_loss(actions[mask], batch["action"][mask, : actions.shape[-1]])

    def _compute_loss_actor(self, batch: dict[str, Any]) -> torch.Tensor:
        observations = batch["state"]
        observation_features = batch.get("observation_feature")
        actions_pi, log_probs, means = self.policy.actor(observations, observation_features)
        q_preds = self._critic_forward(
            observations=observations, actions=actions_pi, use_target=False, observation_features=observation_features
        )
        min_q_preds = q_preds.min(dim=0)[0]
        sac_loss = ((self.temperature * log_probs) - min_q_preds).mean()
        self.last_mean_q = float(min_q_preds.detach().mean())
        cfg: SACBCAlgorithmConfig = self.config
        if cfg.bc_weight == 0.0 and cfg.bc_mode == "fixed":
            self.last_bc_loss = float(self.bc_term(batch, means.detach()))  # reported, not optimized
            return sac_loss
        bc = self.bc_term(batch, means)
        self.last_bc_loss = float(bc.detach())
        if cfg.bc_mode == "q_normalized":
            sac_loss = sac_loss * (cfg.bc_alpha / min_q_preds.detach().abs().mean().clamp_min(1e-6))
        return sac_loss + cfg.bc_weight * bc

    def update(self, batch_iterator: Iterator) -> TrainingStats:
        frozen = self._optimization_step < self.config.actor_warmup_updates
        actor_opt = self.optimizers["actor"]
        if frozen:  # lr 0: the actor's step changes nothing while the critics warm up
            saved = [g["lr"] for g in actor_opt.param_groups]
            for g in actor_opt.param_groups:
                g["lr"] = 0.0
        try:
            stats = super().update(batch_iterator)
        finally:
            if frozen:
                for g, lr in zip(actor_opt.param_groups, saved, strict=True):
                    g["lr"] = lr
        if "loss_actor" in stats.losses:
            stats.losses["loss_bc"] = self.last_bc_loss
            stats.extra["bc_fraction"] = self.last_bc_fraction
            stats.extra["mean_q"] = self.last_mean_q
        return stats


def make_algorithm(policy, config: RLAlgorithmConfig):
    """lerobot's `make_algorithm` only knows "sac" (its class lookup is hard-coded); this one knows ours."""
    from hilstudy.agents.drqv2 import DrQv2Algorithm, DrQv2AlgorithmConfig

    if isinstance(config, DrQv2AlgorithmConfig):
        return DrQv2Algorithm(policy, config)
    if isinstance(config, SACBCAlgorithmConfig):
        return SACBCAlgorithm(policy, config)
    if type(config) is SACAlgorithmConfig:
        return SACAlgorithm(policy, config)
    raise ValueError(f"no algorithm class for config type {type(config).__name__}")
