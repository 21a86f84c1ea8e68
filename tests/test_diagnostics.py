"""Tests for numpyro_ebm.diagnostics: the paper's metrics on densities with known answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flowjax.distributions import Normal

from numpyro_ebm import datasets
from numpyro_ebm import diagnostics as dg

TARGETS_2D = {
    "two_modes": datasets.two_modes_target,
    "two_gaussians": datasets.two_gaussians_target,
    "line_of_four": datasets.line_of_four_target,
    "eight_gaussians": datasets.eight_gaussians_target,
    "rings": datasets.rings_target,
}


class FakeEBM:
    """Stands in for the trainer's EnergyModel: only ``log_density`` (and ``dim``) matter."""

    def __init__(self, log_density_fn, dim=2):
        self._fn, self.dim = log_density_fn, dim

    def log_density(self, x):
        return self._fn(x)


# --- grid and zone weights ------------------------------------------------------------------


def test_grid_log_density_is_normalised_and_batch_independent():
    target = datasets.two_modes_target()
    grid = dg.grid_log_density(lambda x: target.log_prob(x) - 12.0, target.bounds, 120)
    assert grid.points.shape == (120, 120, 2) and grid.log_density.shape == (120, 120)
    assert grid.cell_area == pytest.approx((8 / 120) ** 2, rel=1e-5)
    total = np.exp(np.asarray(grid.log_density, np.float64)).sum() * grid.cell_area
    assert total == pytest.approx(1.0, abs=1e-5)  # float32 rounding of 14400 terms
    # Unnormalised input and a batch size that does not divide the grid change nothing.
    small = dg.grid_log_density(target, target.bounds, 120, batch_size=777)
    np.testing.assert_allclose(small.log_density, grid.log_density, atol=1e-4)


@pytest.mark.parametrize("name", TARGETS_2D)
def test_grid_zone_weights_match_true_weights(name):
    target = TARGETS_2D[name]()
    weights = dg.zone_weights(lambda x: target.log_prob(x) + 5.0, target)
    # Grid error: a cell straddling a zone boundary is given wholly to its centre's zone, so
    # the error is at most (half a cell diagonal) x (target mass per unit boundary length).
    # The worst case, 8 Gaussians (boundaries 2.55 sd from the means, h = 0.025), bounds it
    # by 9e-4; the other targets' boundaries lie >= 3.3 sd out (< 2e-4).
    np.testing.assert_allclose(weights, target.weights, atol=1e-3)


def test_grid_zone_weights_are_unbiased_on_boundaries_through_cell_centres():
    # On the symmetric two_modes grid, cell centres lie exactly on x1 + x2 = 0. N(0, I) has half
    # its mass on each side; giving those cells to one side would bias the weights by 0.004.
    target = datasets.two_modes_target()
    weights = dg.zone_weights(lambda x: -0.5 * jnp.sum(x**2, -1), target)
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-5)  # float32 rounding only
    strips = dg.zone_weights(
        lambda x: -0.5 * jnp.sum(x**2, -1),
        datasets.LinearZones(jnp.array([1.0, 0.0]), jnp.array([0.0])),
        bounds=((-4, 4), (-4, 4)),
        resolution=201,
    )
    np.testing.assert_allclose(strips, [0.5, 0.5], atol=1e-5)  # x1 = 0 is a column of centres


def test_zone_weights_dispatch_samples_ebm_and_explicit_zones():
    target = datasets.line_of_four_target()
    x = target.sample(jax.random.key(0), 1000)
    np.testing.assert_array_equal(dg.zone_weights(x, target), dg.zone_frequencies(x, target))
    np.testing.assert_array_equal(dg.zone_weights(x, target.zones, 4), dg.zone_frequencies(x, target.zones))
    by_ebm = dg.zone_weights(FakeEBM(target.log_prob), target.zones, bounds=target.bounds)
    by_fn = dg.zone_weights(target.log_prob, target)
    np.testing.assert_allclose(by_ebm, by_fn, atol=1e-7)


def test_zone_frequencies_are_exact_counts():
    target = datasets.line_of_four_target()
    means = target.distribution.means
    x = jnp.concatenate([jnp.repeat(means[k][None], k + 1, axis=0) for k in range(4)])
    np.testing.assert_allclose(dg.zone_frequencies(x, target), [0.1, 0.2, 0.3, 0.4], atol=1e-7)


