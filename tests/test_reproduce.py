"""reproduce: every experiment's quick preset runs and returns finite metrics with the right keys;
the presets and the work counts are consistent."""

import json
import math

import numpy as np
import pytest

from numpyro_ebm import images, reproduce


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


# figure1's quick preset runs in tests/test_cli.py::test_demo_quick_is_reproduce_figure1 (the demo
# is `reproduce figure1`), with every check that used to be here.


def _check_table3(m, out_dir):
    _check_common(m, out_dir, "table3")
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


def test_table2_quick_has_the_four_rows(tmp_path, capsys):
    """Table 2's four methods through the command line: max R-hat, mode weights, Figure 6."""
    from numpyro_ebm import cli

    argv = ["reproduce", "table2", "--quick", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["experiment"] == "table2" and m["preset"] == "quick"
    ((d, entry),) = m["dims"].items()
    assert list(entry["methods"]) == ["CoopFlow", "NT-EBM", "ULA-EBM", "flowMC-EBM"]  # the paper's rows
    for name, row in entry["methods"].items():
        assert name in printed
        assert row["work"]["train_steps"] == row["settings"]["num_steps"]
        assert _finite(row["max_rhat"]) and row["max_rhat"] > 0.9, name
        for key in ("mode_weights_chains", "mode_weights_bank"):
            assert len(row[key]) == 4 and math.isclose(sum(row[key]), 1, abs_tol=1e-4)
        history = row["rhat_history"]
        assert len(history["max_rhat"]) == len(history["train_seconds"]) == len(history["step"]) >= 2
        assert history["train_seconds"] == sorted(history["train_seconds"])
        assert row["eval_work"]["energy"] > 0
    assert entry["methods"]["ULA-EBM"]["mode_weights_is"] is None  # no flow to propose from
    assert math.isclose(sum(entry["methods"]["flowMC-EBM"]["mode_weights_is"]), 1, abs_tol=1e-4)
    assert sorted(m["ordering"][d]) == sorted(entry["methods"])
    assert m["rhat_chains"] == 8 and m["rhat_calls"] == 6
    assert (tmp_path / "figure6.png").stat().st_size > 0
    # One row alone keeps its seed of the full table: the same numbers (how rows run in parallel).
    one = reproduce.run(
        "table2", preset="quick", out_dir=tmp_path / "ula", progress=False, methods=("ULA-EBM",)
    )
    assert list(one["dims"][d]["methods"]) == ["ULA-EBM"]
    assert one["dims"][d]["methods"]["ULA-EBM"]["max_rhat"] == entry["methods"]["ULA-EBM"]["max_rhat"]
    with pytest.raises(ValueError, match="table2's rows"):
        reproduce.run("table2", preset="quick", out_dir=tmp_path, methods=("EBM",))


def test_presets_and_errors(tmp_path):
    assert set(reproduce.EXPERIMENTS) == {"figure1", "table1", "table2", "table3", "cifar10", "digits"}
    assert reproduce.PRESETS == ("quick", "cpu", "paper")
    for name in reproduce.EXPERIMENTS:
        for preset in reproduce.PRESETS:
            methods = reproduce.config(name, preset)
            assert methods and "flowMC-EBM" in [m.name for m in methods]
            for method in methods:
                s = method.schedule
                if preset != "paper":  # the paper's step counts (23,438) have no round divisor
                    assert s.num_steps % s.chunk_size == 0, (name, preset, method.name)
                assert s.bank_size >= s.batch_size and s.num_data >= s.batch_size
    # The paper preset holds the paper's numbers (paper-notes section 4).
    paper = reproduce.config("figure1", "paper")[0]
    s = paper.schedule
    assert (s.num_steps, s.batch_size, s.bank_size) == (19200, 64, 1024)
    assert paper.options["num_particles"] == 32 and paper.schedule.lr == 1e-2
    for preset, per_dim in reproduce.TABLE2_AT_DIM.items():  # table2's per-dimension changes
        names = {m.name: m for m in reproduce.config("table2", preset)}
        for d, rows in per_dim.items():
            assert d in reproduce.TABLE2_DIMS[preset] and set(rows) <= set(names), (preset, d)
            for name, changes in rows.items():
                known = set(vars(names[name].schedule)) | set(names[name].options)
                assert set(changes) <= known, (preset, d, name)  # no typo'd setting goes unused
                assert 0 < changes.get("num_steps", 1) <= names[name].schedule.num_steps
    table2 = {m.name: m for m in reproduce.config("table2", "paper")}
    assert list(table2) == ["CoopFlow", "NT-EBM", "ULA-EBM", "flowMC-EBM"]
    assert table2["flowMC-EBM"].options["num_particles"] == 128
    assert (table2["ULA-EBM"].options["num_mcmc_steps"], table2["ULA-EBM"].options["step_size"]) == (
        512,
        1e-3,
    )
    assert (table2["NT-EBM"].options["num_mcmc_steps"], table2["NT-EBM"].options["target_accept"]) == (
        128,
        0.75,
    )
    assert (table2["CoopFlow"].options["num_mcmc_steps"], table2["CoopFlow"].options["step_size"]) == (
        256,
        1e-4,
    )
    cifar = reproduce.config("cifar10", "paper")[0]
    assert (
        cifar.options["num_particles"],
        cifar.options["num_cycles"],
        cifar.options["num_local_steps"],
    ) == (
        128,
        3,
        32,
    )
    assert (cifar.schedule.lr, cifar.schedule.lr_decay, cifar.schedule.decay_every) == (1e-4, 0.99, 50)
    assert cifar.schedule.energy_l2 == 1e-4
    with pytest.raises(ValueError, match="unknown experiment"):
        reproduce.run("table9", preset="quick", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown preset"):
        reproduce.run("table1", preset="gpu", out_dir=tmp_path)
    with pytest.raises(ValueError, match="table2 only"):
        reproduce.run("table1", preset="quick", out_dir=tmp_path, dims=(16,))


def test_sampler_work_counts():
    # flowMC, the paper's 2:1 example: per chain 1 + 2 x (1 + 4) gradients, 2 x 31 proposals.
    work = reproduce.sampler_work("flowmc", {"num_particles": 32, "num_cycles": 2, "num_local_steps": 4}, 64)
    assert work == {"energy": 64 * (11 + 62), "energy_grad": 64 * 11, "flow": 64 * 2 * 32}
    imh = reproduce.sampler_work("flowmc", {"global_move": "imh", "num_cycles": 1, "num_local_steps": 3}, 1)
    assert imh == {"energy": 6, "energy_grad": 5, "flow": 2}


def _write_cifar(folder, name, n, seed):
    """n random records in CIFAR-10's binary format: a label byte, then 3 x 32 x 32 pixel bytes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())


def test_cifar10_quick_end_to_end_on_binary_files(tmp_path, capsys):
    """`reproduce cifar10 --data DIR` on a synthetic copy in the official binary format."""
    from numpyro_ebm import cli

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        _write_cifar(folder, f"data_batch_{i}.bin", 16, seed=i)
    _write_cifar(folder, "test_batch.bin", 32, seed=0)
    out = tmp_path / "out"
    argv = ["reproduce", "cifar10", "--quick", "--data", str(folder), "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    assert "flowMC-EBM" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    row = m["methods"]["flowMC-EBM"]
    assert m["num_train"] == 64 and m["num_test"] == 32  # the quick preset's sizes, read across files
    assert row["samples_finite"] and row["training_stopped"] is None
    assert 0 <= row["global_accept_prob"] <= 1
    assert math.isclose(sum(row["class_balance"].values()), 1, abs_tol=1e-9)
    assert set(row["class_balance"]) == set(images.CIFAR10_CLASSES)
    assert _finite(*row["energy_mean"].values(), row["class_balance_tv"])
    for name in ("samples.png", "energies.png"):
        assert (out / name).stat().st_size > 0


_CLOCKS = {"seconds", "train_seconds", "eval_seconds", "machine", "time_s"}


def _numbers(node):
    """A metrics tree without its clocks and machine description: what must repeat exactly."""
    if isinstance(node, dict):
        return {k: _numbers(v) for k, v in node.items() if k not in _CLOCKS}
    if isinstance(node, list):
        return [_numbers(v) for v in node]
    return node


def test_table3_quick_same_seed_same_numbers_in_two_processes(tmp_path):
    """Two processes, same seed, same machine settings: identical metrics, digit for digit; and
    the metrics of table3's quick preset are complete and finite.

    The second process runs under another hash seed (set iteration order) and at the same time
    as the first (another load). table3's quick preset exercises what the cpu preset runs: i-SIR
    over the flow, MALA, flow training, keep=k negatives and the grid integrals of the metric.
    (XLA's CPU thread settings are not varied: `--xla_cpu_multi_thread_eigen=false` changes the
    last float32 digits of the grid integrals; docs/reproduction.md, "Determinism".)
    """
    import os
    import subprocess
    import sys

    # The machine's defaults: no XLA flags and no test-session compilation cache (tests/conftest.py
    # sets both), so each process compiles what it runs (or uses the CLI's own cache, as users do).
    session = (
        "XLA_FLAGS",
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
    )
    plain = {k: v for k, v in os.environ.items() if k not in session}
    envs = [dict(plain, PYTHONHASHSEED="1"), dict(plain, PYTHONHASHSEED="2")]
    argv = ["-m", "numpyro_ebm.cli", "reproduce", "table3", "--quick", "--seed", "3", "--no-progress"]
    procs = [
        subprocess.Popen(
            [sys.executable, *argv, "--out", str(tmp_path / str(i))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, env in enumerate(envs)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    first, second = (json.loads((tmp_path / str(i) / "metrics.json").read_text()) for i in range(2))
    assert _numbers(first) == _numbers(second)
    _check_table3(first, tmp_path / "0")  # table3's quick-preset test: these runs serve it too


def test_a_baseline_diverging_in_its_first_chunk_is_recovered(monkeypatch, capsys):
    """A run that diverges before its first checkpoint (ULA-EBM in the demo ran away at step 98
    of a 100-step chunk) is replayed up to the step before, not raised: train is faked here."""
    from numpyro_ebm.reproduce import common
    from numpyro_ebm.reproduce.presets import config
    from numpyro_ebm.training import TrainingDivergedError

    calls = []

    def fake_train(ebm, data, *, num_steps, checkpoint_dir=None, **kwargs):
        calls.append((num_steps, checkpoint_dir))
        if len(calls) == 1:
            raise TrainingDivergedError("a chain ran away at training step 7", step=7, checkpoint=None)
        return "model of step 6"

    monkeypatch.setattr(common, "train", fake_train)
    method = config("figure1", "quick")[1]
    result, stopped = common._train_recovering(None, None, None, method, None, False, None)
    assert result == "model of step 6" and stopped["step"] == 7
    assert calls[1] == (6, None)  # the same steps, no checkpoint to resume
    assert "ran away" in capsys.readouterr().err
