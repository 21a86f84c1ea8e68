"""Every move leaves a known target invariant; non-finite proposals never enter a chain.

Invariance test: start N chains from *exact, independent* draws of a correlated Gaussian in d = 5,
apply the move T times. If the move leaves the target invariant, the N final states are again
independent exact draws, so the sample mean has standard error sqrt(Sigma_ii / N) and the sample
variance sqrt(2 / N) Sigma_ii. We allow 4.5 standard errors per coordinate (about 7e-6 two-sided
per check, so the ~10 checks per move stay far from a false alarm), and also require the move to
actually move (acceptance in a range), so a move that never moves cannot pass.
"""

import jax
import jax.numpy as jnp
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

MOVES = {
    "mala": (lambda k, s: moves.mala(k, s, LOGDENSITY, 0.08), (0.5, 1.0)),
    "mala_per_chain_step": (
        lambda k, s: moves.mala(k, s, LOGDENSITY, jnp.linspace(0.02, 0.1, N_CHAINS)),
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


@pytest.mark.parametrize("name", list(MOVES))
def test_move_leaves_gaussian_invariant(name):
    move, (acc_lo, acc_hi) = MOVES[name]
    state, accept = _run(move, jax.random.key(2))
    x = np.asarray(state.position)
    sd = np.sqrt(np.diag(COV))
    np.testing.assert_array_less(np.abs(x.mean(0) - MEAN) / (sd / np.sqrt(N_CHAINS)), 4.5)
    var_se = np.diag(COV) * np.sqrt(2.0 / N_CHAINS)
    np.testing.assert_array_less(np.abs(x.var(0) - np.diag(COV)) / var_se, 4.5)
    assert acc_lo < accept < acc_hi, f"{name} acceptance {accept:.3f} outside ({acc_lo}, {acc_hi})"
    # Cached log densities and gradients must match the positions they belong to.
    np.testing.assert_allclose(state.logdensity, jax.vmap(LOGDENSITY)(state.position), rtol=1e-4, atol=1e-4)


def test_ula_matches_its_exact_biased_stationary_law():
    """ULA is biased; for a Gaussian target its stationary covariance is known exactly.

    x' = A x + b + sqrt(2 eta) xi with A = I - eta P, so the stationary covariance S solves
    S = A S A^T + 2 eta I. We start at the (exact) stationary law and check it is kept.
    """
    eta = 0.15
    prec = np.linalg.inv(np.asarray(COV))
    a = np.eye(DIM) - eta * prec
    s = np.asarray(COV)
    for _ in range(5000):  # fixed-point iteration, contraction since |eig(A)| < 1
        s = a @ s @ a.T + 2 * eta * np.eye(DIM)
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
    with pytest.raises(ValueError, match="n_particles"):
        moves.isir(jax.random.key(0), state, lambda x: -x @ x, PROPOSAL, 1)
