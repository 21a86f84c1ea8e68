"""``train``: contrastive maximum-likelihood training of an EBM with a persistent negative bank.

One training step is Grenioux et al. 2023, Algorithm 1, with the sampler swappable:

1. draw a data batch ``x+`` (uniformly, with replacement);
2. draw chain indices from the persistent bank (distinct, at random) and move those chains
   toward the current EBM ``-E(x) + log rho(x)`` with the negative sampler; write the final
   states back (paper-notes 2.4); the negatives ``x-`` are the final states or states taken
   evenly from the trajectories;
3. an optax step on ``mean E(x+) - mean E(x-)`` (negatives held constant; this is the sign the
   paper's eq. 2-3 should have), plus ``energy_l2 * sum(E(x+)^2 + E(x-)^2)`` if asked;
4. for samplers that train a flow on their negatives (flowMC, CoopFlow), an optax step of the
   flow on ``-mean log q(x-)``; both updates use the step-``k`` parameters.

The returned EBM is, if asked, the mean of the iterates over the last ``average_last`` of the
steps (Polyak-Ruppert averaging) or their moving average (``ema``), and both models follow
:func:`default_schedule` unless given optimisers: they remove the mini-batch noise of the mode
weights (docs/guide-training.md, "Why the weights were off").

Step ``k`` draws all its randomness from ``fold_in(key, k)``, so a run resumed from a checkpoint
repeats an uninterrupted one bit for bit. The hot loop is one jitted ``lax.scan`` over a chunk of
steps; Python only loops over chunks (progress bar, the monitor of :mod:`.monitor`, metrics,
divergence checks, checkpoints).

Modules: ``step`` (the compiled step, :func:`contrastive_loss`), ``checks`` (argument checks and
the settings a checkpoint remembers), ``monitor`` (flow ESS, zone weights, :func:`plot_history`),
``averaging`` (the averaged parameters), ``schedule`` (:func:`default_schedule`), ``api``
(:func:`train`).

Scaling out (``shard=``): the bank, each step's chains and negatives and its data batch are
split over a 1-D device mesh on the chain axis (:mod:`numpyro_ebm.sharding`); parameters,
optimiser states and the data set are replicated. The sampler, nearly all of a step's work, runs
where its chains live, and so does the loss's energy evaluation; the gradients and the mean
acceptances are summed over devices. A sharded run agrees with an unsharded one up to float
rounding, not bit for bit: XLA compiles each device's smaller batch with other kernels (a
neural energy on 2 points or on 8 rounds differently, even on one device) and adds the partial
sums in another order. Training feeds such differences back (Adam divides by small second
moments, MCMC moves spread them, an accept decision may flip), so a long sharded run is a
different but statistically equivalent run (tests/test_training_sharded.py has the numbers).
Checkpoints resume on any device count.
"""

from numpyro_ebm.training.step import _run_chunk, contrastive_loss  # noqa: F401, I001 - patched by tests; before api
from numpyro_ebm.training.api import (
    HISTORY_FIELDS,
    TrainingDivergedError,
    TrainResult,
    default_schedule,
    train,
)
from numpyro_ebm.training.monitor import WeightsDisagreeWarning, plot_history

__all__ = [
    "train",
    "TrainResult",
    "TrainingDivergedError",
    "WeightsDisagreeWarning",
    "contrastive_loss",
    "default_schedule",
    "plot_history",
    "HISTORY_FIELDS",
]
