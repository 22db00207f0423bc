"""The reward-model plugins: registered in lerobot's registry, and the image classifier's parts train."""

import pytest
import torch
from lerobot.configs.rewards import RewardModelConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.rewards import make_reward_model, make_reward_pre_post_processors
from lerobot.rewards.classifier.configuration_classifier import RewardClassifierConfig
from lerobot.rewards.classifier.modeling_classifier import Classifier

import hilstudy.rewards  # noqa: F401  (registers the plugins)
from hilstudy.reward import make_backbone
from hilstudy.rewards import ImageClassifierConfig, ImageClassifierRewardModel, StateClassifierConfig, StateClassifierRewardModel

CAMS = ("observation.images.front", "observation.images.wrist")
REWARD = {"next.reward": PolicyFeature(type=FeatureType.REWARD, shape=(1,))}


def test_registered_and_built_by_lerobots_factory():
    assert RewardModelConfig.get_choice_class("hilstudy_state_classifier") is StateClassifierConfig
    assert RewardModelConfig.get_choice_class("hilstudy_image_classifier") is ImageClassifierConfig
    cfg = StateClassifierConfig(input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(5,))},
                                output_features=REWARD, hidden_dims=[16])
    model = make_reward_model(cfg)
    assert isinstance(model, StateClassifierRewardModel)
    stats = {"observation.state": {"mean": torch.ones(5), "std": 2 * torch.ones(5)}}
    pre, _ = make_reward_pre_post_processors(cfg, dataset_stats=stats)
    out = pre({"observation.state": torch.full((3, 5), 3.0)})
    assert torch.allclose(out["observation.state"], torch.ones(3, 5))  # (3 - 1) / 2: normalized by the saved stats


def test_state_classifier_forward_is_lerobots_training_interface():
    cfg = StateClassifierConfig(input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,))},
                                output_features=REWARD, hidden_dims=[8])
    model = StateClassifierRewardModel(cfg)
    loss, info = model({"observation.state": torch.randn(6, 4), "next.reward": torch.tensor([0.0, 1, 0, 1, 1, 0])})
    loss.backward()
    assert loss.item() > 0 and info["total"] == 6
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def _image_batch(n=4, side=32):
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(n, 3, side, side, generator=g) for k in CAMS}
    batch["next.reward"] = torch.tensor([0.0, 1.0] * (n // 2))
    return batch


def _image_config(cls, backbone, **kw):
    feats = {k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32)) for k in CAMS}
    return cls(input_features=feats, output_features=REWARD, model_name=str(backbone), num_cameras=2,
               hidden_dim=16, latent_dim=16, device="cpu", **kw)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("bb"), [8, 16], seed=0, image_size=32)


def learning(model) -> list[str]:
    """Names of the parameters that get a non-zero gradient from one BCE step."""
    loss, _ = model(_image_batch())
    loss.backward()
    return [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]


def test_lerobots_classifier_trains_only_its_head(backbone):
    """The trap (lerobot 0.6.1): the per-camera spatial embedding and projection run under no_grad."""
    model = Classifier(_image_config(RewardClassifierConfig, backbone))
    names = learning(model)
    assert names and all(n.startswith("classifier_head.") for n in names)
    assert any(n.endswith(".1.kernel") for n, p in model.named_parameters() if p.requires_grad)  # it could have


def test_hilstudy_image_classifier_trains_embedding_projection_and_backbone(backbone):
    names = learning(ImageClassifierRewardModel(_image_config(ImageClassifierConfig, backbone)))
    assert any(n.startswith("classifier_head.") for n in names)
    assert any(n.endswith(".1.kernel") for n in names)  # spatial embedding
    assert any(n.endswith(".3.weight") for n in names)  # projection
    assert any(".0.embedder." in n or n.startswith("encoder.") for n in names)  # the backbone


def test_frozen_backbone_option_keeps_the_backbone_fixed(backbone):
    names = learning(ImageClassifierRewardModel(_image_config(ImageClassifierConfig, backbone, train_backbone=False)))
    assert any(n.endswith(".1.kernel") for n in names)  # the embedding still learns
    assert not any(".0.embedder." in n or ".0.encoder." in n or n.startswith("encoder.") for n in names)
