"""hilstudy.devlog: gathering a devlog's runs, the verdict rule, and the report files (synthetic run folders)."""

import json

import numpy as np
import pandas as pd
import pytest

from hilstudy import params as P
from hilstudy.devlog import build_report, decide, load_runs, paired_differences, write_report

RUNS = {"seeds": [0, 1, 2], "from_scratch": {"ctl": {}}, "from_bc": {"trt": {"bc_weight": 0.5}}}


def study(hypotheses):
    return P.validate({"runs": RUNS, "devlogs": {"t": {"title": "toy", "runs": ["ctl", "trt"], "hypotheses": hypotheses}}})


def write_run(d, rate, success, steps=400):
    """A finished run folder: 20-step episodes at a constant intervention rate, evals at a constant success."""
    d.mkdir(parents=True)
    n = steps // 20
    pd.DataFrame({"episode": range(n), "env_step": [20 * (i + 1) for i in range(n)], "intervention_rate": [rate] * n,
                  "success": [1.0] * n, "jitter": [0.1] * n}).to_csv(d / "episodes.csv", index=False)
    pd.DataFrame({"env_step": [0, steps // 2, steps], "success_rate": [success] * 3}).to_csv(d / "evals.csv", index=False)
    pd.DataFrame({"env_step": [100, 200], "update": [1, 2], "loss_critic": [1.0, 0.5], "loss_actor": [0.1, 0.2]}).to_csv(
        d / "updates.csv", index=False)
    (d / "metrics.json").write_text(json.dumps({"env_steps": steps}))


def make_runs(tmp_path, ctl, trt):
    """ctl/trt: per seed (intervention rate, eval success)."""
    for seed in range(3):
        write_run(tmp_path / f"ctl-s{seed}", *ctl[seed])
        write_run(tmp_path / f"trt-s{seed}", *trt[seed])
    return tmp_path


H = {"claim": "the treatment helps", "treatment": ["trt"], "control": ["ctl"],
     "metrics": {"intervention_rate_mean": "lower", "eval_success_mean": "higher"}}


def verdict(tmp_path, ctl, trt, margin=0.05):
    s = study({"H1": {**H, "margin": margin}})
    runs = load_runs(s, "t", make_runs(tmp_path, ctl, trt))
    from hilstudy.devlog import summaries

    return decide("H1", s.devlogs["t"].hypotheses["H1"], summaries(runs))


def test_clear_improvement_is_supported(tmp_path):
    v = verdict(tmp_path, ctl=[(0.5, 0.5), (0.6, 0.4), (0.55, 0.5)], trt=[(0.1, 0.9), (0.2, 1.0), (0.15, 0.9)])
    assert v.verdict == "supported"
    m = v.metrics["intervention_rate_mean"]
    assert m["n"] == 3 and m["ci_lo"] > 0 and m["effect_iqm"] == pytest.approx(0.4, abs=0.02)  # signed: lower is better
    assert "supported" in v.reason and "95% CI" in v.reason


def test_no_difference_is_not_supported(tmp_path):
    same = [(0.3, 0.7), (0.3, 0.7), (0.3, 0.7)]
    assert verdict(tmp_path, ctl=same, trt=same).verdict == "not supported"


def test_a_worse_treatment_is_not_supported(tmp_path):
    v = verdict(tmp_path, ctl=[(0.1, 0.9)] * 3, trt=[(0.5, 0.4), (0.6, 0.5), (0.4, 0.3)])
    assert v.verdict == "not supported" and v.metrics["eval_success_mean"]["ci_hi"] < 0


def test_noisy_seeds_are_inconclusive(tmp_path):
    v = verdict(tmp_path, ctl=[(0.5, 0.5)] * 3, trt=[(0.1, 1.0), (0.9, 0.0), (0.4, 0.6)])
    assert v.verdict == "inconclusive"


def test_pairs_are_by_seed_and_signed(tmp_path):
    s = study({"H1": H})
    from hilstudy.devlog import summaries

    sums = summaries(load_runs(s, "t", make_runs(tmp_path, [(0.5, 0.1), (0.4, 0.2), (0.3, 0.3)], [(0.1, 0.5), (0.1, 0.5), (0.1, 0.5)])))
    h = s.devlogs["t"].hypotheses["H1"]
    np.testing.assert_allclose(paired_differences(h, "intervention_rate_mean", sums), [0.4, 0.3, 0.2])
    np.testing.assert_allclose(paired_differences(h, "eval_success_mean", sums), [0.4, 0.3, 0.2])


def test_too_few_pairs_decide_nothing(tmp_path):
    s = P.validate({"runs": {**RUNS, "seeds": [0, 1]},
                    "devlogs": {"t": {"title": "toy", "runs": ["ctl", "trt"], "hypotheses": {"H1": H}}}})
    from hilstudy.devlog import summaries

    sums = summaries(load_runs(s, "t", make_runs(tmp_path, [(0.5, 0.5)] * 3, [(0.1, 0.9)] * 3)))
    v = decide("H1", s.devlogs["t"].hypotheses["H1"], sums)
    assert v.verdict == "inconclusive" and v.metrics["eval_success_mean"]["n"] == 2
    assert "over 2 seed-paired differences" in v.reason


def test_one_seed_reads_in_the_singular(tmp_path):
    s = P.validate({"runs": {**RUNS, "seeds": [0]},
                    "devlogs": {"t": {"title": "toy", "runs": ["ctl", "trt"], "hypotheses": {"H1": H}}}})
    from hilstudy.devlog import summaries

    sums = summaries(load_runs(s, "t", make_runs(tmp_path, [(0.5, 0.5)] * 3, [(0.1, 0.9)] * 3)))
    v = decide("H1", s.devlogs["t"].hypotheses["H1"], sums)
    assert "over 1 seed-paired difference " in v.reason and "1 seed-paired differences" not in v.reason


def test_pending_hypothesis(tmp_path):
    s = study({"H3": {"claim": "reward matters more", "pending": "needs issue 7"}})
    v = decide("H3", s.devlogs["t"].hypotheses["H3"], {})
    assert v.verdict == "pending" and v.reason == "needs issue 7"


def test_missing_run_names_its_stage(tmp_path):
    s = study({"H1": H})
    write_run(tmp_path / "ctl-s0", 0.1, 0.9)
    with pytest.raises(FileNotFoundError, match=r"trt-s0 \(stage ft-bc@trt-0\)"):
        load_runs(s, "t", tmp_path)
    with pytest.raises(KeyError, match="no devlog 'x'"):
        load_runs(s, "x", tmp_path)


def test_report_files(tmp_path):
    s = study({"H1": H})
    root = make_runs(tmp_path / "ft", [(0.5, 0.5)] * 3, [(0.1, 0.9)] * 3)
    report = build_report(s, "t", root)
    write_report(report, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["hypotheses"]["H1"]["eval_success_mean"]["effect_iqm"] == pytest.approx(0.4)
    summary = summary["runs"]
    assert summary["trt"]["eval_success_mean"] == 0.9 and summary["ctl"]["intervention_rate_mean"] == 0.5
    assert summary["trt"]["seeds_reaching_success_bar"] == 3 and summary["ctl"]["seeds_reaching_success_bar"] == 0
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert verdicts["H1"]["verdict"] == "supported"
    curve = pd.read_csv(tmp_path / "out" / "curves" / "intervention_rate.csv")
    assert set(curve.run) == {"ctl", "trt"} and curve.env_step.max() == 400
    trt = curve[(curve.run == "trt") & curve["mean"].notna()]
    assert np.allclose(trt["mean"], 0.1) and (trt.seeds == 3).all()
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    write_report(build_report(s, "t", root), tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


def test_stronger_than_contrasts_the_effects_seed_by_seed(tmp_path):
    """H2 (a big effect) claims to matter more than H1 (a small one): the per-seed contrast decides, and the
    reverse claim is not supported."""
    runs = {"seeds": [0, 1, 2], "from_scratch": {"base": {}, "small": {}, "big": {}}}
    hyp = lambda t, **kw: {"claim": t, "treatment": [t], "control": ["base"], "metrics": {"eval_success_mean": "higher"}, **kw}
    s = P.validate({"runs": runs, "devlogs": {"t": {"title": "toy", "runs": ["base", "small", "big"], "hypotheses": {
        "H1": hyp("small"), "H2": hyp("big", stronger_than=["H1"]), "H3": hyp("small", stronger_than=["H2"])}}}})
    for seed, (b, sm, bg) in enumerate([(0.2, 0.3, 0.8), (0.3, 0.35, 0.9), (0.25, 0.3, 0.85)]):
        for name, success in (("base", b), ("small", sm), ("big", bg)):
            write_run(tmp_path / f"{name}-s{seed}", 0.3, success)
    from hilstudy.devlog import decide_all, summaries

    sums = summaries(load_runs(s, "t", tmp_path))
    v = {x.hypothesis: x for x in decide_all(s.devlogs["t"], sums)}
    contrast = v["H2"].metrics["eval_success_mean_vs_H1"]
    assert contrast["n"] == 3 and contrast["effect_iqm"] == pytest.approx(np.mean([0.5, 0.55, 0.55])) and contrast["ci_lo"] > 0
    assert v["H2"].verdict == "supported" and "eval_success_mean_vs_H1" in v["H2"].reason
    assert v["H3"].metrics["eval_success_mean"]["verdict"] == "supported"  # a real effect, but the smaller one
    assert v["H3"].metrics["eval_success_mean_vs_H2"]["verdict"] == "not supported" and v["H3"].verdict == "not supported"
