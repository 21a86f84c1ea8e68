"""What the command line needs before it does any work: no JAX import here.

``numpyro-ebm --help`` (and every usage error) runs with this module, :mod:`numpyro_ebm.cli`
and :mod:`numpyro_ebm.recipes` only; the subcommands import JAX when they run.
"""

from __future__ import annotations

__all__ = ["PROG", "UsageError", "OPTIONS"]

PROG = "numpyro-ebm"


class UsageError(Exception):
    """A user error: printed as one line (what is wrong and how to fix it), exit status 2."""


# `numpyro-ebm train`'s options that shape a run: on --resume they default to the saved values,
# and may not change.
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
    "step_size": None,
    "n_steps": None,
    "n_local_steps": None,
    "n_cycles": None,
    "n_particles": None,
    "pretrain_flow": None,
    "net_widths": [32, 64, 64, 64],
    "flow_layers": 4,
    "flow_width": 32,
}
