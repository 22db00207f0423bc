"""hilstudy.report: summaries from a run folder's files, and the seed aggregate (IQM + bootstrap CI)."""

import json

import numpy as np
import pandas as pd
import pytest

from hilstudy.report import (
    first_step_at_or_above,
    first_step_below,
    iqm_ci,
    load_run,
    meets_bar,
    run_summary,
    running_mean,
    summarize,
)


def write_run(d, intervention_rates, evals):
    """A run folder as the fine-tune stage writes it: 20-step episodes, evals at given steps."""
    d.mkdir(parents=True)
    n = len(intervention_rates)
    pd.DataFrame({
        "episode": range(n), "env_step": [20 * (i + 1) for i in range(n)], "intervention_rate": intervention_rates,
        "success": [1.0] * n, "jitter": [0.1] * n,
    }).to_csv(d / "episodes.csv", index=False)
    pd.DataFrame({"env_step": list(evals), "success_rate": list(evals.values())}).to_csv(d / "evals.csv", index=False)
    pd.DataFrame({"env_step": [20], "update": [1], "loss_critic": [0.5]}).to_csv(d / "updates.csv", index=False)
    (d / "metrics.json").write_text(json.dumps({"env_steps": 20 * n}))
    (d / "timing.json").write_text(json.dumps({"train_time_s": 12.5}))
    return d


def test_running_mean_is_trailing_and_starts_from_what_exists():
    np.testing.assert_allclose(running_mean([1, 0, 1, 1], window=2), [1, 0.5, 0.5, 1])


def test_first_steps():
    assert first_step_at_or_above([0, 10, 20], [0.1, 0.9, 1.0], 0.9) == 10
    assert first_step_at_or_above([0, 10], [0.1, 0.2], 0.9) is None
    assert first_step_below([0, 10, 20], [0.5, 0.2, 0.1], 0.15) == 20
    assert first_step_below([0], [0.5], 0.15) is None


def test_run_summary_from_files(tmp_path):
    # 20 episodes at rate 0.5, then 20 at 0.0: the 20-episode mean falls below 0.15 at episode 37
    # (mean of 3 x 0.5 + 17 x 0 = 0.075 < 0.15; episode 36 has 4 x 0.5 / 20 = 0.1 too: first is where
    # at most 6 of the last 20 are 0.5 -> episode index 20 + 14 = 34)
    d = write_run(tmp_path / "bc-bc0.5-s0", [0.5] * 20 + [0.0] * 20, {0: 0.3, 400: 0.9, 800: 1.0})
    s = run_summary(load_run(d))
    assert s["run"] == "bc-bc0.5-s0" and s["env_steps"] == 800
    assert s["eval_success_start"] == 0.3 and s["eval_success_final"] == 1.0 and s["step_eval_success_ge_bar"] == 400
    assert s["eval_success_min_after_start"] == 0.9
    assert s["intervention_rate_first20"] == 0.5 and s["intervention_rate_last20"] == 0.0
    rate = running_mean([0.5] * 20 + [0.0] * 20)
    first = next(i for i in range(19, 40) if rate[i] < 0.15)
    assert first == 34 and s["step_intervention_lt_bar"] == 20 * (first + 1)
    assert s["train_time_s"] == 12.5 and meets_bar(s)


def test_intervention_bar_needs_a_full_window(tmp_path):
    # a low rate over the first few episodes alone does not count: the mean has fewer than 20 episodes
    d = write_run(tmp_path / "r", [0.0] * 5 + [0.5] * 30, {0: 1.0})
    s = run_summary(load_run(d))
    assert s["step_intervention_lt_bar"] is None and not meets_bar(s)


def test_unfinished_run_is_named(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="missing episodes.csv"):
        load_run(tmp_path / "r")


def test_summarize_table(tmp_path):
    a = write_run(tmp_path / "a", [0.5] * 25, {0: 0.0, 500: 0.5})
    b = write_run(tmp_path / "b", [0.0] * 25, {0: 1.0, 500: 0.95})
    c = write_run(tmp_path / "c", [0.0] * 25, {0: 1.0})  # only its start meets the bar: that is not learning
    t = summarize([a, b, c])
    assert list(t.run) == ["a", "b", "c"] and list(t.meets_bar) == [False, True, False]


def test_the_start_is_its_own_metric_and_learning_metrics_leave_it_out(tmp_path):
    """A BC start at 1.0 that fine-tuning unlearns: its start is worth 1.0, but it learned nothing, and the
    step-0 evaluation must not lift the learning metrics (it added ~0.09 to a BC start's mean over 11 points)."""
    d = write_run(tmp_path / "r", [0.2] * 25, {0: 1.0, 250: 0.0, 500: 0.2})
    s = run_summary(load_run(d))
    assert s["eval_success_start"] == 1.0 and s["eval_success_mean"] == pytest.approx(0.1)
    assert s["eval_success_best"] == 0.2 and s["eval_success_final"] == 0.2 and s["step_eval_success_ge_bar"] is None


def test_evaluation_with_the_operator_gives_the_policys_own_intervention_rate(tmp_path):
    d = write_run(tmp_path / "r", [0.5] * 25, {0: 0.0, 250: 0.5, 500: 1.0})
    ev = pd.read_csv(d / "evals.csv").assign(intervention_rate=[0.6, 0.3, 0.1], jitter=[0.4, 0.2, 0.1])
    ev.to_csv(d / "evals.csv", index=False)
    s = run_summary(load_run(d))
    assert s["eval_intervention_rate_start"] == 0.6 and s["eval_intervention_rate_mean"] == pytest.approx(0.2)
    assert s["eval_intervention_rate_final"] == 0.1 and s["eval_jitter_mean"] == pytest.approx(0.15)
    assert s["intervention_rate_mean"] == 0.5  # the training episodes' rate: the operator's workload, apart


def test_iqm_ci_reproducible_and_brackets_the_point():
    scores = [0.6, 0.8, 0.9, 1.0, 0.7]
    point, lo, hi = iqm_ci(scores)
    assert iqm_ci(scores) == (point, lo, hi)
    assert lo <= point <= hi and lo >= 0.6 and hi <= 1.0
    # IQM trims the best and the worst quarter: 0.6 and 1.0 of five do not count fully
    assert point == pytest.approx(np.mean(sorted(scores)[1:4]), abs=0.05)
    assert iqm_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_iqm_ci_gives_rliables_numbers(n):
    """The vectorized bootstrap is rliable's (stratified over seeds, percentile interval), bit for bit."""
    from rliable import library as rly
    from rliable import metrics

    scores = np.random.default_rng(n).integers(0, 11, size=n) / 10
    for reps, size, seed in [(2000, 0.95, 0), (300, 0.9, 7)]:
        state = np.random.get_state()
        np.random.seed(seed)
        point, ci = rly.get_interval_estimates({"v": scores.reshape(-1, 1)}, lambda s: np.array([metrics.aggregate_iqm(s)]),
                                               reps=reps, confidence_interval_size=size)
        np.random.set_state(state)
        assert iqm_ci(scores, reps=reps, seed=seed, size=size) == (point["v"][0], ci["v"][0][0], ci["v"][1][0])
    before = np.random.get_state()[1].copy()
    iqm_ci(scores)
    assert (np.random.get_state()[1] == before).all()  # the caller's global RNG is left alone
