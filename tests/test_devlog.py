"""hilstudy.devlog: gathering a devlog's runs, the verdict rule, and the report files (synthetic run folders)."""

import json

import numpy as np
import pandas as pd
import pytest

from hilstudy import params as P
from hilstudy.devlog import build_report, decide, load_runs, paired_differences, write_report

SEEDS = [0, 1, 2, 3, 4]  # 5: the fewest at which the exact one-sided test can reach p <= 0.05
RUNS = {"seeds": SEEDS, "from_scratch": {"ctl": {}}, "from_bc": {"trt": {"bc_weight": 0.5}}}


def study(hypotheses, seeds=SEEDS):
    return P.validate({"runs": {**RUNS, "seeds": seeds}, "devlogs": {"t": {"title": "toy", "runs": ["ctl", "trt"], "hypotheses": hypotheses}}})


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
    for seed in range(len(ctl)):
        write_run(tmp_path / f"ctl-s{seed}", *ctl[seed])
        write_run(tmp_path / f"trt-s{seed}", *trt[seed])
    return tmp_path


H = {"claim": "the treatment helps", "treatment": ["trt"], "control": ["ctl"],
     "metrics": {"intervention_rate_mean": "lower", "eval_success_mean": "higher"}}
CTL = [(0.5, 0.5), (0.6, 0.4), (0.55, 0.5), (0.5, 0.45), (0.6, 0.5)]
TRT = [(0.1, 0.9), (0.2, 1.0), (0.15, 0.9), (0.1, 0.95), (0.2, 0.85)]


def verdict(tmp_path, ctl, trt, margin=0.05):
    from hilstudy.devlog import summaries

    s = study({"H1": {**H, "margin": margin}}, seeds=list(range(len(ctl))))
    runs = load_runs(s, "t", make_runs(tmp_path, ctl, trt))
    return decide("H1", s.devlogs["t"].hypotheses["H1"], summaries(runs))


def test_clear_improvement_is_supported(tmp_path):
    v = verdict(tmp_path, ctl=CTL, trt=TRT)
    assert v.verdict == "supported"
    m = v.metrics["intervention_rate_mean"]
    assert m["n"] == 5 and m["ci_lo"] > 0 and m["effect"] == pytest.approx(np.mean([0.4, 0.4, 0.4, 0.4, 0.4]))  # signed: lower is better
    assert m["p"] == pytest.approx(1 / 32) and v.p == pytest.approx(1 / 32)  # every seed better: the smallest p at 5 seeds
    assert "one-sided p = 0.0312 -> supported" in v.reason and "90% interval" in v.reason


def test_three_seeds_decide_nothing_and_say_how_many_would(tmp_path):
    """The same clear improvement on 3 seeds: no exact test reaches p <= 0.05 (1/8 at best), so inconclusive,
    with the seeds the registered margin would need at this spread."""
    v = verdict(tmp_path, ctl=CTL[:3], trt=TRT[:3])
    assert v.verdict == "inconclusive"
    m = v.metrics["eval_success_mean"]
    assert m["n"] == 3 and m["p"] == pytest.approx(1 / 8) and m["ci_lo"] == -np.inf
    assert m["seeds_needed"] >= 5
    assert "needs at least 5 seeds" in v.reason and f"about {m['seeds_needed']} seeds would detect an effect of 0.05" in v.reason


def test_no_difference_is_not_supported(tmp_path):
    same = [(0.3, 0.7)] * 5
    v = verdict(tmp_path, ctl=same, trt=same)
    assert v.verdict == "not supported" and v.metrics["eval_success_mean"]["ci_hi"] < 0.05


def test_a_worse_treatment_is_not_supported(tmp_path):
    v = verdict(tmp_path, ctl=[(0.1, 0.9)] * 5, trt=[(0.5, 0.4), (0.6, 0.5), (0.4, 0.3), (0.5, 0.5), (0.45, 0.4)])
    assert v.verdict == "not supported" and v.metrics["eval_success_mean"]["ci_hi"] < 0


