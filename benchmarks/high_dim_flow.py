"""The flow alone, on exact draws: how well can it propose for Table 2's four-mode target?

No sampler is involved: the flow is standardised to ``--ntrain`` exact draws of
``gaussian_mixture_target(dim)`` and fitted to them by forward KL (Adam, batch 256), then
measured on fresh draws. If a flow fails here it fails in any warmup (capacity or family);
if it works here, a failure in the kernel comes from the warmup's data.

Prints, every ``--steps`` optimiser steps: training loss, held-out NLL (the target's entropy is
the floor), IMH acceptance at stationarity ``E[min(1, w(x') / w(x))]`` (``x ~ pi``, ``x' ~ q``,
``w = pi / q``), and at the end the flow's self-normalised importance weights of the four modes.

    python benchmarks/high_dim_flow.py --dim 64                 # flows.flow_capacity(64)
    python benchmarks/high_dim_flow.py --dim 64 --flow affine   # the pre-whitening default
    python benchmarks/high_dim_flow.py --dim 16 --flow whiten --layers 0
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_ebm import flows
from numpyro_ebm.datasets import gaussian_mixture_target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--flow", choices=["rule", "affine", "whiten"], default="rule")
    parser.add_argument("--layers", type=int, default=4, help="coupling layers (affine / whiten)")
    parser.add_argument("--knots", type=int, default=8, help="spline knots (affine / whiten)")
    parser.add_argument("--ntrain", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=250, help="optimiser steps per report")
    parser.add_argument("--reports", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    target = gaussian_mixture_target(args.dim)
    means = jnp.asarray(target.distribution.means)

    def draws(key, n):
        k1, k2 = jax.random.split(key)
        return means[jax.random.randint(k1, (n,), 0, 4)] + jax.random.normal(k2, (n, args.dim))

    key = jax.random.key(args.seed)
    train, test = draws(jax.random.fold_in(key, 1), args.ntrain), draws(jax.random.fold_in(key, 2), 8192)
    settings = {
        "rule": flows.flow_capacity(args.dim),
        "affine": {"flow_layers": args.layers, "knots": args.knots},
        "whiten": {"whiten": True, "flow_layers": args.layers, "knots": args.knots},
    }[args.flow]
    flow = flows.default_flow(jax.random.fold_in(key, 3), args.dim, identity_init=True, **settings)
    params, static = flows.partition(flows.standardize(flow, train))
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(params)
    log_p = jax.vmap(target.log_prob)
    fit = jax.jit(
        lambda k, p, s: flows.fit_flow(
            k, p, static, s, train, optimizer, num_steps=args.steps, batch_size=256
        )
    )

    @jax.jit
    def measure(params, k):
        q = flows.combine(params, static)
        proposals = q.sample(k, (8192,))
        log_w_test, log_w_q = log_p(test) - q.log_prob(test), log_p(proposals) - q.log_prob(proposals)
        accept = jnp.mean(jnp.minimum(1.0, jnp.exp(log_w_q - log_w_test)))
        return -jnp.mean(q.log_prob(test)), accept, proposals, log_w_q

    print(
        f"dim {args.dim}, flow {args.flow} {settings}, {args.ntrain} draws, entropy "
        f"{float(-jnp.mean(log_p(test))):.2f}"
    )
    for r in range(args.reports):
        params, opt_state, losses = fit(jax.random.fold_in(key, 10 + r), params, opt_state)
        nll, accept, proposals, log_w = measure(params, jax.random.fold_in(key, 100 + r))
        print(
            f"step {(r + 1) * args.steps:5d}  train {float(losses[-50:].mean()):.2f}  "
            f"test NLL {float(nll):.2f}  IMH acceptance {float(accept):.3f}",
            flush=True,
        )
    w = np.asarray(jax.nn.softmax(log_w))
    zones = np.asarray(target.zones(proposals))
    print(
        "importance weights of the modes",
        np.round([w[zones == k].sum() for k in range(4)], 3),
        f" ESS/n {1 / float((w**2).sum()) / len(w):.3f}",
    )


if __name__ == "__main__":
    main()
