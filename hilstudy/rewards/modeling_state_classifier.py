"""The state-input success classifier, a lerobot `PreTrainedRewardModel` (saved and loaded lerobot's way)."""

from __future__ import annotations

import torch
from lerobot.rewards.pretrained import PreTrainedRewardModel
from lerobot.utils.constants import REWARD
from torch import Tensor, nn

from hilstudy.rewards.configuration_state_classifier import STATE_KEY, StateClassifierConfig


class StateClassifierRewardModel(PreTrainedRewardModel):
    """Logit of success from the (preprocessed) state; reward = 1 when P(success) > threshold."""

    name = "hilstudy_state_classifier"
    config_class = StateClassifierConfig

    def __init__(self, config: StateClassifierConfig, **kwargs):
        super().__init__(config)
        config.validate_features()
        dim = config.input_features[STATE_KEY].shape[0]
        layers: list[nn.Module] = []
        for width in config.hidden_dims:
            layers += [nn.Linear(dim, width), nn.LayerNorm(width), nn.ReLU(), nn.Dropout(config.dropout_rate)]
            dim = width
        layers.append(nn.Linear(dim, 1))
        self.net = nn.Sequential(*layers)

    def success_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) logits of P(success) for a preprocessed batch."""
        return self.net(batch[STATE_KEY]).squeeze(-1)

    def predict_reward(self, batch: dict[str, Tensor], threshold: float = 0.5) -> Tensor:
        return (torch.sigmoid(self.success_logits(batch)) > threshold).float()

    def compute_reward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.predict_reward(batch)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """lerobot's training interface: BCE against batch['next.reward'] (the frame's success label)."""
        logits = self.success_logits(batch)
        labels = batch[REWARD].reshape(logits.shape).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        correct = int(((logits > 0).float() == labels).sum())
        return loss, {"accuracy": 100.0 * correct / len(labels), "correct": correct, "total": len(labels)}