def test_noisy_seeds_are_inconclusive(tmp_path):
    v = verdict(tmp_path, ctl=[(0.5, 0.5)] * 5, trt=[(0.1, 1.0), (0.9, 0.0), (0.4, 0.6), (0.3, 0.9), (0.7, 0.2)])
    assert v.verdict == "inconclusive"
    assert v.metrics["eval_success_mean"]["seeds_needed"] > 5


def test_pairs_are_by_seed_and_signed(tmp_path):
    s = study({"H1": H}, seeds=[0, 1, 2])
    from hilstudy.devlog import summaries

    sums = summaries(load_runs(s, "t", make_runs(tmp_path, [(0.5, 0.1), (0.4, 0.2), (0.3, 0.3)], [(0.1, 0.5), (0.1, 0.5), (0.1, 0.5)])))
    h = s.devlogs["t"].hypotheses["H1"]
    np.testing.assert_allclose(paired_differences(h, "intervention_rate_mean", sums), [[0.4, 0.3, 0.2]])
    np.testing.assert_allclose(paired_differences(h, "eval_success_mean", sums), [[0.4, 0.3, 0.2]])


def test_two_pairs_in_a_seed_are_averaged_not_counted_twice(tmp_path):
    """H1-style hypotheses pair two treatments with two controls: 3 seeds are 3 samples, not 6."""
    runs = {"seeds": [0, 1, 2], "from_scratch": {"c1": {}, "c2": {}, "t1": {}, "t2": {}}}
    h = {"claim": "x", "treatment": ["t1", "t2"], "control": ["c1", "c2"], "metrics": {"eval_success_mean": "higher"}}
    s = P.validate({"runs": runs, "devlogs": {"t": {"title": "toy", "runs": ["c1", "c2", "t1", "t2"], "hypotheses": {"H": h}}}})
    for seed, (a, b) in enumerate([(0.1, 0.3), (0.2, 0.4), (0.3, 0.1)]):
        for name, success in (("c1", 0.2), ("c2", 0.2), ("t1", 0.2 + a), ("t2", 0.2 + b)):
            write_run(tmp_path / f"{name}-s{seed}", 0.3, success)
    from hilstudy.devlog import per_seed_effects, summaries

    sums = summaries(load_runs(s, "t", tmp_path))
    np.testing.assert_allclose(per_seed_effects(s.devlogs["t"].hypotheses["H"], "eval_success_mean", sums), [0.2, 0.3, 0.2])
    v = decide("H", s.devlogs["t"].hypotheses["H"], sums)
    assert v.metrics["eval_success_mean"]["n"] == 3 and v.metrics["eval_success_mean"]["pairs"] == 2
    assert v.verdict == "inconclusive" and "2 pairs averaged per seed" in v.reason


