"""Tests for numpyro_ebm.datasets: every target through the same invariants, then the specifics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from numpyro_ebm import datasets
from numpyro_ebm.datasets import (
    MIXTURE_SCALE,
    TARGETS,
    GaussianMixture,
    gaussian_mixture_target,
    load,
)

# A registry, as flowjax's bijection tests keep one: every entry runs through the same checks.
TARGETS_2D = {
    "two_modes": datasets.two_modes_target,
    "two_gaussians": datasets.two_gaussians_target,
    "line_of_four": datasets.line_of_four_target,
    "eight_gaussians": datasets.eight_gaussians_target,
    "rings": datasets.rings_target,
    "gaussian_mixture_2": lambda: gaussian_mixture_target(2),
}
ALL_TARGETS = {
    **TARGETS_2D,
    "gaussian_mixture_16": lambda: gaussian_mixture_target(16),
    "gaussian_mixture_16_constant": lambda: gaussian_mixture_target(16, scaling="constant"),
}
GENERATORS = {
    "two_modes": datasets.two_modes,
    "two_gaussians": datasets.two_gaussians,
    "line_of_four": datasets.line_of_four,
    "eight_gaussians": datasets.eight_gaussians,
    "rings": datasets.rings,
}

N_SAMPLES = 40_000


def _grid(bounds, resolution):
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    xs = x_lo + (x_hi - x_lo) / resolution * (np.arange(resolution) + 0.5)
    ys = y_lo + (y_hi - y_lo) / resolution * (np.arange(resolution) + 0.5)
    cell = (x_hi - x_lo) * (y_hi - y_lo) / resolution**2
    return np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1), cell


@pytest.mark.parametrize("name", ALL_TARGETS)
def test_target_structure(name):
    target = ALL_TARGETS[name]()
    x = target.sample(jax.random.key(0), 7)
    assert x.shape == (7, target.dim)
    assert target.log_prob(x).shape == (7,)
    assert target.log_prob(x[None]).shape == (1, 7)  # any batch shape
    assert target.zones(x).shape == (7,)
    assert jnp.issubdtype(target.zones(x).dtype, jnp.integer)
    assert target.weights.shape == (target.num_zones,)
    assert jnp.allclose(target.zone_weights, target.weights)
    assert abs(float(target.weights.sum()) - 1) < 1e-6  # float32 rounding of a sum of <= 8 terms
    assert (target.bounds is not None) == (target.dim == 2)


@pytest.mark.parametrize("name", ALL_TARGETS)
def test_zone_frequencies_match_weights(name):
    target = ALL_TARGETS[name]()
    x = target.sample(jax.random.key(1), N_SAMPLES)
    freq = np.bincount(np.asarray(target.zones(x)), minlength=target.num_zones) / N_SAMPLES
    w = np.asarray(target.weights, np.float64)
    se = np.sqrt(w * (1 - w) / N_SAMPLES)
    # 4 binomial standard errors per zone: a correct sampler fails one zone w.p. 6e-5.
    np.testing.assert_array_less(np.abs(freq - w), 4 * se)


@pytest.mark.parametrize("name", ALL_TARGETS)
def test_coordinate_variances_match_samples(name):
    target = ALL_TARGETS[name]()
    x = np.asarray(target.sample(jax.random.key(2), N_SAMPLES), np.float64)
    centred_sq = (x - x.mean(0)) ** 2
    se = centred_sq.std(0) / math.sqrt(N_SAMPLES)  # standard error of the sample variance
    exact = np.asarray(target.distribution.coordinate_variances(), np.float64)
    # 4 standard errors per coordinate (up to 16 coordinates: family-wise false alarm < 1e-3).
    np.testing.assert_array_less(np.abs(centred_sq.mean(0) - exact), 4 * se)
    assert float(target.max_variance) == pytest.approx(exact.max(), rel=1e-6)


@pytest.mark.parametrize("name", TARGETS_2D)
def test_log_prob_integrates_to_one(name):
    target = TARGETS_2D[name]()
    points, cell = _grid(target.bounds, 400)
    mass = np.exp(np.asarray(target.log_prob(jnp.asarray(points)), np.float64)).sum() * cell
    # Every box leaves >= 6 standard deviations around the modes (outside mass < 1e-8), and the
    # midpoint rule on a smooth density that vanishes at the box edges errs by ~exp(-2 pi^2
    # sigma^2 / h^2) < 1e-20 (here h / sigma <= 0.17). What is left is float32 rounding of
    # log_prob (relative 1e-6), so 1e-5 is a generous bound that still catches a wrong constant.
    assert mass == pytest.approx(1.0, abs=1e-5)


def _reference_mixture_log_prob(mixture: GaussianMixture, x):
    means = np.asarray(mixture.means, np.float64)
    variances = np.asarray(mixture.variances, np.float64)
    weights = np.asarray(mixture.weights, np.float64)
    comps = [
        math.log(w) + multivariate_normal(m, v * np.eye(len(m))).logpdf(x)
        for m, v, w in zip(means, variances, weights, strict=True)
    ]
    return logsumexp(np.stack(comps, -1), axis=-1)


@pytest.mark.parametrize(
    "name", ["two_modes", "two_gaussians", "line_of_four", "eight_gaussians", "gaussian_mixture_16"]
)
def test_mixture_log_prob_matches_scipy(name):
    target = ALL_TARGETS[name]()
    key_x, key_noise = jax.random.split(jax.random.key(3))
    x = target.sample(key_x, 200)
    x = x + 2.0 * jax.random.normal(key_noise, x.shape)  # also between and beyond the modes
    ours = np.asarray(target.log_prob(x), np.float64)
    ref = _reference_mixture_log_prob(target.distribution, np.asarray(x, np.float64))
    # float32 evaluation of sums of O(d) squares: relative error ~1e-6 of |log p| <= 1e3.
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_rings_log_prob_is_the_polar_change_of_variables():
    target = datasets.rings_target()
    x = np.asarray(jax.random.uniform(jax.random.key(4), (500, 2), minval=-5, maxval=5))
    r = np.linalg.norm(x.astype(np.float64), axis=-1)
    p_r = sum(0.25 * norm(i + 1, 0.15).pdf(r) for i in range(4))  # radius density (r > 0)
    ref = np.log(p_r) - np.log(2 * np.pi * r)
    ours = np.asarray(target.log_prob(jnp.asarray(x)), np.float64)
    keep = ref > -80  # beyond that, float32 underflows differently from float64
    np.testing.assert_allclose(ours[keep], ref[keep], rtol=1e-5, atol=1e-4)


def test_rings_log_prob_is_finite_at_the_origin():
    target = datasets.rings_target()
    value, grad = jax.value_and_grad(target.log_prob)(jnp.zeros(2))
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
    # The clamp keeps the density at the origin negligible (~1e-4), not a spike.
    assert float(value) < -5


def test_mixture_zones_classify_own_components_in_dim_16():
    target = gaussian_mixture_target(16)
    mix = target.distribution
    n = 5000
    keys = jax.random.split(jax.random.key(5), 4)
    correct = 0
    for k in range(4):
        x = mix.means[k] + jnp.sqrt(mix.variances[k]) * jax.random.normal(keys[k], (n, 16))
        correct += int(jnp.sum(target.zones(x) == k))
    # Exact misassignment rate 1 - (1 - Phi(-c sqrt(d/2)))^2 = 8.1e-5 (see next test): about
    # 1.6 of 20000 expected, so > 99.9% correct fails only if the zones are wrong.
    assert correct / (4 * n) > 0.999


@pytest.mark.parametrize("scaling", ["sqrt_log", "constant"])
def test_mixture_misassignment_rate_is_the_exact_value(scaling):
    # A point of mode 1 is nearer another mean iff one half-sum of its noise falls below
    # -c d/2; the half-sums are independent N(0, d/2), so P = 1 - (1 - Phi(-c sqrt(d/2)))^2.
    # This is why the paper's constant a = 0.5919 cannot give its claimed 1e-10 (docstring).
    dim, n = 16, 20_000
    target = gaussian_mixture_target(dim, scaling=scaling)
    c = float(target.distribution.means[0, 0])
    expected_c = MIXTURE_SCALE * (math.sqrt(2 * math.log(dim)) if scaling == "sqrt_log" else 1.0)
    assert c == pytest.approx(expected_c, rel=1e-6)
    assert float(target.max_variance) == pytest.approx(1 + c**2, rel=1e-5)
    x = target.distribution.means[0] + jax.random.normal(jax.random.key(6), (n, dim))
    rate = float(jnp.mean(target.zones(x) != 0))
    p = 1 - (1 - norm.cdf(-c * math.sqrt(dim / 2))) ** 2
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n) + 1 / n  # 4 binomial SE (+1 count)


def test_line_of_four_zone_weights_are_exact_masses():
    # Zone masses differ from the component weights only by the tails crossing x1 = -2, 0, 2.
    target = datasets.line_of_four_target()
    tail = norm.sf(1 / math.sqrt(0.05))  # one component's mass beyond a boundary at 1 unit
    w = np.array([0.1, 0.2, 0.3, 0.4])
    exact = w + tail * (np.r_[0, w[:-1]] + np.r_[w[1:], 0] - w * np.array([1, 2, 2, 1]))
    np.testing.assert_allclose(np.asarray(target.weights), exact, atol=1e-7)


@pytest.mark.parametrize("name", GENERATORS)
def test_generators_are_target_samples(name):
    key = jax.random.key(7)
    data, target = load(name, key, 100)
    assert data.shape == (100, 2) and target.name == name
    np.testing.assert_array_equal(np.asarray(GENERATORS[name](key, 100)), np.asarray(data))


def test_gaussian_mixture_generator_and_load():
    key = jax.random.key(8)
    data, target = load("gaussian_mixture", key, 50, dim=32)
    assert data.shape == (50, 32) and target.dim == 32
    np.testing.assert_array_equal(np.asarray(datasets.gaussian_mixture(key, 50, 32)), np.asarray(data))


def test_registry_names():
    # Every public `NAME_target` is registered under NAME, with a generator `NAME` beside it.
    named = {n.removesuffix("_target") for n in datasets.__all__ if n.endswith("_target")}
    assert set(TARGETS) == named and len(named) == 6
    assert all(callable(getattr(datasets, name)) for name in named)


def test_two_modes_zone_one_is_the_heavy_mode():
    for target in (datasets.two_modes_target(), datasets.two_gaussians_target()):
        heavy = target.distribution.means[jnp.argmax(target.distribution.weights)]
        assert int(target.zones(heavy)) == 1
        assert float(target.weights[1]) == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize("bad_n", [0, -3, 2.5, True, "10"])
def test_bad_sample_size_raises(bad_n):
    with pytest.raises(ValueError, match="integer >= 1"):
        datasets.two_modes(jax.random.key(0), bad_n)


@pytest.mark.parametrize("dim", [1, 3, 15, 2.0])
def test_bad_mixture_dim_raises(dim):
    with pytest.raises(ValueError, match="even integer dim"):
        gaussian_mixture_target(dim)


def test_bad_scaling_raises():
    with pytest.raises(ValueError, match="sqrt_log"):
        gaussian_mixture_target(4, scaling="linear")


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="two_modes"):
        load("moons", jax.random.key(0), 10)


def test_gaussian_mixture_validates():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0], [0.5, 0.6])
    with pytest.raises(ValueError, match="variances must have shape"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        datasets.two_modes_target().log_prob(jnp.zeros((4, 3)))


def test_digits():
    x, labels = datasets.digits()
    assert x.shape == (1797, 64) and x.dtype == jnp.float32
    assert labels.shape == (1797,) and set(np.unique(labels).tolist()) == set(range(10))
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    pixels = np.asarray(x) * 16
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-5)  # the 17 levels v / 16

    xq, labels_q = datasets.digits(dequantize_key=jax.random.key(9))
    np.testing.assert_array_equal(np.asarray(labels_q), np.asarray(labels))
    assert float(xq.min()) >= 0.0 and float(xq.max()) < 1.0
    # (v + U) / 17 with U in [0, 1): flooring 17 x recovers the pixel value v.
    np.testing.assert_array_equal(np.floor(np.asarray(xq) * 17), np.round(pixels))
