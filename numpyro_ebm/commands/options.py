"""What the command line needs before it does any work: no JAX import here.

``numpyro-ebm --help`` (and every usage error) runs with this module, :mod:`numpyro_ebm.cli`
and :mod:`numpyro_ebm.recipes` only; the subcommands import JAX when they run.
"""

from __future__ import annotations

import dataclasses

from numpyro_ebm.settings import FlowMCSettings

__all__ = ["PROG", "UsageError", "OPTIONS", "PER_SAMPLER", "PRETRAIN_FLOW"]

PROG = "numpyro-ebm"


class UsageError(Exception):
    """A user error: printed as one line (what is wrong and how to fix it), exit status 2."""


# `numpyro-ebm train`'s options that shape a run: on --resume they default to the saved values,
# and may not change. None: the sampler's own default (the sampler settings' defaults live in
# FlowMCSettings and the negatives classes, nowhere else).
OPTIONS = {
    "data": None,
    "dim": None,
    "num_data": 16384,
    "sampler": None,
    "batch_size": 64,
    "bank_size": 1024,
    "lr": 1e-3,
    "flow_lr": 1e-3,
    "seed": 0,
    "chunk_size": 100,
    "checkpoint_every": 1000,
    **{field.name: None for field in dataclasses.fields(FlowMCSettings)},
    "num_mcmc_steps": None,
    "num_cycles": None,
    "pretrain_flow": None,
    "net_widths": [32, 64, 64, 64],
    "flow_layers": 4,
    "flow_width": 32,
}

# Adam steps of flow pre-training on the data, by sampler (others: 0): CoopFlow starts from a
# flow fitted to the data (Xie et al. 2022).
PRETRAIN_FLOW = {"coopflow": 1000}

# What `train --help` says of the options whose default depends on the sampler.
PER_SAMPLER = {
    "num_mcmc_steps": "the sampler class's own, see numpyro_ebm.negatives",
    "num_cycles": "negatives.FlowMC's own",
    "pretrain_flow": ", ".join(f"{k} {v}" for k, v in PRETRAIN_FLOW.items()) + ", others 0",
}
