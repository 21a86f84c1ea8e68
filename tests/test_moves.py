"""Every move leaves a known target invariant; non-finite proposals never enter a chain.

Invariance test: start N chains from *exact, independent* draws of a correlated Gaussian in d = 5,
apply the move T times. If the move leaves the target invariant, the N final states are again
independent exact draws, so the sample mean has standard error sqrt(Sigma_ii / N) and the sample
variance sqrt(2 / N) Sigma_ii. We allow 4.5 standard errors per coordinate (about 7e-6 two-sided
per check, so the ~10 checks per move stay far from a false alarm), and also require the move to
actually move (acceptance in a range), so a move that never moves cannot pass.

Tests that can fail: the MALA step is large enough that ULA (MALA without its Metropolis
correction) is biased by >= 8 standard errors in the variance, which a test asserts from ULA's exact
stationary law. The ``MUTANTS`` below break the moves on purpose (no Metropolis correction, a wrong
proposal density, no importance weights) by monkeypatching; CI checks that the invariance test and
an independent, hand-written acceptance ratio both go red on each of them.
"""

import sys

import jax
import jax.numpy as jnp
import mutants
import numpy as np
import pytest
from flowjax.distributions import Normal

from numpyro_ebm import moves

DIM = 5
N_CHAINS = 4096
N_STEPS = 30


def _correlated_gaussian():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(DIM, DIM))
    cov = a @ a.T / DIM + 0.5 * np.eye(DIM)
    mean = np.linspace(-1.0, 1.0, DIM)
    prec = np.linalg.inv(cov)
    logdensity = lambda x: -0.5 * (x - mean) @ prec @ (x - mean)
    return jnp.asarray(mean), jnp.asarray(cov), logdensity


MEAN, COV, LOGDENSITY = _correlated_gaussian()
# A deliberately wrong flow proposal (wider, off-centre): the MH / SIR corrections must fix it.
PROPOSAL = Normal(MEAN + 0.3, 1.3 * jnp.sqrt(jnp.diag(COV)))

# At this step ULA's stationary variance is off by >= 8 SE in some coordinate
# (test_mala_step_makes_ula_bias_visible), so a MALA that lost its correction fails the invariance test.
MALA_STEP = 0.4

MOVES = {
    "mala": (lambda k, s: moves.mala(k, s, LOGDENSITY, MALA_STEP), (0.5, 1.0)),
    "mala_per_chain_step": (
        lambda k, s: moves.mala(k, s, LOGDENSITY, jnp.linspace(0.25, MALA_STEP, N_CHAINS)),
        (0.5, 1.0),
    ),
    "imh": (lambda k, s: moves.imh(k, s, LOGDENSITY, PROPOSAL), (0.1, 0.9)),
    "isir": (lambda k, s: moves.isir(k, s, LOGDENSITY, PROPOSAL, 8), (0.3, 0.95)),
    "isir_batched": (lambda k, s: moves.isir(k, s, LOGDENSITY, PROPOSAL, 8, batch_size=512), (0.3, 0.95)),
}


def _exact_start(key):
    chol = jnp.linalg.cholesky(COV)
    x = MEAN + jax.random.normal(key, (N_CHAINS, DIM)) @ chol.T
    return moves.init_chains(x, LOGDENSITY)


def _run(move, key):
    def body(state, k):
        state, info = move(k, state)
        return state, info.accept_prob.mean()

    state, acc = jax.jit(lambda s, ks: jax.lax.scan(body, s, ks))(
        _exact_start(jax.random.key(1)), jax.random.split(key, N_STEPS)
    )
    return state, float(acc.mean())


def _assert_law_kept(state):
    """Mean and variance of the final chains within 4.5 SE of the target's, per coordinate."""
    x = np.asarray(state.position)
    sd = np.sqrt(np.diag(COV))
    np.testing.assert_array_less(np.abs(x.mean(0) - MEAN) / (sd / np.sqrt(N_CHAINS)), 4.5)
    var_se = np.diag(COV) * np.sqrt(2.0 / N_CHAINS)
    np.testing.assert_array_less(np.abs(x.var(0) - np.diag(COV)) / var_se, 4.5)


@pytest.mark.parametrize("name", list(MOVES))
def test_move_leaves_gaussian_invariant(name):
    move, (acc_lo, acc_hi) = MOVES[name]
    state, accept = _run(move, jax.random.key(2))
    _assert_law_kept(state)
    assert acc_lo < accept < acc_hi, f"{name} acceptance {accept:.3f} outside ({acc_lo}, {acc_hi})"
    # Cached log densities and gradients must match the positions they belong to.
    np.testing.assert_allclose(state.logdensity, jax.vmap(LOGDENSITY)(state.position), rtol=1e-4, atol=1e-4)


