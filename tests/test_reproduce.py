"""reproduce: every experiment's quick preset runs and returns finite metrics with the right keys;
the presets and the work counts are consistent."""

import json
import math

import pytest

from numpyro_ebm import reproduce


def _finite(*values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def _check_common(metrics, out_dir, name):
    assert metrics["experiment"] == name and metrics["preset"] == "quick"
    assert metrics["seconds"] > 0
    assert metrics["work"]["train_steps"] > 0 and metrics["work"]["sampler_energy_evals"] > 0
    assert metrics["machine"]["jax_backend"]
    written = json.loads((out_dir / "metrics.json").read_text())
    assert written["experiment"] == name and written["work"] == metrics["work"]
    assert (out_dir / "figure.png").stat().st_size > 0


def _check_method(row):
    assert row["train_seconds"] > 0
    assert row["work"]["train_steps"] == row["settings"]["num_steps"]


def test_figure1_quick(tmp_path):
    m = reproduce.run("figure1", preset="quick", out_dir=tmp_path, progress=False)
    _check_common(m, tmp_path, "figure1")
    assert set(m["methods"]) == {"flowMC-EBM", "ULA-EBM"}
    for row in m["methods"].values():
        _check_method(row)
        assert 0 <= row["weight"] <= 1 and 0 <= row["bank_weight"] <= 1
        assert _finite(row["weight_error"], row["last_quarter_range"], row["last_quarter_std"])
        assert len(row["history"]["weight"]) == len(row["history"]["step"]) >= 2
    assert _finite(m["methods"]["flowMC-EBM"]["global_accept"])


def test_table3_quick(tmp_path):
    m = reproduce.run("table3", preset="quick", out_dir=tmp_path, progress=False)
    _check_common(m, tmp_path, "table3")
    row = m["methods"]["flowMC-EBM"]
    _check_method(row)
    assert _finite(row["init_vs_ebm"], row["negatives_vs_ebm"], row["ebm_vs_target"])
    assert len(row["ebm_weights"]) == len(row["negative_weights"]) == 4
    assert math.isclose(sum(row["ebm_weights"]), 1, abs_tol=1e-5)


def test_table1_quick(tmp_path):
    m = reproduce.run("table1", preset="quick", out_dir=tmp_path, progress=False)
    _check_common(m, tmp_path, "table1")
    assert set(m["datasets"]) == {"eight_gaussians", "rings"}
    for entry in m["datasets"].values():
        row = entry["methods"]["flowMC-EBM"]
        _check_method(row)
        assert _finite(row["median_sq_log_density_error"]) and row["median_sq_log_density_error"] >= 0


def test_table2_quick(tmp_path):
    m = reproduce.run("table2", preset="quick", out_dir=tmp_path, progress=False)
    _check_common(m, tmp_path, "table2")
    ((d, entry),) = m["dims"].items()
    row = entry["methods"]["flowMC-EBM"]
    _check_method(row)
    assert _finite(row["max_rhat"], row["min_ess"], row["is_ess"]) and row["max_rhat"] > 0.9
    for key in ("mode_weights_chains", "mode_weights_bank", "mode_weights_is"):
        assert len(row[key]) == 4 and math.isclose(sum(row[key]), 1, abs_tol=1e-4)
    assert row["eval_work"]["energy"] > 0
    assert m["rhat_chains"] == 8 and m["rhat_draws"] == 8


def test_presets_and_errors(tmp_path):
    assert set(reproduce.EXPERIMENTS) == {"figure1", "table1", "table2", "table3"}
    assert reproduce.PRESETS == ("quick", "cpu", "paper")
    for name in reproduce.EXPERIMENTS:
        for preset in reproduce.PRESETS:
            methods = reproduce.config(name, preset)
            assert methods and methods[0].name == "flowMC-EBM"
            for method in methods:
                s = method.schedule
                if preset != "paper":  # the paper's step counts (23,438) have no round divisor
                    assert s.num_steps % s.chunk_size == 0, (name, preset, method.name)
                assert s.bank_size >= s.batch_size and s.num_data >= s.batch_size
    # The paper preset holds the paper's numbers (paper-notes section 4).
    paper = reproduce.config("figure1", "paper")[0]
    s = paper.schedule
    assert (s.num_steps, s.batch_size, s.bank_size) == (19200, 64, 1024)
    assert paper.options["n_particles"] == 32 and paper.schedule.lr == 1e-2
    assert reproduce.config("table2", "paper")[0].options["n_particles"] == 128
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run("table9", preset="quick", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown preset"):
        reproduce.run("table1", preset="gpu", out_dir=tmp_path)
    with pytest.raises(ValueError, match="table2 only"):
        reproduce.run("table1", preset="quick", out_dir=tmp_path, dims=(16,))


def test_sampler_work_counts():
    # flowMC, the paper's 2:1 example: per chain 1 + 2 x (1 + 4) gradients, 2 x 31 proposals.
    work = reproduce.sampler_work("flowmc", {"n_particles": 32, "n_cycles": 2, "n_local_steps": 4}, 64)
    assert work == {"energy": 64 * (11 + 62), "energy_grad": 64 * 11, "flow": 64 * 2 * 32}
    imh = reproduce.sampler_work("flowmc", {"global_move": "imh", "n_cycles": 1, "n_local_steps": 3}, 1)
    assert imh == {"energy": 6, "energy_grad": 5, "flow": 2}