def test_one_seed_reads_in_the_singular(tmp_path):
    v = verdict(tmp_path, ctl=CTL[:1], trt=TRT[:1])
    assert "over 1 seed," in v.reason and "1 seeds" not in v.reason
    assert v.verdict == "inconclusive" and v.metrics["eval_success_mean"]["seeds_needed"] is None  # no spread from one seed


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
    root = make_runs(tmp_path / "ft", [(0.5, 0.5)] * 5, [(0.1, 0.9)] * 5)
    report = build_report(s, "t", root)
    write_report(report, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    h1 = summary["hypotheses"]["H1"]
    assert h1["eval_success_mean"]["effect"] == pytest.approx(0.4) and h1["eval_success_mean"]["n"] == 5
    assert h1["p"] == pytest.approx(1 / 32) and h1["p_familywise"] == pytest.approx(1 / 32)  # one hypothesis: Holm changes nothing
    summary = summary["runs"]
    assert summary["trt"]["eval_success_mean"] == 0.9 and summary["ctl"]["intervention_rate_mean"] == 0.5
    assert summary["trt"]["seeds_reaching_success_bar"] == 5 and summary["ctl"]["seeds_reaching_success_bar"] == 0
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert verdicts["H1"]["verdict"] == "supported" and verdicts["H1"]["alpha"] == pytest.approx(0.05)
    curve = pd.read_csv(tmp_path / "out" / "curves" / "intervention_rate.csv")
    assert set(curve.run) == {"ctl", "trt"} and curve.env_step.max() == 400
    trt = curve[(curve.run == "trt") & curve["mean"].notna()]
    assert np.allclose(trt["mean"], 0.1) and (trt.seeds == 5).all()
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    write_report(build_report(s, "t", root), tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


def test_stronger_than_contrasts_the_effects_seed_by_seed(tmp_path):
    """H2 (a big effect) claims to matter more than H1 (a small one): the per-seed contrast decides, and the
    reverse claim is not supported."""
    runs = {"seeds": SEEDS, "from_scratch": {"base": {}, "small": {}, "big": {}}}
    hyp = lambda t, **kw: {"claim": t, "treatment": [t], "control": ["base"], "metrics": {"eval_success_mean": "higher"}, **kw}
    s = P.validate({"runs": runs, "devlogs": {"t": {"title": "toy", "runs": ["base", "small", "big"], "hypotheses": {
        "H1": hyp("small"), "H2": hyp("big", stronger_than=["H1"]), "H3": hyp("small", stronger_than=["H2"])}}}})
    for seed, (b, sm, bg) in enumerate([(0.2, 0.3, 0.8), (0.3, 0.35, 0.9), (0.25, 0.3, 0.85), (0.2, 0.32, 0.8), (0.3, 0.4, 0.7)]):
        for name, success in (("base", b), ("small", sm), ("big", bg)):
            write_run(tmp_path / f"{name}-s{seed}", 0.3, success)
    from hilstudy.devlog import decide_all, summaries

    sums = summaries(load_runs(s, "t", tmp_path))
    v = {x.hypothesis: x for x in decide_all(s.devlogs["t"], sums)}
    contrast = v["H2"].metrics["eval_success_mean_vs_H1"]
    assert contrast["n"] == 5 and contrast["effect"] == pytest.approx(np.mean([0.5, 0.55, 0.55, 0.48, 0.3])) and contrast["ci_lo"] > 0
    assert v["H2"].verdict == "supported" and "eval_success_mean_vs_H1" in v["H2"].reason
    assert v["H3"].metrics["eval_success_mean"]["verdict"] == "supported"  # a real effect, but the smaller one
    assert v["H3"].metrics["eval_success_mean_vs_H2"]["verdict"] == "not supported" and v["H3"].verdict == "not supported"
    # Holm over the three hypotheses: the smallest p is multiplied by 3, the next by 2 (and kept monotone)
    ps = sorted((x.p, x.hypothesis) for x in v.values())
    assert v[ps[0][1]].p_familywise == pytest.approx(min(1.0, 3 * ps[0][0]))
    assert v[ps[1][1]].p_familywise == pytest.approx(max(v[ps[0][1]].p_familywise, min(1.0, 2 * ps[1][0])))


def test_report_text_gives_every_number_of_a_verdict(tmp_path):
    """What the report notebook shows per hypothesis: verdict, p, family-wise p, and per metric the effect,
    interval, p, n and verdict; per run, mean [min, max] (no IQM below 10 seeds)."""
    from hilstudy.devlog import rule_text, table_cell, verdict_lines

    s = study({"H1": H})
    report = build_report(s, "t", make_runs(tmp_path, CTL, TRT))
    text = verdict_lines(report.verdicts)
    assert text.startswith("- **H1 — SUPPORTED**: the treatment helps. p = 0.0312 (one-sided, at alpha 0.05); family-wise (Holm) p = 0.0312.")
    assert "  - intervention_rate_mean (lower claimed): effect +0.400 over 5 seeds, 90% interval [+0.400, +0.400], one-sided p = 0.0312 -> supported" in text
    assert "at least 5 seeds are needed to support anything" in rule_text(s.devlogs["t"], 5) and "enough for a verdict" in rule_text(s.devlogs["t"], 5)
    assert "too few for any verdict but *inconclusive* (at least 5 are needed)" in rule_text(s.devlogs["t"], 3)
    row = report.table.set_index("run").loc["trt"].to_dict()
    assert table_cell(row, "eval_success_mean") == "0.92 [0.85, 1.00]" and np.isnan(row["eval_success_mean_iqm"])