def _ula_stationary_cov(eta):
    """ULA's exact stationary covariance on the Gaussian target.

    x' = A x + b + sqrt(2 eta) xi with A = I - eta P, so the stationary covariance S solves
    S = A S A^T + 2 eta I.
    """
    prec = np.linalg.inv(np.asarray(COV))
    a = np.eye(DIM) - eta * prec
    s = np.asarray(COV)
    for _ in range(5000):  # fixed-point iteration, contraction since |eig(A)| < 1
        s = a @ s @ a.T + 2 * eta * np.eye(DIM)
    return s


def test_mala_step_makes_ula_bias_visible():
    """Power of the MALA invariance test: ULA's variance bias at MALA_STEP is >= 8 SE somewhere."""
    bias = np.abs(np.diag(_ula_stationary_cov(MALA_STEP)) - np.diag(COV))
    var_se = np.diag(COV) * np.sqrt(2.0 / N_CHAINS)
    assert (bias / var_se).max() >= 8.0, bias / var_se


def test_ula_matches_its_exact_biased_stationary_law():
    """ULA is biased; for a Gaussian target its stationary covariance is known exactly.

    We start at the (exact) stationary law and check it is kept.
    """
    eta = 0.15
    s = _ula_stationary_cov(eta)
    assert np.abs(np.diag(s) - np.diag(COV)).max() > 0.02  # the bias is real, so the test bites
    chol = np.linalg.cholesky(s)
    x0 = MEAN + jax.random.normal(jax.random.key(3), (N_CHAINS, DIM)) @ jnp.asarray(chol.T)
    state = moves.init_chains(x0, LOGDENSITY)

    def body(state, k):
        return moves.ula(k, state, LOGDENSITY, eta)[0], None

    state, _ = jax.lax.scan(body, state, jax.random.split(jax.random.key(4), N_STEPS))
    x = np.asarray(state.position)
    var_se = np.diag(s) * np.sqrt(2.0 / N_CHAINS)
    np.testing.assert_array_less(np.abs(x.var(0) - np.diag(s)) / var_se, 4.5)


def _nan_beyond_one(x):
    """A log density that is NaN on half of the space x[0] > 1 (a broken energy)."""
    return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * x @ x)


@pytest.mark.parametrize(
    "move",
    [
        lambda k, s: moves.mala(k, s, _nan_beyond_one, 0.5),
        lambda k, s: moves.ula(k, s, _nan_beyond_one, 0.5),
        lambda k, s: moves.imh(k, s, _nan_beyond_one, Normal(jnp.zeros(2), 2 * jnp.ones(2))),
        lambda k, s: moves.isir(k, s, _nan_beyond_one, Normal(jnp.zeros(2), 2 * jnp.ones(2)), 8),
    ],
    ids=["mala", "ula", "imh", "isir"],
)
def test_nan_proposals_are_rejected(move):
    state = moves.init_chains(jnp.zeros((256, 2)), _nan_beyond_one)

    def body(state, k):
        state, info = move(k, state)
        return state, info.is_accepted.mean()

    state, moved = jax.lax.scan(body, state, jax.random.split(jax.random.key(0), 20))
    assert bool(jnp.all(jnp.isfinite(state.position)))
    assert bool(jnp.all(jnp.isfinite(state.logdensity)))
    assert bool(jnp.all(state.position[:, 0] <= 1.0))
    assert float(moved.mean()) > 0.05  # chains still move on the finite side


class _NaNFlow:
    """A flow whose log density is NaN for half its proposals (a diverged flow)."""

    def sample_and_log_prob(self, key, shape):
        x = jax.random.normal(key, shape + (2,))
        logq = jnp.where(x[..., 0] > 0, jnp.nan, -0.5 * jnp.sum(x**2, -1))
        return x, logq

    def log_prob(self, x):
        return -0.5 * jnp.sum(x**2, -1)


@pytest.mark.parametrize("global_move", ["imh", "isir"])
def test_proposals_with_nan_flow_density_are_rejected(global_move):
    logp = lambda x: -0.5 * x @ x
    state = moves.init_chains(-jnp.ones((512, 2)), logp)
    if global_move == "imh":
        state, info = moves.imh(jax.random.key(0), state, logp, _NaNFlow())
    else:
        state, info = moves.isir(jax.random.key(0), state, logp, _NaNFlow(), 8)
    moved = np.asarray(info.is_accepted)
    assert moved.mean() > 0.2
    assert bool(jnp.all(state.position[moved, 0] <= 0.0))  # never a NaN-density proposal


def test_init_chains_rejects_unbatched_position():
    with pytest.raises(ValueError, match=r"\(chains, dim\)"):
        moves.init_chains(jnp.zeros(3), lambda x: -x @ x)


def test_isir_rejects_one_particle():
    state = moves.init_chains(jnp.zeros((4, 2)), lambda x: -x @ x)
    with pytest.raises(ValueError, match="num_particles"):
        moves.isir(jax.random.key(0), state, lambda x: -x @ x, PROPOSAL, 1)


# --- An independent acceptance ratio, written from the formulas in float64 ----------------------

