import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hilstudy.demos import dataset_features
from hilstudy.params import EnvParams, PolicyParams
from hilstudy.policy import (
    CheckpointError,
    check_images,
    deterministic_action,
    load_policy,
    make_policy,
    make_policy_config,
    save_policy,
    to_policy_batch,
)
from hilstudy.seeding import seed_everything
from hilstudy.sim import make_env


@pytest.fixture(scope="module")
def env():
    with make_env(EnvParams()) as e:
        yield e


@pytest.fixture
def saved(env, tmp_path):
    seed_everything(0)
    cfg = make_policy_config(dataset_features(env), PolicyParams())
    pol, pre, post = make_policy(cfg)
    return cfg, pol, pre, save_policy(pol, pre, post, tmp_path / "policy")


def test_round_trip_loads_every_tensor_and_acts_the_same(env, saved):
    cfg, pol, pre, path = saved
    loaded, lpre, _ = load_policy(path, expected_config=cfg)
    original = pol.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, original[k]), k
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(deterministic_action(pol, pre, obs), deterministic_action(loaded, lpre, obs))
    a = deterministic_action(loaded, lpre, obs)
    assert a.shape == (4,) and np.all(np.abs(a) <= 1)


def test_plain_lerobot_loads_it(saved):
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    _, pol, _, path = saved
    plain = GaussianActorPolicy.from_pretrained(path)
    assert torch.equal(plain.actor.mean_layer.weight, pol.actor.mean_layer.weight)


def test_partial_checkpoint_fails_loudly(saved):
    cfg, _, _, path = saved
    tensors = load_file(str(path / "model.safetensors"))
    del tensors["actor.mean_layer.weight"]
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="actor.mean_layer.weight"):
        load_policy(path, expected_config=cfg)


def test_checkpoint_for_another_layout_or_size_fails(env, saved):
    _, _, _, path = saved
    other_obs = make_policy_config(dataset_features(make_env(EnvParams(obs="pixels", image_size=32))), PolicyParams())
    with pytest.raises(CheckpointError, match="input_features"):
        load_policy(path, expected_config=other_obs)
    other_size = make_policy_config(dataset_features(env), PolicyParams(actor_hidden_dims=[64, 64]))
    with pytest.raises(CheckpointError, match="actor_network_kwargs"):
        load_policy(path, expected_config=other_size)
    with pytest.raises(CheckpointError, match="no saved policy"):
        load_policy(path.parent / "nothing")


def test_images_must_be_float_in_unit_range():
    good = {"observation.images.front": torch.rand(2, 3, 8, 8)}
    check_images(good)
    with pytest.raises(ValueError, match="observation.images.front: images must be float in \\[0, 1\\], got values"):
        check_images({"observation.images.front": good["observation.images.front"] * 255})
    with pytest.raises(ValueError, match="got dtype torch.uint8"):
        check_images({"observation.images.front": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)})


def test_env_frames_become_unit_floats_chw():
    frame = np.full((8, 8, 3), 255, dtype=np.uint8)
    batch = to_policy_batch({"observation.images.wrist": frame, "observation.state": np.zeros(3)})
    img = batch["observation.images.wrist"]
    assert img.shape == (3, 8, 8) and img.dtype == torch.float32 and float(img.max()) == 1.0
    with pytest.raises(ValueError, match="uint8 HWC"):
        to_policy_batch({"observation.images.wrist": frame.astype(np.float32)})