def test_zone_weights_bad_inputs_raise():
    target = datasets.two_modes_target()
    x = target.sample(jax.random.key(1), 10)
    with pytest.raises(ValueError, match="NaN"):
        dg.zone_weights(x.at[3, 0].set(jnp.nan), target)
    with pytest.raises(ValueError, match=r"shape \(n, dim\)"):
        dg.zone_frequencies(x[0], target)
    with pytest.raises(ValueError, match="at least 2"):
        dg.zone_frequencies(x, target.zones, 1)  # zone index 1 does not fit one zone
    with pytest.raises(ValueError, match="pass num_zones"):
        dg.zone_frequencies(x, lambda p: jnp.zeros(p.shape[:-1], jnp.int32))
    with pytest.raises(ValueError, match="needs bounds"):
        dg.zone_weights(target.log_prob, target.zones)
    with pytest.raises(ValueError, match="pass samples"):
        dg.zone_weights(FakeEBM(lambda p: -jnp.sum(p**2, -1), dim=16), target)
    with pytest.raises(ValueError, match="pass samples"):  # a 3-D density on a 2-D grid
        dg.zone_weights(lambda p: -(p @ jnp.ones(3)), target)
    with pytest.raises(ValueError, match="2-D only"):
        dg.zone_weights(target.log_prob, target, bounds=((0, 1), (0, 1), (0, 1)))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        dg.grid_log_density(lambda p: jnp.log(p[..., 0]), target.bounds, 20)
    with pytest.raises(ValueError, match="shape"):
        dg.grid_log_density(lambda p: p, target.bounds, 20)
    with pytest.raises(TypeError, match="log-density"):
        dg.grid_log_density("energy", target.bounds, 20)


# --- GridZoneWeights: zone_weights compiled once, a training metric --------------------------


@pytest.mark.parametrize("name", TARGETS_2D)
def test_grid_zone_weights_class_agrees_with_zone_weights(name):
    target = TARGETS_2D[name]()
    # A lopsided, unnormalised density, so that a mistake in any zone would show.
    log_density = lambda x: target.log_prob(x) + 0.3 * x[..., 0] - 4.0
    expected = dg.zone_weights(log_density, target, resolution=64)
    weights = dg.GridZoneWeights(target, resolution=64)(log_density)
    assert weights.shape == (target.num_zones,)
    np.testing.assert_allclose(weights, expected, atol=2e-6)
    # Explicit zones and bounds, another resolution, an EBM-like object, one zone as a float.
    explicit = dg.GridZoneWeights(target.zones, target.num_zones, bounds=target.bounds, resolution=31, zone=0)
    by_fn = dg.zone_weights(log_density, target.zones, target.num_zones, bounds=target.bounds, resolution=31)
    value = explicit(FakeEBM(log_density), None, None)
    assert isinstance(value, float)
    assert value == pytest.approx(float(by_fn[0]), abs=2e-6)


def test_grid_zone_weights_class_compiles_once_per_model_structure():
    import equinox as eqx

    traces = []

    class Quadratic(eqx.Module):
        centre: jax.Array

        def log_density(self, x):
            traces.append(1)  # runs only while tracing
            return -0.5 * jnp.sum((x - self.centre) ** 2, -1)

    target = datasets.two_modes_target()
    metric = dg.GridZoneWeights(target, resolution=40, zone=1)
    values = [metric(Quadratic(jnp.full(2, c)), None, None) for c in (-1.5, 0.0, 1.5)]
    assert len(traces) == 1
    # P(x1 + x2 > 0) under N((c, c), I) is Phi(sqrt(2) c), within the box (-4, 4)^2.
    np.testing.assert_allclose(values, [0.0169, 0.5, 0.9831], atol=2e-3)