PREC64 = np.linalg.inv(np.asarray(COV, np.float64))
MEAN64 = np.asarray(MEAN, np.float64)
PROPOSAL_LOC_SCALE = tuple(np.asarray(a, np.float64) for a in (PROPOSAL.loc, PROPOSAL.scale))


def _ref_logdensity(x):
    d = x - MEAN64
    return -0.5 * np.einsum("ni,ij,nj->n", d, PREC64, d)


def _ref_log_normal(x, mean, var):
    """log N(x; mean, var I), normalised, row by row."""
    return -0.5 * np.sum((x - mean) ** 2, -1) / var - 0.5 * x.shape[-1] * np.log(2 * np.pi * var)


def _ref_mala_log_ratio(x, y, eta):
    """log [pi(y) q(x | y)] - log [pi(x) q(y | x)], q(. | x) = N(x + eta grad log pi(x), 2 eta I)."""
    grad = lambda z: -(z - MEAN64) @ PREC64
    return (
        _ref_logdensity(y)
        - _ref_logdensity(x)
        + _ref_log_normal(x, y + eta * grad(y), 2 * eta)
        - _ref_log_normal(y, x + eta * grad(x), 2 * eta)
    )


def _ref_flow_log_ratio(x, y):
    """log [pi(y) q(x)] - log [pi(x) q(y)] for the diagonal-normal PROPOSAL."""
    loc, scale = PROPOSAL_LOC_SCALE  # the true proposal's, even when a mutant swaps PROPOSAL
    log_q = lambda z: np.sum(-0.5 * ((z - loc) / scale) ** 2 - np.log(scale), -1)
    return _ref_logdensity(y) - log_q(y) - _ref_logdensity(x) + log_q(x)


def _one_step_against_reference(name):
    """Run one move; on the chains that moved, the new point is the proposal, so the move's
    acceptance probability can be recomputed independently. Returns (ours, reference)."""
    state = _exact_start(jax.random.key(5))
    if name == "mala":
        new, info = moves.mala(jax.random.key(6), state, LOGDENSITY, MALA_STEP)
    elif name == "imh":
        new, info = moves.imh(jax.random.key(6), state, LOGDENSITY, PROPOSAL)
    else:  # with 2 particles, i-SIR leaves x for the one proposal y with probability w(y) / (w(x) + w(y))
        new, info = moves.isir(jax.random.key(6), state, LOGDENSITY, PROPOSAL, 2)
    moved = np.asarray(info.is_accepted)
    x = np.asarray(state.position, np.float64)[moved]
    y = np.asarray(new.position, np.float64)[moved]
    if name == "mala":
        reference = np.exp(np.minimum(_ref_mala_log_ratio(x, y, MALA_STEP), 0.0))
    elif name == "imh":
        reference = np.exp(np.minimum(_ref_flow_log_ratio(x, y), 0.0))
    else:
        reference = 1.0 / (1.0 + np.exp(-_ref_flow_log_ratio(x, y)))
    return np.asarray(info.accept_prob, np.float64)[moved], reference


@pytest.mark.parametrize("name", ["mala", "imh", "isir"])
def test_acceptance_prob_matches_independent_reference(name):
    ours, reference = _one_step_against_reference(name)
    # Enough moved chains with a non-trivial probability that a wrong ratio cannot hide in min(1, .).
    assert np.sum(reference < 0.9) > 100, np.sum(reference < 0.9)
    # float32 arithmetic on log-ratios of size ~10 against float64: 1e-3 absolute is ample.
    np.testing.assert_allclose(ours, reference, atol=1e-3)


# --- Mutation checks: each broken variant must turn a test above red ----------------------------


def _flow_density_dropped(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PROPOSAL", mutants.WithoutDensity(PROPOSAL))


MUTANTS = {
    "mala_without_metropolis": ("mala", mutants.always_accept),
    "mala_forward_density_as_reverse": ("mala", mutants.forward_density_as_reverse),
    "mala_drift_sign_flipped": ("mala", mutants.drift_sign_flipped),
    "imh_without_metropolis": ("imh", mutants.always_accept),
    "imh_without_flow_density": ("imh", _flow_density_dropped),
    "isir_uniform_resampling": ("isir", mutants.uniform_resampling),
    "isir_without_flow_density": ("isir", _flow_density_dropped),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_invariance_test_catches_mutant(mutant, monkeypatch):
    name, mutate = MUTANTS[mutant]
    mutate(monkeypatch)
    state, _ = _run(MOVES[name][0], jax.random.key(2))
    with pytest.raises(AssertionError):
        _assert_law_kept(state)


# These two break the move's choice but not the probability it reports; only the law (above) shows them.
_SAME_REPORTED_PROB = {"mala_without_metropolis", "isir_uniform_resampling"}


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m not in _SAME_REPORTED_PROB])
def test_reference_ratio_catches_mutant(mutant, monkeypatch):
    name, mutate = MUTANTS[mutant]
    mutate(monkeypatch)
    with pytest.raises(AssertionError):
        test_acceptance_prob_matches_independent_reference(name)
