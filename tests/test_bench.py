"""hilstudy.bench at tiny sizes: the measurements run, and what they compare is equal where it must be.
No timing is asserted here (speed figures are printed by `make bench`)."""

from pathlib import Path

import numpy as np
import pytest

from hilstudy import bench
from hilstudy.runner import run_notebook

ROOT = Path(__file__).resolve().parents[1]


def test_sim_rates_compare_equal_trajectories():
    s = bench.sim_rates(steps=30, episodes=2)
    assert s["stock_steps_per_s"] > 0 and s["fast_steps_per_s"] > 0
    assert s["max_abs_difference"] == 0.0 and s["bitwise_equal_steps"] == s["steps_compared"] == 200


def test_pixel_rates_give_a_frame_from_each_renderer():
    p = bench.pixel_rates(steps=3, image_size=64)
    assert p["frames"].shape == (128, 128, 3) and p["frames"].dtype == np.uint8  # stock over lean, front | wrist
    assert p["stock_steps_per_s"] > 0 and p["lean_steps_per_s"] > 0 and p["mean_abs_pixel_difference"] > 0


def test_finetuning_gives_the_same_results_with_stock_sim_compiled_sim_and_overlap():
    f = bench.finetune_rates(steps=330)
    assert f["same_results"] and f["results"]["updates"] == 30
    assert set(f["steps_per_s"]) == {"stock", "fast_sim", "fast_sim+overlap"}


def test_sac_bc_at_weight_0_computes_stock_sacs_losses():
    r = bench.learner_rates(updates=2)
    assert r["w0_equals_stock"]
    assert r["losses"]["sac_bc w=0.5"]["loss_actor"] != r["losses"]["stock SAC"]["loss_actor"]  # the BC term counts
    assert r["losses"]["sac_bc w=0.5"]["loss_bc"] > 0  # 30% of the batch are interventions


@pytest.mark.slow
def test_speed_notebook_runs(tmp_path):
    out = run_notebook(ROOT / "notebooks" / "90_speed.py", tmp_path / "speed.ipynb", params_file=ROOT / "params.yaml",
                       overrides={"sim_steps": 20, "equivalence_episodes": 1, "pixel_steps": 3, "finetune_steps": 0,
                                  "learner_updates": 1})  # fmt: skip
    assert "image/png" in out.read_text()  # the side-by-side frames


def test_isolated_runs_a_measurement_in_a_fresh_process_and_gives_its_memory():
    result, mem = bench.isolated(bench.baseline)
    assert result is None and mem > 100  # torch and MuJoCo alone take hundreds of MiB
    with pytest.raises(ValueError, match="hilstudy.bench's own functions"):
        bench.isolated(len, [])