def test_grid_zone_weights_class_gives_nan_for_a_broken_model_and_checks_arguments():
    target = datasets.two_modes_target()
    metric = dg.GridZoneWeights(target, resolution=20, zone=1)
    assert math.isnan(metric(lambda x: jnp.log(x[..., 0]), None, None))  # NaN on half the box
    with pytest.raises(ValueError, match="bounds"):
        dg.GridZoneWeights(target.zones, 2)
    with pytest.raises(ValueError, match="2-D only"):
        dg.GridZoneWeights(target, bounds=((0, 1),))
    with pytest.raises(ValueError, match="resolution"):
        dg.GridZoneWeights(target, resolution=1)
    with pytest.raises(ValueError, match=r"zone must be None or an index in \[0, 1\]; got 2"):
        dg.GridZoneWeights(target, zone=2)
    with pytest.raises(TypeError, match="log-density"):
        dg.GridZoneWeights(target)("energy")


# --- Table 1 and Table 3 metrics ------------------------------------------------------------


def test_median_error_is_zero_for_the_truth_up_to_a_constant():
    target = datasets.rings_target()
    err = dg.median_squared_log_density_error(lambda x: target.log_prob(x) + 4.0, target)
    assert err < 1e-8  # float32 log-densities agree to ~1e-5, squared 1e-10


def test_median_error_of_swapped_weights_is_log2_squared():
    target = datasets.two_modes_target()
    mix = target.distribution
    wrong = datasets.GaussianMixture(mix.means, mix.variances, mix.weights[::-1])
    # In each mode's region the other component is e^-40 smaller, so the grid-normalised
    # log-densities differ by exactly +-log 2 there: every squared error is log(2)^2.
    for mass in (0.5, 0.99):
        err = dg.median_squared_log_density_error(wrong, target, mass=mass)
        assert err == pytest.approx(math.log(2) ** 2, abs=1e-4)
    with pytest.raises(ValueError, match="mass"):
        dg.median_squared_log_density_error(wrong, target, mass=0.0)
    with pytest.raises(ValueError, match="bounds"):
        dg.median_squared_log_density_error(wrong, datasets.gaussian_mixture_target(4))


def test_zone_weight_mses_table_3():
    target = datasets.line_of_four_target()
    means = target.distribution.means
    init = jnp.repeat(means[:1], 10, axis=0)  # every chain starts in zone 0
    negatives = jnp.concatenate([jnp.repeat(means[k][None], k + 1, axis=0) for k in range(4)])
    mses = dg.zone_weight_mses(init, negatives, FakeEBM(target.log_prob), target)
    assert set(mses) == {"init_vs_ebm", "negatives_vs_ebm", "ebm_vs_target"}
    # The EBM is the truth, so its grid weights are (0.1, 0.2, 0.3, 0.4) up to 1e-5: the first
    # MSE is ((1 - .1)^2 + .2^2 + .3^2 + .4^2) / 4 = 0.275, the other two vanish.
    assert mses["init_vs_ebm"] == pytest.approx(0.275, abs=1e-4)
    assert mses["negatives_vs_ebm"] < 1e-9
    assert mses["ebm_vs_target"] < 1e-9


# --- R-hat and ESS (Table 2) ----------------------------------------------------------------


def test_max_rhat_and_ess_for_iid_chains():
    chains = jax.random.normal(jax.random.key(2), (4, 500, 3))
    # For iid draws R-hat - 1 has sd ~1e-3 here (over 30 seeds: mean 1.0014, sd 0.001), so
    # 1.01 (Vehtari et al.'s threshold) is ~9 sd away.
    assert 0.99 < dg.max_rhat(chains) < 1.01
    # Bulk ESS of 2000 iid draws, over 30 seeds: mean 1880, sd 110: 1400 is 4 sd below.
    assert 1400 < dg.min_ess(chains) < 2600


def test_max_rhat_flags_chains_stuck_in_modes():
    noise = 0.1 * jax.random.normal(jax.random.key(3), (8, 500, 3))
    two_modes = noise + jnp.where(jnp.arange(8) < 4, 3.0, -3.0)[:, None, None]
    # Rank-normalised R-hat is bounded: with half the chains in each mode the normal scores
    # split into two halves and R-hat -> 1 / sqrt(1 - 2 / pi) = 1.66 as draws grow.
    assert dg.max_rhat(two_modes) > 1.5
    # Eight chains in eight places: R-hat -> 4.27 (the same computation with 8 score bins).
    eight_places = noise + 3.0 * jnp.arange(8.0)[:, None, None]
    assert dg.max_rhat(eight_places) > 3.0
    assert dg.min_ess(eight_places) < 50  # of 4000 draws


