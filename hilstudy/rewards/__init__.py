"""lerobot reward-model plugins, registered through lerobot's `RewardModelConfig` registry on import.

- `hilstudy_state_classifier` (StateClassifierConfig / StateClassifierRewardModel): an MLP on
  `observation.state`. The default study observes state only, and rendering cameras at every step costs
  0.3-0.5 s here (a 10k-step run would take over an hour), so the default per-step reward reads the state.
- `hilstudy_image_classifier` (ImageClassifierConfig / ImageClassifierRewardModel): lerobot 0.6.1's own
  image classifier (`reward_classifier`) on the front + wrist cameras, with two fixes made by subclassing:
  its backbone comes from a local folder (a small ResNet built from a seed: nothing can be downloaded),
  and its per-camera spatial embedding and projection actually train (lerobot runs them under
  `torch.no_grad()`, so only its final head ever learns).

lerobot's `make_reward_model` / `make_reward_pre_post_processors` find both by their registered names.
"""

from hilstudy.rewards.configuration_image_classifier import ImageClassifierConfig
from hilstudy.rewards.configuration_state_classifier import StateClassifierConfig
from hilstudy.rewards.modeling_image_classifier import ImageClassifierRewardModel
from hilstudy.rewards.modeling_state_classifier import StateClassifierRewardModel

__all__ = ["ImageClassifierConfig", "ImageClassifierRewardModel", "StateClassifierConfig", "StateClassifierRewardModel"]
