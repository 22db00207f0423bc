"""Processors of the state classifier: lerobot's own classifier pipeline (normalize, then device), found
by lerobot's `make_reward_pre_post_processors` through the naming convention of reward plugins."""

from __future__ import annotations

from lerobot.rewards.classifier.processor_classifier import make_classifier_processor


def make_hilstudy_state_classifier_pre_post_processors(config, dataset_stats=None):
    return make_classifier_processor(config, dataset_stats=dataset_stats)
