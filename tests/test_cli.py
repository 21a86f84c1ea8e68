"""The ``numpyro-ebm`` command: help, the quick demo, train -> sample -> evaluate, clean user errors.

Everything runs in-process through ``main([...])`` (one interpreter, so JAX compiles once per
shape) except one subprocess check of the installed console script. Budgets are tiny: these tests
check plumbing and file formats, not statistics (tests/test_training.py does those).
"""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from numpyro_ebm import cli, runs  # noqa: E402

SUBCOMMANDS = ["demo", "train", "sample", "evaluate", "reproduce"]
TINY_TRAIN = [
    *("--steps", "6", "--batch-size", "8", "--bank-size", "16", "--chunk-size", "3", "--no-progress"),
    *("--net-widths", "16,16"),
]
TINY_FLOW = ["--flow-layers", "1", "--flow-width", "8"]
TINY_SAMPLE = [
    "--num-samples",
    "8",
    "--chains",
    "4",
    "--warmup",
    "4",
    "--num-particles",
    "4",
    "--no-progress",
]
TINY_EVAL = ["--num-importance", "256", "--num-test", "128", "--resolution", "24"]


def _finite_numbers(obj):
    """Every number in a JSON tree (None stands for NaN/inf there)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


def _error_line(capsys, argv, code=2):
    """Run main(argv), expect a clean failure; return the one-line message."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert "Traceback" not in "\n".join(err)
    assert "error:" in err[-1]
    return err[-1]


