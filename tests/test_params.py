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
    """params.yaml only restates the schema's defaults (one source of truth for what 'default' means);
    the runs and devlogs it registers are the study's content, not defaults."""
    study = P.load(ROOT / "params.yaml")
    defaults = P.StudyParams()
    for section in P.SECTIONS:
        if section not in ("runs", "devlogs"):
            assert getattr(study, section) == getattr(defaults, section), section
    assert study.runs.seeds == defaults.runs.seeds


def test_devlog_059_is_registered():
    """Devlog 059's hypotheses are in params.yaml before any run: BC loss and BC init, scratch vs bc."""
    study = P.load(ROOT / "params.yaml")
    d = study.devlogs["059"]
    assert set(d.hypotheses) == {"H1", "H2", "H3", "H4"}
    assert [h for h, v in d.hypotheses.items() if v.pending] == ["H4"]  # its runs are left out of the default study
    runs = P.all_runs(study)
    for r in d.runs:
        assert r in runs
    h1 = d.hypotheses["H1"]
    for t, c in zip(h1.treatment, h1.control):  # H1 pairs differ only in bc_weight
        assert runs[t][0] == runs[c][0] and runs[t][1]["bc_weight"] > 0 == runs[c][1]["bc_weight"]
    # H3 pairs differ only in the reward: the learned per-step classifier vs the verdict at the episode's end
    h3 = d.hypotheses["H3"]
    ft = {r: P.run_params(study, r).finetune for r in [*h3.treatment, *h3.control]}
    for t, c in zip(h3.treatment, h3.control):
        assert (ft[t].reward, ft[c].reward) == ("classifier", "episode_end")
        assert ft[t].model_dump(exclude={"reward"}) == ft[c].model_dump(exclude={"reward"})
    assert h3.stronger_than == ["H1", "H2"]


def test_h4_is_decided_by_following_its_pending_note(tmp_path):
    """H4 is left out of the default study; doing what params.yaml says (uncomment its two runs, add them to the
    devlog's runs, delete `pending`) gives a valid study in which H4's pairs differ only in the algorithm."""
    text = (ROOT / "params.yaml").read_text()
    for run in ("drqv2", "drqv2-bcloss"):
        line = next(x for x in text.splitlines() if x.strip().startswith(f"# {run}:"))
        text = text.replace(line, line.replace(f"# {run}:", f"{run}:"))
    pending = next(x for x in text.splitlines() if x.strip().startswith("pending:"))
    runs = next(x for x in text.splitlines() if x.strip().startswith("runs: [scratch"))
    text = text.replace(pending + "\n", "").replace(runs, runs.replace("]", ", drqv2, drqv2-bcloss]", 1))
    (tmp_path / "params.yaml").write_text(text)
    study = P.load(tmp_path / "params.yaml")
    h4 = study.devlogs["059"].hypotheses["H4"]
    assert h4.pending is None
    for t, c in zip(h4.treatment, h4.control, strict=True):
        a, b = P.run_params(study, t).finetune.model_dump(), P.run_params(study, c).finetune.model_dump()
        assert (a.pop("algorithm"), b.pop("algorithm")) == ("drqv2", "sac") and a == b


