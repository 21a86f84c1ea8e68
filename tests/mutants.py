"""Broken variants of the moves, for tests that prove the invariance checks can fail.

Each mutant takes pytest's ``monkeypatch`` and breaks one thing in :mod:`numpyro_ebm.moves` for the
duration of a test. The patched names are private helpers of ``moves``; ``monkeypatch.setattr``
raises if one is renamed, so a refactor cannot silently turn a mutation check into a no-op.
"""

import jax
import jax.numpy as jnp

from numpyro_ebm import moves


def always_accept(monkeypatch):
    """Drop the Metropolis correction: every finite proposal is taken (MALA becomes ULA)."""
    original = moves._metropolis

    def metropolis(key, log_ratio, finite, proposal, state):
        return original(key, jnp.where(finite, 0.0, -jnp.inf), finite, proposal, state)

    monkeypatch.setattr(moves, "_metropolis", metropolis)


def forward_density_as_reverse(monkeypatch):
    """MALA's reverse density q(x | x') replaced by the forward q(x' | x): the two terms cancel."""
    monkeypatch.setattr(moves, "_log_langevin_kernel", lambda to, *_: jnp.zeros(to.shape[:1]))


def drift_sign_flipped(monkeypatch):
    """MALA's proposal density evaluated with the gradient drift of the wrong sign."""
    original = moves._log_langevin_kernel
    monkeypatch.setattr(
        moves, "_log_langevin_kernel", lambda to, frm, grad, eta: original(to, frm, -grad, eta)
    )


def uniform_resampling(monkeypatch):
    """i-SIR resamples its particles uniformly: the importance weights are dropped."""
    categorical = jax.random.categorical

    def uniform(key, logits, axis=-1):
        return categorical(key, jnp.zeros_like(logits), axis=axis)

    monkeypatch.setattr(jax.random, "categorical", uniform)


class WithoutDensity:
    """Wraps a flow so its log-density reads 0: IMH / i-SIR lose their 1/q correction."""

    def __init__(self, flow):
        self.flow = flow

    def sample_and_log_prob(self, key, shape):
        x, log_q = self.flow.sample_and_log_prob(key, shape)
        return x, jnp.zeros_like(log_q)

    def log_prob(self, x):
        return jnp.zeros(x.shape[:-1], x.dtype)