# ------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_of_every_subcommand(sub, capsys):
    argv = ["--help"] if sub is None else [sub, "--help"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: numpyro-ebm")
    if sub is None:
        assert all(name in out for name in SUBCOMMANDS)


def test_sampler_flags_are_generated_from_flowmc_settings(capsys):
    """Defaults written once: every FlowMCSettings field is a flag of sample and train, sample's
    defaults are the dataclass's, and train records only the flags given (None may be one)."""
    from numpyro_ebm.settings import FlowMCSettings

    names = [field.name for field in dataclasses.fields(FlowMCSettings)]
    for sub in ("sample", "train"):
        assert cli.main([sub, "--help"]) == 0
        out = capsys.readouterr().out
        assert all("--" + name.replace("_", "-") in out for name in names)
    args = cli.build_parser().parse_args(["sample", "--run", "r"])
    assert {name: getattr(args, name) for name in names} == dataclasses.asdict(FlowMCSettings())
    argv = ["train", "--steps", "1", "--out", "o", "--num-particles", "8", "--no-adapt-step-size"]
    args = cli.build_parser().parse_args([*argv, "--global-move", "none"])
    assert (args.num_particles, args.adapt_step_size, args.global_move) == (8, False, None)
    assert not hasattr(args, "step_size")  # not given: the sampler's own default holds


def test_installed_console_script_help():
    script = shutil.which(
        "numpyro-ebm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    assert script is not None, "the numpyro-ebm console script is not installed (pip install -e .)"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "reproduce" in done.stdout


# ------------------------------------------------------------------------------------- demo


def test_help_does_not_import_jax():
    """`numpyro-ebm --help` answers without JAX (lazy imports): seconds, not a JAX start-up."""
    code = (
        "import sys; from numpyro_ebm import cli\n"
        "for argv in (['--help'], ['train', '--help'], ['reproduce', '--help']):\n"
        "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('jax', 'numpy', 'equinox', 'flowjax', 'optax') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_demo_quick_is_reproduce_figure1(tmp_path, capsys):
    """The demo is `reproduce figure1` at a preset: the same metrics.json, plus the demo's panels.
    (Also reproduce figure1's quick-preset test: one run serves both.)"""
    out = tmp_path / "demo"
    assert (
        cli.main(["--quick", "--steps", "12", "--out", str(out), "--no-progress"]) == 0
    )  # demo is the default
    for name in ("figure.png", "densities.png", "slice.png", "chains.png", "weights.png"):
        assert (out / name).stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["experiment"] == "figure1" and metrics["preset"] == "quick"
    assert {"truth", "methods", "settings", "seconds", "figures", "work"} <= metrics.keys()
    assert abs(metrics["truth"] - 2 / 3) < 1e-6
    assert metrics["settings"]["steps"] == 12
    assert metrics["work"]["train_steps"] > 0 and metrics["work"]["sampler_energy_evals"] > 0
    assert metrics["machine"]["jax_backend"] and metrics["seconds"] > 0
    assert set(metrics["methods"]) == {"flowMC-EBM", "ULA-EBM"}
    assert math.isfinite(metrics["methods"]["flowMC-EBM"]["global_accept_prob"])
    for summary in metrics["methods"].values():
        for key in ("weight", "bank_weight", "train_seconds", "abs_error", "last_quarter_range"):
            assert math.isfinite(summary[key]) and summary[key] >= 0
        assert 0 <= summary["weight"] <= 1 and 0 <= summary["bank_weight"] <= 1
        assert math.isfinite(summary["weight_error"]) and math.isfinite(summary["last_quarter_std"])
        assert summary["settings"]["num_steps"] == 12 == summary["work"]["train_steps"]
        assert {"mean", "min", "max", "range", "std"} <= summary["last_quarter"].keys()
        assert all(math.isfinite(v) for v in summary["last_quarter"].values())
        history = summary["history"]
        assert history["step"][0] == 0 and history["step"][-1] == 12
        assert len(history["weight"]) == len(history["step"])
        assert abs(history["weight"][0] - 0.5) < 1e-3  # E = 0: the symmetric start
    stdout = capsys.readouterr().out
    assert "flowMC-EBM" in stdout and "ULA-EBM" in stdout and "preset quick" in stdout
    assert "--preset cpu" in _error_line(capsys, ["demo", "--quick", "--preset", "cpu"])


# ------------------------------------------------------------------------ train / sample / evaluate


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """flowMC-EBM on two_modes, tiny; then sampled."""
    out = tmp_path_factory.mktemp("runs") / "two_modes"
    argv = ["train", "--data", "two_modes", "--num-data", "64", "--sampler", "flowmc", "--num-particles", "4"]
    assert cli.main([*argv, "--out", str(out), *TINY_TRAIN, *TINY_FLOW]) == 0
    # No warmup: the trained flow proposes as it is (one compiled program fewer); warmup with a
    # flow fitted from scratch is test_user_npy_file_train_resume_sample_evaluate's.
    assert cli.main(["sample", "--run", str(out), *TINY_SAMPLE, "--warmup", "0"]) == 0
    return out


def test_train_writes_a_loadable_run(named_run):
    manifest = json.loads((named_run / "run.json").read_text())
    assert manifest["format"] == runs.RUN_FORMAT
    assert manifest["dim"] == 2 and manifest["sampler"] == "flowmc" and manifest["steps"] == 6
    assert manifest["net"]["widths"] == [16, 16] and manifest["flow"]["flow_layers"] == 1
    assert (named_run / "checkpoints").is_dir()
    run = runs.load_run(named_run)
    assert run.bank.shape == (16, 2) and run.flow is not None
    assert np.all(np.isfinite(np.asarray(run.ebm.log_density(run.bank))))
    # The saved EBM is the trained one, not the zero-energy initialisation.
    assert float(np.ptp(np.asarray(run.ebm.energy(run.bank)))) > 0


def test_sample_writes_npy_and_netcdf(named_run):
    import arviz as az

    samples = np.load(named_run / "samples.npy")
    assert samples.shape == (4, 8, 2) and np.all(np.isfinite(samples))
    idata = az.from_netcdf(named_run / "samples.nc")
    assert idata.posterior["x"].shape == (4, 8, 2)
    assert "global_accept_prob" in idata.sample_stats
    summary = json.loads((named_run / "sample_summary.json").read_text())
    assert len(summary["zone_weights"]["samples"]) == 2


def test_evaluate_named_set(named_run, capsys):
    assert cli.main(["evaluate", "--run", str(named_run), *TINY_EVAL]) == 0
    result = json.loads((named_run / "evaluation.json").read_text())
    zones = result["zone_weights"]
    assert {"truth", "ebm", "negatives", "samples", "mse_vs_truth"} <= zones.keys()
    assert np.allclose(zones["truth"], [1 / 3, 2 / 3], atol=1e-6)
    assert math.isfinite(result["median_squared_log_density_error"])
    assert math.isfinite(result["log_normalizer"]["value"]) and result["log_normalizer"]["ess"] > 1
    assert result["log_normalizer"]["proposal"] == "the trained flow"
    assert math.isfinite(result["test_log_likelihood"]["value"])
    assert math.isfinite(result["mixing"]["max_rhat"])
    assert "test log-likelihood" in capsys.readouterr().out


def test_user_npy_file_train_resume_sample_evaluate(tmp_path, capsys):
    """ULA-EBM on a user's 3-D file: no flow in the run, so sampling fits one during warmup."""
    data = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    path = tmp_path / "points.npy"
    np.save(path, data)
    out = tmp_path / "run"
    argv = ["train", "--data", str(path), "--sampler", "ula", "--out", str(out), *TINY_TRAIN]
    assert cli.main(argv) == 0
    # Resuming continues the same run up to the new total.
    resumed = ["--steps", "9", "--resume", "--no-progress"]
    assert cli.main(["train", "--data", str(path), "--sampler", "ula", "--out", str(out), *resumed]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["steps"] == 9 and manifest["dim"] == 3 and manifest["flow"] is None
    assert manifest["history"]["step"] == [3, 6, 9]
    # Changing a setting on resume is refused.
    line = _error_line(capsys, ["train", "--out", str(out), "--steps", "12", "--resume", "--lr", "0.5"])
    assert "--lr" in line and "0.5" in line
    assert cli.main(["sample", "--run", str(out), *TINY_SAMPLE]) == 0
    assert np.load(out / "samples.npy").shape == (4, 8, 3)
    assert cli.main(["evaluate", "--run", str(out), *TINY_EVAL]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert "zone_weights" not in result  # no truth for a user's file
    assert "Gaussian" in result["log_normalizer"]["proposal"]
    assert result["test_log_likelihood"]["num_points"] == 64


def test_user_csv_file_with_header(tmp_path):
    path = tmp_path / "points.csv"
    rows = np.random.default_rng(1).normal(size=(20, 2))
    path.write_text("x1,x2\n" + "\n".join(f"{a},{b}" for a, b in rows))
    data, target, info = runs.load_data(str(path), num_data=0, dim=None, key=None, batch_size=8)
    assert data.shape == (20, 2) and target is None and not info["named"]
    assert np.allclose(data, rows, atol=1e-6)


# ------------------------------------------------------------------------------------- errors


def _train(data, out, *extra):
    return ["train", "--data", str(data), "--sampler", "ula", "--out", str(out), "--steps", "2", *extra]


def test_missing_data_file(tmp_path, capsys):
    line = _error_line(capsys, _train(tmp_path / "nope.npy", tmp_path / "o"))
    assert "nope.npy" in line and "no such file" in line
    assert not (tmp_path / "o").exists()


def test_nan_data(tmp_path, capsys):
    data = np.zeros((100, 2))
    data[17, 1] = np.nan
    np.save(tmp_path / "nan.npy", data)
    line = _error_line(capsys, _train(tmp_path / "nan.npy", tmp_path / "o"))
    assert "NaN" in line and "row 17" in line


def test_one_dimensional_array(tmp_path, capsys):
    np.save(tmp_path / "flat.npy", np.zeros(100))
    line = _error_line(capsys, _train(tmp_path / "flat.npy", tmp_path / "o"))
    assert "(100,)" in line and "(n, dim)" in line


def test_unknown_sampler(tmp_path, capsys):
    line = _error_line(
        capsys, ["train", "--data", "two_modes", "--sampler", "hmc", "--out", str(tmp_path), "--steps", "2"]
    )
    assert "'hmc'" in line and "flowmc" in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--data", "mnist", "--sampler", "ula", "--steps", "2"], "mnist"),
        (["train", "--data", "two_modes", "--sampler", "ula", "--steps", "0"], "'0'"),
        (
            ["train", "--data", "two_modes", "--sampler", "ula", "--steps", "2", "--num-particles", "8"],
            "--num-particles",
        ),
        (["train", "--data", "gaussian_mixture", "--sampler", "ula", "--steps", "2"], "--dim"),
        (
            ["train", "--data", "two_modes", "--sampler", "ula", "--steps", "2", "--flow-layers", "2"],
            "--flow-layers",
        ),
        (
            ["train", "--data", "two_modes", "--sampler", "ula", "--steps", "2", "--net-widths", "8,x"],
            "'8,x'",
        ),
        (
            ["train", "--data", "two_modes", "--sampler", "ula", "--steps", "2", "--bank-size", "4"],
            "--bank-size 4",
        ),
        (["sample", "--run", "/nonexistent/run"], "/nonexistent/run"),
        # FlowMCSettings checks the transition; the message names the flags, before any work.
        (
            ["sample", "--run", "/nonexistent/run", "--num-particles", "1"],
            "--num-particles must be an integer >= 2",
        ),
        (
            [
                "train",
                "--data",
                "two_modes",
                "--sampler",
                "flowmc",
                "--steps",
                "2",
                "--target-accept-prob",
                "1.5",
            ],
            "--target-accept-prob must lie in (0, 1)",
        ),
        (
            ["train", "--data", "two_modes", "--sampler", "flowmc", "--steps", "2", "--global-move", "none"],
            "mala",
        ),
        (["evaluate", "--run", "/nonexistent/run"], "/nonexistent/run"),
        (["reproduce", "table9"], "'table9'"),
        (["reproduce", "cifar10", "--quick"], "--data"),
        (["reproduce", "table1", "--data", "/tmp"], "cifar10 only"),
        (["demo", "--steps", "-3"], "'-3'"),
    ],
)
def test_bad_arguments_give_one_clean_line(argv, expected, tmp_path, capsys):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "o")]
    assert expected in _error_line(capsys, argv)


def test_out_folder_holding_a_run_needs_resume(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    line = _error_line(
        capsys, ["train", "--data", "two_modes", "--sampler", "ula", "--out", str(tmp_path), "--steps", "2"]
    )
    assert "--resume" in line


def test_bad_csv(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\nthree,4\n")
    line = _error_line(capsys, _train(tmp_path / "bad.csv", tmp_path / "o"))
    assert "comma-separated" in line


def test_reproduce_without_the_module_fails_clearly(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "numpyro_ebm.reproduce", None)  # as if it were not installed
    line = _error_line(capsys, ["reproduce", "figure1", "--quick"])
    assert "numpyro_ebm.reproduce" in line


def test_reproduce_passes_its_arguments(monkeypatch, tmp_path, capsys):
    calls = []

    def run(name, *, preset, out_dir, key=0, progress=True):
        calls.append((name, preset, Path(out_dir), key, progress))
        return {
            "experiment": name,
            "preset": preset,
            "methods": {"flowMC-EBM": {"weight": 0.66, "history": {}}},
        }

    fake = types.SimpleNamespace(run=run, EXPERIMENTS={"figure1": None, "table1": None}, PRESETS=cli.PRESETS)
    monkeypatch.setitem(sys.modules, "numpyro_ebm.reproduce", fake)
    assert (
        cli.main(["reproduce", "figure1", "--quick", "--out", str(tmp_path), "--seed", "3", "--no-progress"])
        == 0
    )
    assert calls == [("figure1", "quick", tmp_path, 3, False)]
    assert "flowMC-EBM: weight 0.66" in capsys.readouterr().out
    assert cli.main(["reproduce", "table1", "--out", str(tmp_path)]) == 0
    assert calls[-1][1] == "cpu"  # the default preset
    line = _error_line(capsys, ["reproduce", "table1", "--quick", "--preset", "paper"])
    assert "--preset paper" in line
    line = _error_line(capsys, ["reproduce", "table2"])  # a choice of the parser, unknown to this module
    assert "table2" in line and "figure1" in line


def test_reproduce_dims_and_summary(monkeypatch, tmp_path, capsys):
    calls = []

    def run(name, *, preset, out_dir, key=0, progress=True, **kwargs):
        calls.append((name, kwargs))
        row = {"max_rhat": 1.002, "mode_weights_is": [0.25, 0.25, 0.25, 0.25], "train_seconds": 3.0}
        row["history"] = {"step": [1, 2], "weight": [0.5, 0.6]}  # never printed
        return {
            "experiment": name,
            "preset": preset,
            "key": key,
            "seconds": 5.0,
            "dims": {"16": {"methods": {"flowMC-EBM": row}}},
        }

    fake = types.SimpleNamespace(run=run, EXPERIMENTS={"table1": None, "table2": None}, PRESETS=cli.PRESETS)
    monkeypatch.setitem(sys.modules, "numpyro_ebm.reproduce", fake)
    assert cli.main(["reproduce", "table2", "--dims", "16,32", "--out", str(tmp_path)]) == 0
    assert calls == [("table2", {"dims": (16, 32)})]
    out = capsys.readouterr().out
    assert "d = 16" in out and "max_rhat 1.002" in out and "0.250/0.250/0.250/0.250" in out
    assert "history" not in out and len(out.splitlines()) <= 4
    assert cli.main(["reproduce", "table2", "--out", str(tmp_path)]) == 0
    assert calls[-1] == ("table2", {})  # no --dims: the preset's
    assert "table2 only" in _error_line(capsys, ["reproduce", "table1", "--dims", "16"])
    assert "'16,x'" in _error_line(capsys, ["reproduce", "table2", "--dims", "16,x"])
    assert "'0'" in _error_line(capsys, ["reproduce", "table2", "--dims", "0"])


def test_console_script_enables_compilation_cache(monkeypatch, tmp_path):
    """The console script (``main()``) points JAX's persistent cache at the user cache folder
    (before JAX is imported, through its environment variable); ``main([...])`` from Python, a
    user's own setting and ``NUMPYRO_EBM_COMPILATION_CACHE=0`` leave it alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("NUMPYRO_EBM_COMPILATION_CACHE", raising=False)
    assert cli.main(["--version"]) == 0
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ  # library use: the process is the caller's
    monkeypatch.setattr(sys, "argv", ["numpyro-ebm", "--version"])
    monkeypatch.setenv("NUMPYRO_EBM_COMPILATION_CACHE", "0")
    assert cli.main() == 0
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    monkeypatch.delenv("NUMPYRO_EBM_COMPILATION_CACHE")
    assert cli.main() == 0
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "numpyro-ebm" / "jax")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    assert cli.main() == 0
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"
