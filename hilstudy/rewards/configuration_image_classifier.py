"""Config of the image success classifier (registered as `hilstudy_image_classifier`): lerobot's
`RewardClassifierConfig` with a local backbone that may train."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs.rewards import RewardModelConfig
from lerobot.rewards.classifier.configuration_classifier import RewardClassifierConfig


@RewardModelConfig.register_subclass(name="hilstudy_image_classifier")
@dataclass
class ImageClassifierConfig(RewardClassifierConfig):
    """lerobot's CNN classifier; `model_name` is a local folder holding the backbone (see hilstudy.reward)."""

    train_backbone: bool = True  # train the backbone too (it starts random here); lerobot freezes it (made for pretrained ones)
    learning_rate: float = 3e-4  # AdamW learning rate
