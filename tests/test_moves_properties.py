"""Property-based tests (hypothesis) of the moves: random Gaussian targets of random dimension and
scale stay invariant; shapes and dtypes are preserved; float64 works.

Each example starts 2048 chains from exact draws of a random diagonal Gaussian N(m, diag(s^2)) and
applies a few steps. Invariance keeps the final states iid exact draws, so each coordinate of the
standardised sample mean is N(0, 1/2048) and of the sample variance about N(0, 2/2048) in units of
s^2. We check max |z| < 5.5 for both over at most 8 coordinates and ~15 examples per move, a
family-wise false-alarm rate near 1e-4, so the test is stable for any seed hypothesis picks.

Can it fail? On a Gaussian started at its law, ULA keeps the mean exact, so only the variance shows
a missing Metropolis correction: at eta = 0.5 s_min^2 ULA's stationary variance of the narrowest
coordinate is s^2 / (1 - eta / (2 s^2)) = 4/3 s^2, 10.7 SE away. ``test_mutants_are_caught`` breaks
each move on purpose and checks that the invariance check goes red.
"""

import jax
import jax.numpy as jnp
import mutants
import numpy as np
import pytest
from flowjax.distributions import Normal
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyro_ebm import moves

N = 2048
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)

targets = st.fixed_dictionaries(
    {
        "dim": st.integers(1, 8),
        "log_scale": st.floats(-2.0, 2.0),
        "shift": st.floats(-3.0, 3.0),
        "seed": st.integers(0, 2**16),
    }
)
move_names = st.sampled_from(["mala", "imh", "isir"])


def _setup(dim, log_scale, shift, seed, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    scale = np.exp(log_scale + 0.5 * rng.normal(size=dim)).astype(dtype)
    mean = (shift + rng.normal(size=dim)).astype(dtype)
    logdensity = lambda x: -0.5 * jnp.sum(((x - mean) / scale) ** 2)
    x0 = mean + scale * jax.random.normal(jax.random.key(seed), (N, dim), dtype)
    # A proposal that is off: wider and shifted, so the accept/reweight step matters.
    proposal = Normal(jnp.asarray(mean + 0.5 * scale), jnp.asarray(1.5 * scale))
    return mean, scale, logdensity, x0, proposal


def _move(name, logdensity, proposal, scale):
    eta = 0.5 * float(np.min(scale)) ** 2  # step in units of the narrowest scale (see the module doc)
    return {
        "mala": lambda k, s: moves.mala(k, s, logdensity, eta),
        "imh": lambda k, s: moves.imh(k, s, logdensity, proposal),
        "isir": lambda k, s: moves.isir(k, s, logdensity, proposal, 6),
    }[name]


def _run(move, state, key, steps=5):
    def body(s, k):
        s, info = move(k, s)
        return s, info

    return jax.lax.scan(body, state, jax.random.split(key, steps))


def _check_invariant(target, name):
    mean, scale, logdensity, x0, proposal = _setup(**target)
    state = moves.init_chains(x0, logdensity)
    state, info = _run(_move(name, logdensity, proposal, scale), state, jax.random.key(target["seed"] + 1))
    x = np.asarray(state.position)
    z_mean = (x.mean(0) - mean) / (scale / np.sqrt(N))
    z_var = (x.var(0) / scale**2 - 1.0) / np.sqrt(2.0 / N)
    assert np.max(np.abs(z_mean)) < 5.5, (name, target, z_mean)
    assert np.max(np.abs(z_var)) < 5.5, (name, target, z_var)
    assert float(info.is_accepted.mean()) > 0.05  # it moved


@SETTINGS
@given(target=targets, name=move_names)
def test_random_gaussians_stay_invariant(target, name):
    _check_invariant(target, name)


@pytest.mark.parametrize(
    "name, mutate",
    [
        ("mala", mutants.always_accept),  # MALA without its Metropolis correction is ULA
        ("mala", mutants.forward_density_as_reverse),
        ("imh", mutants.always_accept),
        ("isir", mutants.uniform_resampling),
    ],
    ids=[
        "mala_without_metropolis",
        "mala_forward_density_as_reverse",
        "imh_without_metropolis",
        "isir_uniform",
    ],
)
def test_mutants_are_caught(name, mutate, monkeypatch):
    """The broken variant fails the invariance check on a fixed, ordinary example."""
    mutate(monkeypatch)
    with pytest.raises(AssertionError):
        _check_invariant({"dim": 3, "log_scale": 0.0, "shift": 1.0, "seed": 0}, name)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(target=targets, name=move_names)
def test_shapes_and_dtypes_are_preserved(target, name):
    mean, scale, logdensity, x0, proposal = _setup(**target)
    state = moves.init_chains(x0[:16], logdensity)
    new, info = _move(name, logdensity, proposal, scale)(jax.random.key(0), state)
    for old_leaf, new_leaf in zip(state, new, strict=True):
        assert old_leaf.shape == new_leaf.shape and old_leaf.dtype == new_leaf.dtype
    assert info.accept_prob.shape == (16,) and info.is_accepted.shape == (16,)


def test_float64_mode():
    with jax.enable_x64(True):
        mean, scale, logdensity, x0, proposal = _setup(3, 0.0, 1.0, 0, dtype=np.float64)
        proposal = Normal(jnp.asarray(mean, jnp.float64), jnp.asarray(1.5 * scale, jnp.float64))
        state = moves.init_chains(jnp.asarray(x0, jnp.float64), logdensity)
        for name in ["mala", "imh", "isir"]:
            new, info = _run(_move(name, logdensity, proposal, scale), state, jax.random.key(1))
            assert new.position.dtype == jnp.float64 and new.logdensity.dtype == jnp.float64
            z = (np.asarray(new.position).mean(0) - mean) / (scale / np.sqrt(N))
            assert np.max(np.abs(z)) < 5.5
