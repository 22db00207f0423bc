"""Config of the state-input success classifier (registered as `hilstudy_state_classifier`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode
from lerobot.configs.rewards import RewardModelConfig
from lerobot.optim import AdamWConfig, OptimizerConfig

STATE_KEY = "observation.state"


@RewardModelConfig.register_subclass(name="hilstudy_state_classifier")
@dataclass
class StateClassifierConfig(RewardModelConfig):
    """P(success | observation.state): an MLP with LayerNorm, trained with binary cross-entropy."""

    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])  # MLP widths
    dropout_rate: float = 0.1  # dropout after each hidden layer (training only)
    learning_rate: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip_norm: float = 1.0  # gradient norm clip
    device: str = "cpu"  # where the model runs
    # the state is normalized with the training frames' mean and std, by the saved preprocessor (training and run time alike)
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {"STATE": NormalizationMode.MEAN_STD, "REWARD": NormalizationMode.IDENTITY}
    )

    def get_optimizer_preset(self) -> OptimizerConfig:
        return AdamWConfig(lr=self.learning_rate, weight_decay=self.weight_decay, grad_clip_norm=self.grad_clip_norm)

    def validate_features(self) -> None:
        if STATE_KEY not in self.input_features:
            raise ValueError(f"the state classifier needs '{STATE_KEY}' in its input features, got {list(self.input_features)}")