def test_rhat_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\(chains, draws, dim\)"):
        dg.max_rhat(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="at least 2 chains"):
        dg.max_rhat(np.random.default_rng(0).normal(size=(1, 100, 2)))
    with pytest.raises(ValueError, match="NaN"):
        dg.min_ess(np.full((2, 10, 2), np.nan))


# --- log Z and test log-likelihood ----------------------------------------------------------


def test_log_normalizer_exact_proposal_has_full_ess():
    q = Normal(jnp.array([1.0, -2.0]), jnp.array([0.5, 2.0]))
    log_z, ess = dg.log_normalizer(lambda x: q.log_prob(x) + 3.25, q, jax.random.key(4), 2000)
    # All weights are equal: exact up to float32 rounding of the logsumexp.
    assert float(log_z) == pytest.approx(3.25, abs=1e-4)
    assert float(ess) == pytest.approx(2000, rel=1e-4)


@pytest.mark.parametrize("batch_size", [None, 768])
def test_log_normalizer_recovers_log_z_within_standard_errors(batch_size):
    # Target exp(c) N(0, I_2), proposal N(0, 1.5^2 I_2): E_q[w^2] / Z^2 = (s^2 / sqrt(2 s^2 - 1))^2
    # = 1.4465 exactly, so the delta-method standard error of log Z_hat is sqrt(0.4465 / n).
    c, n = -7.5, 4096
    q = Normal(jnp.zeros(2), jnp.full(2, 1.5))
    target = FakeEBM(lambda x: -0.5 * jnp.sum(x**2, -1) - math.log(2 * math.pi) + c)
    log_z, ess = dg.log_normalizer(target, q, jax.random.key(5), n, batch_size=batch_size)
    assert abs(float(log_z) - c) < 4 * math.sqrt(0.4465 / n)  # 4 standard errors
    # ESS / n -> 1 / 1.4465 = 0.691; E_q[w^4] = 4.27 Z^4 gives the ESS estimate a relative
    # sd of ~3.7% at n = 4096, so 15% is 4 sd.
    assert float(ess) / n == pytest.approx(1 / 1.4465, rel=0.15)


def test_log_normalizer_counts_nonfinite_weights_as_zero():
    n = 4000
    q = Normal(jnp.zeros(2), jnp.ones(2))
    half = lambda x: jnp.where(x[..., 0] < 0, q.log_prob(x), jnp.nan)  # NaN on half the plane
    log_z, ess = dg.log_normalizer(half, q, jax.random.key(6), n)
    # Z = 1/2; with equal weights on a Binomial(n, 1/2) subset, log Z_hat has sd 1/sqrt(n)
    # and the ESS is the subset size, n/2 +- sqrt(n)/2.
    assert abs(float(log_z) - math.log(0.5)) < 4 / math.sqrt(n)
    assert abs(float(ess) - n / 2) < 4 * math.sqrt(n) / 2
    zero = lambda x: jnp.full(x.shape[:-1], -jnp.inf)
    log_z, ess = dg.log_normalizer(zero, q, jax.random.key(7), 10)
    assert float(log_z) == -np.inf and float(ess) == 0.0


def test_log_normalizer_bad_inputs_raise():
    q = Normal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="integer >= 1"):
        dg.log_normalizer(q.log_prob, q, jax.random.key(0), 0)
    with pytest.raises(TypeError, match="sample_and_log_prob"):
        dg.log_normalizer(q.log_prob, "flow", jax.random.key(0), 10)
    with pytest.raises(ValueError, match="shape"):
        dg.log_normalizer(lambda x: x, q, jax.random.key(0), 10)


def test_test_log_likelihood():
    q = Normal(jnp.zeros(3), jnp.ones(3))
    data = jax.random.normal(jax.random.key(8), (50, 3))
    ll, ess = dg.test_log_likelihood(
        FakeEBM(lambda x: q.log_prob(x) + 2.0, dim=3), data, q, jax.random.key(9), 500
    )
    # With the exact proposal log Z = 2 exactly, so the value is the true mean log-density.
    assert float(ll) == pytest.approx(float(jnp.mean(q.log_prob(data))), abs=1e-4)
    assert float(ess) == pytest.approx(500, rel=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        dg.test_log_likelihood(q.log_prob, data.at[0, 0].set(jnp.inf), q, jax.random.key(9), 5)
