from pathlib import Path

import pytest
import yaml

from hilstudy import params as P

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_file_is_valid():
    study = P.load(ROOT / "params.yaml")
    assert study.env.kind == "sim"
    assert set(P.SECTIONS) <= set(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_defaults_match_schema_defaults():
    """params.yaml only restates the schema's defaults (one source of truth for what 'default' means)."""
    assert P.load(ROOT / "params.yaml") == P.StudyParams()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"demos": {"num_episode": 3}}, "demos.num_episode: unknown key (did you mean 'num_episodes'?)"),
        ({"demo": {}}, "demo: unknown key (did you mean 'demos'?)"),
        ({"demos": {"seed": "3"}}, "demos.seed: Input should be a valid integer"),
        ({"demos": {"num_episodes": 2.5}}, "demos.num_episodes: Input should be a valid integer"),
        ({"demos": {"num_episodes": 0}}, "demos.num_episodes: Input should be greater than or equal to 1"),
        ({"env": {"kind": "mujoco"}}, "env.kind: Input should be 'sim' or 'real'"),
        ({"env": {"action_scale": 1.0}}, "env.action_scale: Input should be less than or equal to 0.1"),
        ({"env": {"random_cube": "yes"}}, "env.random_cube: Input should be a valid boolean"),
        ({"operator": {"noise_std": -0.1}}, "operator.noise_std: Input should be greater than or equal to 0"),
        ({"demos": {"repo_id": "no-slash"}}, "demos.repo_id: String should match pattern"),
        ({"env": 3}, "env: Input should be a valid dictionary"),
    ],
)
def test_bad_params_name_the_key(raw, expected):
    with pytest.raises(P.ParamsError) as err:
        P.validate(raw)
    assert expected in str(err.value)


def test_every_error_is_reported_at_once():
    with pytest.raises(P.ParamsError) as err:
        P.validate({"demos": {"num_episode": 3, "seed": -1}, "env": {"obs": "rgb"}})
    msg = str(err.value)
    assert "demos.num_episode" in msg and "demos.seed" in msg and "env.obs" in msg


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert P.validate({"operator": {"noise_std": 0}}).operator.noise_std == 0.0


def test_load_file_errors(tmp_path):
    with pytest.raises(P.ParamsError, match="no such params file"):
        P.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(P.ParamsError, match="not valid YAML"):
        P.load(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(P.ParamsError, match="top level must be a mapping"):
        P.load(bad)


def test_overrides_and_parse_value(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("demos: {num_episodes: 4}\n")
    study = P.load(f, {"demos.seed": P.parse_value("7"), "env.obs": P.parse_value("pixels")})
    assert (study.demos.seed, study.demos.num_episodes, study.env.obs) == (7, 4, "pixels")
    with pytest.raises(P.ParamsError, match="demos.sed: unknown key"):
        P.load(f, {"demos.sed": 1})


def test_resolve_lays_injected_sections_over_the_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("demos: {num_episodes: 4, seed: 1}\n")
    study = P.resolve(f, demos={"seed": 9}, env=None)
    assert (study.demos.num_episodes, study.demos.seed) == (4, 9)
    with pytest.raises(P.ParamsError, match="unknown params section"):
        P.resolve(f, demoz={})


def test_find_params_file_walks_up(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    sub = tmp_path / "notebooks" / "deep"
    sub.mkdir(parents=True)
    assert P.find_params_file(sub) == tmp_path / "params.yaml"
    assert P.project_root(sub) == tmp_path
