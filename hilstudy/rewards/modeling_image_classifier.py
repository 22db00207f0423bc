"""lerobot 0.6.1's image reward classifier, with the part meant to train actually training.

lerobot's `Classifier._get_encoder_output` runs the whole per-camera encoder (backbone, spatial embedding,
dropout, projection, LayerNorm) under `torch.no_grad()`, so of its trainable parameters only the final
head ever receives a gradient (checked in tests/rewards). Here only a frozen backbone runs without
gradients; with `train_backbone` (the default: the backbone starts random) the backbone learns too.
"""

from __future__ import annotations

import contextlib

import torch
from lerobot.rewards.classifier.modeling_classifier import Classifier
from lerobot.utils.constants import OBS_IMAGE
from torch import Tensor

from hilstudy.rewards.configuration_image_classifier import ImageClassifierConfig


class ImageClassifierRewardModel(Classifier):
    name = "hilstudy_image_classifier"
    config_class = ImageClassifierConfig

    def _freeze_encoder(self) -> None:
        if not self.config.train_backbone:
            super()._freeze_encoder()

    def _get_encoder_output(self, x: Tensor, image_key: str) -> Tensor:
        encoder = self.encoders[image_key]
        backbone, head = encoder[0], encoder[1:]
        with contextlib.nullcontext() if self.config.train_backbone else torch.no_grad():
            features = backbone(x)
        return head(features)

    def success_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) logits of P(success) for a preprocessed batch (cameras in config order)."""
        images = [batch[k] for k in self.config.input_features if k.startswith(OBS_IMAGE)]
        return self.predict(images).logits