RUNS = {"seeds": [0], "from_scratch": {"a": {"bc_weight": 0.0}}, "from_bc": {"b": {"bc_weight": 0.5}}}
H = {"claim": "c", "treatment": ["b"], "control": ["a"], "metrics": {"eval_success_mean": "higher"}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"runs": {**RUNS, "from_bc": {"b": {"bc_weigth": 1}}}}, "runs.from_bc.b.bc_weigth: unknown key (did you mean 'bc_weight'?)"),
        ({"runs": {**RUNS, "from_bc": {"b": {"env_steps": "x"}}}}, "runs.from_bc.b.env_steps: Input should be a valid integer"),
        ({"runs": {**RUNS, "from_bc": {"b": {"seed": 1}}}}, "runs.from_bc.b.seed: set by the study, not per run"),
        ({"runs": {**RUNS, "from_bc": {"a": {}}}}, "run 'a' is in both from_scratch and from_bc"),
        ({"runs": {**RUNS, "classifier_from_scratch": {"a": {}}}}, "run 'a' is in both from_scratch and classifier_from_scratch"),
        ({"runs": {**RUNS, "classifier_from_bc": {"c": {"reward": "terminal"}}}},
         "runs.classifier_from_bc.c.reward: set by the run's group (classifier_from_bc: classifier), not per run"),
        ({"runs": {**RUNS, "from_bc": {"b": {"reward": "classifier"}}}},
         "runs.from_bc.b.reward: a classifier-rewarded run belongs under runs.classifier_from_scratch or runs.classifier_from_bc"),
        ({"runs": RUNS, "finetune": {"reward": "classifier"}}, "finetune.reward: a classifier-rewarded run belongs under"),
        ({"runs": {**RUNS, "from_bc": {"b": {"reward": "end"}}}},
         "runs.from_bc.b.reward: Input should be 'terminal', 'episode_end' or 'classifier'"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a", "b"], "hypotheses": {"H": {**H, "stronger_than": ["H2"]}}}}},
         "devlogs.1.hypotheses.H.stronger_than: 'H2' is not another hypothesis of devlogs.1"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a", "b"], "hypotheses": {
            "H": {**H, "stronger_than": ["G"]}, "G": {**H, "metrics": {"intervention_rate_mean": "lower"}}}}}},
         "devlogs.1.hypotheses.H.stronger_than: 'G' does not measure eval_success_mean"),
        ({"classifier": {"input": "camera"}}, "classifier.input: Input should be 'state' or 'images'"),
        ({"classifier": {"threshold": 1.5}}, "classifier.threshold: Input should be less than 1"),
        ({"runs": {**RUNS, "from_bc": {"B/x": {}}}}, "runs.from_bc.B/x: a run name must match"),
        # a trailing newline passes re.match(...$); run names and devlog ids go into shell commands and stage names
        ({"runs": {**RUNS, "from_bc": {"b2\n": {}}}}, "runs.from_bc.b2\n: a run name must match"),
        ({"runs": RUNS, "devlogs": {"1\n": {"title": "t", "runs": ["a"]}}}, "devlogs.1\n: a devlog id must match"),
        ({"runs": {**RUNS, "seeds": []}}, "runs.seeds: List should have at least 1 item"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["c"]}}}, "devlogs.1.runs: unknown run 'c'"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a"], "hypotheses": {"H": H}}}},
         "devlogs.1.hypotheses.H: run 'b' is not in devlogs.1.runs"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a", "b"], "hypotheses": {"H": {**H, "metrics": {"succes": "higher"}}}}}},
         "devlogs.1.hypotheses.H.metrics.succes: unknown metric"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a", "b"], "hypotheses": {"H": {**H, "control": []}}}}},
         "treatment and control must be non-empty lists of equal length"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a", "b"], "hypotheses": {"H": {**H, "metrics": {"eval_success_mean": "up"}}}}}},
         "devlogs.1.hypotheses.H.metrics.eval_success_mean: Input should be 'higher' or 'lower'"),
        ({"runs": RUNS, "devlogs": {"1": {"title": "t", "runs": ["a"], "hypotheses": {"H": {"claim": "c", "pendin": "x"}}}}},
         "devlogs.1.hypotheses.H.pendin: unknown key (did you mean 'pending'?)"),
    ],
)
def test_bad_runs_and_devlogs_name_the_key(raw, expected):
    with pytest.raises(P.ParamsError) as err:
        P.validate(raw)
    assert expected in str(err.value)


def test_run_params_lays_the_run_over_finetune():
    study = P.validate({"finetune": {"env_steps": 500}, "runs": RUNS})
    b = P.run_params(study, "b", seed=3).finetune
    assert (b.init, b.bc_weight, b.seed, b.env_steps) == ("bc", 0.5, 3, 500)
    assert P.run_params(study, "a").finetune.init == "scratch"
    with pytest.raises(P.ParamsError, match="unknown run 'c'"):
        P.run_params(study, "c")


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


def test_run_groups_set_init_and_reward():
    study = P.validate({"runs": {**RUNS, "from_scratch": {"a": {}, "e": {"reward": "episode_end"}},
                                 "classifier_from_scratch": {"c": {}}, "classifier_from_bc": {"d": {"bc_weight": 0.5}}}})
    got = {r: (P.run_params(study, r).finetune.init, P.run_params(study, r).finetune.reward) for r in "abcde"}
    assert got == {"a": ("scratch", "terminal"), "b": ("bc", "terminal"), "c": ("scratch", "classifier"), "d": ("bc", "classifier"),
                   "e": ("scratch", "episode_end")}
    assert [P.run_stage(study, r, 1) for r in "abcde"] == ["ft-scratch@a-1", "ft-bc@b-1", "ft-scratch-clf@c-1", "ft-bc-clf@d-1",
                                                           "ft-scratch@e-1"]
    # the section's reward is every terminal-group run's default; a classifier group always sets its own
    study = P.validate({"runs": {**RUNS, "classifier_from_scratch": {"c": {}}}, "finetune": {"reward": "episode_end"}})
    assert [P.run_params(study, r).finetune.reward for r in "abc"] == ["episode_end", "episode_end", "classifier"]


def test_each_seed_gets_inputs_of_its_own_unless_told_otherwise():
    """runs.replicate_inputs (default on): seed k's demos, BC actor and classifier come from seeds of their own,
    so the seed-to-seed spread of a verdict includes a new demo set; seed 0's are the base ones; off: every seed
    shares the base seeds' inputs."""
    base = P.validate({})
    assert base.runs.replicate_inputs is True and P.input_params(base, 0) == base
    two = P.input_params(base, 2)
    assert two.demos.seed == base.demos.seed + 2 * P.DEMO_SEED_STRIDE and two.bc.seed == base.bc.seed + 2
    assert two.bc.eval_seed == base.bc.eval_seed + 2 * P.BC_EVAL_SEED_STRIDE and two.classifier.seed == base.classifier.seed + 2
    assert two.finetune == base.finetune and two.env == base.env
    shared = P.validate({"runs": {"replicate_inputs": False}})
    assert P.input_params(shared, 2) == shared
    with pytest.raises(P.ParamsError, match="demos.num_episodes: at most 3333"):
        P.input_params(P.validate({"demos": {"num_episodes": 4000}}), 1)
