"""plotting: every function returns a Figure, draws on a given Axes, and rejects bad input clearly."""

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from numpyro_ebm import datasets, plotting  # noqa: E402
from numpyro_ebm.energy import EnergyModel  # noqa: E402
from numpyro_ebm.flows import default_flow  # noqa: E402
from numpyro_ebm.nets import ToyNet  # noqa: E402

TARGET = datasets.two_modes_target()
BOUNDS = TARGET.bounds
RES = 24


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def models():
    flow = default_flow(jax.random.key(0), 2, identity_init=True, flow_layers=1, nn_width=8, knots=4)
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), flow.base_dist)
    return ebm, flow


@pytest.mark.parametrize("kind", ["density", "log_density", "energy"])
def test_plot_density_of_an_ebm_a_target_and_a_callable(models, kind):
    ebm, _ = models
    for obj in (ebm, TARGET, lambda x: -0.5 * (x**2).sum(-1)):
        fig = plotting.plot_density(obj, BOUNDS, resolution=RES, kind=kind, colorbar=True, title="t")
        assert isinstance(fig, Figure)
        image = fig.axes[0].images[0].get_array()
        assert image.shape == (RES, RES) and np.all(np.isfinite(image))


def test_plot_density_normalises_on_the_grid():
    fig = plotting.plot_density(lambda x: 5.0 - 0.5 * (x**2).sum(-1), BOUNDS, resolution=RES)
    cell = (8 / RES) ** 2
    assert abs(float(fig.axes[0].images[0].get_array().sum()) * cell - 1) < 1e-3


def test_plot_flow_density_and_drawing_on_given_axes(models):
    _, flow = models
    fig, axes = plt.subplots(1, 2)
    out = plotting.plot_flow_density(flow, BOUNDS, resolution=RES, ax=axes[1], title="flow")
    assert out is fig and axes[1].get_title() == "flow" and len(axes[1].images) == 1 and not axes[0].images


def test_plot_slice_peaks_at_the_centres_with_equal_heights():
    centres = np.asarray(TARGET.distribution.means)
    fig = plotting.plot_slice(
        {"model": TARGET}, centres[0], centres[1], bounds=BOUNDS, truth=TARGET, resolution=80
    )
    truth, model = fig.axes[0].lines
    assert truth.get_label() == "truth" and model.get_label() == "model"
    x, y = truth.get_data()
    half = len(x) // 2
    peaks = x[np.argmax(y[:half])], x[half + np.argmax(y[half:])]
    dist = np.linalg.norm(centres[1] - centres[0]) / 2
    assert np.allclose(peaks, (-dist, dist), atol=0.05)
    # (1/3) N(0.05 I) and (2/3) N(0.1 I) have the same peak density, 1 / (0.3 pi).
    assert np.allclose([y[:half].max(), y[half:].max()], 1 / (0.3 * np.pi), rtol=0.02)
    assert np.allclose(model.get_ydata(), y, rtol=1e-4, atol=1e-6)
    assert len(x) == 400  # num_points' default; n_points, its old name, still works:
    with pytest.warns(DeprecationWarning, match="num_points"):
        fig = plotting.plot_slice(
            {"model": TARGET}, centres[0], centres[1], bounds=BOUNDS, resolution=80, n_points=50
        )
    assert len(fig.axes[0].lines[0].get_xdata()) == 50


def test_plot_samples_scatter_and_paths(models):
    ebm, _ = models
    points = np.asarray(TARGET.sample(jax.random.key(0), 300))
    fig = plotting.plot_samples(
        points, background=ebm, bounds=BOUNDS, resolution=RES, label="x", max_points=100
    )
    assert isinstance(fig, Figure)
    assert fig.axes[0].collections[0].get_offsets().shape == (100, 2)
    chains = np.cumsum(np.random.default_rng(0).normal(size=(5, 20, 2)) * 0.1, axis=1)
    fig = plotting.plot_samples(chains, max_paths=3)
    assert len(fig.axes[0].lines) == 3


def test_plot_weight_history_draws_each_method_and_the_truth():
    fig = plotting.plot_weight_history(
        {
            "flowMC-EBM": ([0, 10, 20], [0.5, 0.6, 0.66]),
            "ULA-EBM": {"step": [0, 10, 20], "weight": [0.5, 1, 0]},
        },
        true_weight=2 / 3,
    )
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["flowMC-EBM", "ULA-EBM", "truth"]
    assert fig.axes[0].lines[-1].get_linestyle() == "--"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: plotting.plot_density(TARGET, BOUNDS, kind="heat"), "kind must be one of"),
        (lambda: plotting.plot_density(42, BOUNDS), "needs a log-density"),
        (lambda: plotting.plot_samples(np.zeros(5)), r"shape \(n, 2\)"),
        (lambda: plotting.plot_samples(np.zeros((5, 2)), background=TARGET), "needs bounds"),
        (lambda: plotting.plot_slice(TARGET, (0, 0), (0, 0), bounds=BOUNDS), "must differ"),
        (lambda: plotting.plot_weight_history({"a": ([1, 2], [0.5])}), "equal length"),
        (lambda: plotting.plot_weight_history({}), "non-empty"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
