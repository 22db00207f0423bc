import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hilstudy.demos import dataset_features
from hilstudy.params import EnvParams, PolicyParams
from hilstudy.policy import (
    MIN_IMAGE_SIDE,
    ActorPolicy,
    CheckpointError,
    actor_outputs,
    check_images,
    deterministic_action,
    load_policy,
    make_policy,
    make_policy_config,
    observations,
    save_policy,
    to_policy_batch,
)
from hilstudy.seeding import seed_everything
from hilstudy.sim import make_env

SIDE = 48  # smallest round size lerobot's from-scratch conv encoder takes (MIN_IMAGE_SIDE is 39)


def features(state_dim: int = 21, images: tuple[str, ...] = (), side: int = SIDE) -> dict:
    f = {"observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None}}
    for cam in images:
        f[f"observation.images.{cam}"] = {"dtype": "image", "shape": (side, side, 3), "names": ["height", "width", "channels"]}
    f["action"] = {"dtype": "float32", "shape": (4,), "names": None}
    return f


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


def pixel_policy(shared_encoder: bool = True):
    seed_everything(0)
    cfg = make_policy_config(features(6, ("front", "wrist")), PolicyParams(shared_encoder=shared_encoder))
    return make_policy(cfg)


def pixel_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.uniform(-1, 1, 6).astype(np.float32)}
    for cam in ("front", "wrist"):
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    return obs


# ------------------------------------------------------------------------------ save / load round trip
def test_round_trip_loads_every_tensor_and_acts_the_same(env, saved):
    cfg, pol, pre, path = saved
    assert {p.name for p in path.iterdir()} == {
        "config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"}
    loaded, lpre, _ = load_policy(path, expected_features=dataset_features(env), policy_params=PolicyParams())
    original = pol.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, original[k]), k
    obs, _ = env.reset(seed=0)
    a = deterministic_action(loaded, lpre, obs)
    np.testing.assert_array_equal(deterministic_action(pol, pre, obs), a)
    assert a.shape == (4,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    # deterministic = tanh(pre-tanh mean) of the actor
    with torch.no_grad():
        _, _, mean = loaded.actor(observations(lpre(to_policy_batch(obs))), None)
    np.testing.assert_allclose(a, torch.tanh(mean)[0].numpy(), rtol=0, atol=0)


def test_plain_lerobot_loads_it(saved):
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    _, pol, _, path = saved
    plain = GaussianActorPolicy.from_pretrained(path)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, pol.state_dict()[k]), k


def test_processors_are_identity_and_explicit(saved):
    cfg, _, pre, path = saved
    cfg_json = json.loads((path / "config.json").read_text())
    assert set(cfg_json["normalization_mapping"].values()) == {"IDENTITY"} and cfg_json["dataset_stats"] is None
    assert cfg_json["vision_encoder_name"] is None and cfg_json["freeze_vision_encoder"] is False
    steps = json.loads((path / "policy_preprocessor.json").read_text())["steps"]
    assert [s["registry_name"] for s in steps] == [
        "rename_observations_processor", "to_batch_processor", "device_processor", "normalizer_processor"]
    state = torch.linspace(-1.3, 1.3, 21)
    out = pre({"observation.state": state})["observation.state"]
    assert out.shape == (1, 21) and torch.equal(out[0], state)  # batched, values untouched


# ------------------------------------------------------------------------------ loads that must fail
def test_partial_checkpoint_fails_loudly_where_lerobot_loads_it_silently(saved):
    from lerobot.policies.gaussian_actor import GaussianActorPolicy

    cfg, _, _, path = saved
    tensors = load_file(str(path / "model.safetensors"))
    del tensors["actor.mean_layer.weight"]
    save_file(tensors, str(path / "model.safetensors"))
    GaussianActorPolicy.from_pretrained(path)  # lerobot's strict=False: loads, mean layer left random
    with pytest.raises(CheckpointError, match="actor.mean_layer.weight"):
        load_policy(path, expected_config=cfg)


def test_tensor_of_another_shape_fails(saved):
    cfg, _, _, path = saved
    tensors = load_file(str(path / "model.safetensors"))
    tensors["actor.mean_layer.bias"] = torch.zeros(5)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="mean_layer.bias"):
        load_policy(path, expected_config=cfg)


def test_checkpoint_for_another_layout_or_size_fails(saved):
    _, _, _, path = saved
    with pytest.raises(CheckpointError, match=r"input_features: checkpoint .*\(21,\).* vs expected .*\(20,\)"):
        load_policy(path, expected_features=features(20))
    with pytest.raises(CheckpointError, match="input_features"):
        load_policy(path, expected_features=features(21, ("front", "wrist")))
    with pytest.raises(CheckpointError, match="actor_network_kwargs"):
        load_policy(path, expected_features=features(21), policy_params=PolicyParams(actor_hidden_dims=[64, 64]))
    with pytest.raises(CheckpointError, match="latent_dim"):
        load_policy(path, expected_features=features(21), policy_params=PolicyParams(latent_dim=64))
    with pytest.raises(CheckpointError, match="shared_encoder"):
        load_policy(path, expected_features=features(21), policy_params=PolicyParams(shared_encoder=False))
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_policy(path.parent / "nothing")


def test_other_normalization_or_processors_fail(saved):
    cfg, _, _, path = saved
    cfg_json = json.loads((path / "config.json").read_text())
    cfg_json["normalization_mapping"]["STATE"] = "MIN_MAX"
    (path / "config.json").write_text(json.dumps(cfg_json))
    with pytest.raises(CheckpointError, match="normalization_mapping"):
        load_policy(path, expected_config=cfg)
    cfg_json["normalization_mapping"]["STATE"] = "IDENTITY"
    (path / "config.json").write_text(json.dumps(cfg_json))
    load_policy(path, expected_config=cfg)  # restored: loads again

    pre_json = json.loads((path / "policy_preprocessor.json").read_text())
    pre_json["steps"][-1]["config"]["norm_map"]["STATE"] = "MEAN_STD"
    (path / "policy_preprocessor.json").write_text(json.dumps(pre_json))
    with pytest.raises(CheckpointError, match="preprocessor"):
        load_policy(path, expected_config=cfg)
    (path / "policy_preprocessor.json").unlink()
    with pytest.raises(CheckpointError, match="missing policy_preprocessor.json"):
        load_policy(path, expected_config=cfg)


# ------------------------------------------------------------------------------ images
def test_pixel_policy_uses_lerobots_from_scratch_encoder():
    from lerobot.policies.gaussian_actor.modeling_gaussian_actor import DefaultImageEncoder

    pol, _, _ = pixel_policy()
    enc = pol.actor.encoder.image_encoder
    assert isinstance(enc, DefaultImageEncoder)  # no hub download (vision_encoder_name None)
    assert all(p.requires_grad for p in enc.parameters())  # not frozen: it can learn
    # shared encoder: SAC's actor optimizer leaves it to the critic
    names = {id(p) for p in pol.get_optim_params()["actor"]}
    assert not any(id(p) in names for p in pol.actor.encoder.parameters())
    pol2, _, _ = pixel_policy(shared_encoder=False)
    names2 = {id(p) for p in pol2.get_optim_params()["actor"]}
    assert all(id(p) in names2 for p in pol2.actor.encoder.parameters())
    with pytest.raises(ValueError, match=f"image_size >= {MIN_IMAGE_SIDE}"):
        make_policy_config(features(6, ("front",), side=32), PolicyParams())


def test_pixel_actions_are_deterministic_in_eval_mode_and_restore_the_mode():
    pol, pre, _ = pixel_policy()
    pol.train()  # dropout on in lerobot's image post-encoders
    obs = pixel_obs()
    a = deterministic_action(pol, pre, obs)
    np.testing.assert_array_equal(a, deterministic_action(pol, pre, obs))
    np.testing.assert_array_equal(a, ActorPolicy(pol, pre)(obs))
    assert pol.training and a.shape == (4,)


def test_images_must_be_float_in_unit_range():
    good = {"observation.images.front": torch.rand(2, 3, 8, 8)}
    check_images(good)
    with pytest.raises(ValueError, match=r"observation.images.front: images must be float in \[0, 1\], got values"):
        check_images({"observation.images.front": good["observation.images.front"] * 255})
    with pytest.raises(ValueError, match="got dtype torch.uint8"):
        check_images({"observation.images.front": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)})


def test_image_guard_stops_a_0_255_batch_before_the_policy():
    from hilstudy.bc import bc_loss

    pol, pre, _ = pixel_policy()
    batch = observations(pre(to_policy_batch(pixel_obs())))
    actor_outputs(pol, batch)  # [0, 1]: fine
    action = torch.zeros(1, 4)
    bc_loss(pol, batch, action)
    x255 = {k: (v * 255 if "images" in k else v) for k, v in batch.items()}  # the devlog's bug
    with pytest.raises(ValueError, match=r"observation.images.front: images must be float in \[0, 1\]"):
        bc_loss(pol, x255, action)
    raw = {k: (v.to(torch.uint8) if "images" in k else v) for k, v in x255.items()}
    with pytest.raises(ValueError, match="dtype torch.uint8"):
        actor_outputs(pol, raw)


def test_env_frames_become_unit_floats_chw():
    frame = np.full((8, 8, 3), 255, dtype=np.uint8)
    batch = to_policy_batch({"observation.images.wrist": frame, "observation.state": np.zeros(3)})
    img = batch["observation.images.wrist"]
    assert img.shape == (3, 8, 8) and img.dtype == torch.float32 and float(img.max()) == 1.0
    assert batch["observation.state"].dtype == torch.float32
    with pytest.raises(ValueError, match="uint8 HWC"):
        to_policy_batch({"observation.images.wrist": frame.astype(np.float32)})


def test_resolve_device():
    from hilstudy.policy import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="finetune.device is 'cuda' but torch sees no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="must be 'cpu', 'cuda' or 'auto'"):
        resolve_device("tpu")
