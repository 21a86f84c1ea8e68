"""Start-up cost of one ``MCMC.run`` with FlowMCKernel's defaults, against NUTS, in fresh processes.

Two cases, each run in a fresh Python process (so every compile is paid, as a user's script pays
it), alternating FlowMCKernel and NUTS so that load from other processes hits both alike:

* ``mixture2d``: the 2-D two-Gaussian mixture (weights 1/3, 2/3), 50 warmup + 50 samples;
  FlowMCKernel with 64 vectorized chains and its defaults, NUTS with 4 vectorized chains. The
  last column is the weight of the mode at (3, 3) (the half-plane ``x1 + x2 > 0``; true 2/3).
* ``gauss10``: a correlated 10-D Gaussian (unimodal), 200 warmup + 200 samples, same chains;
  ESS (ArviZ bulk, minimum over coordinates) per second of the ``MCMC.run`` call.

Each child reports the wall time of ``mcmc.run`` (compilation included), the CPU seconds of the
process during it (user + system, ``resource.getrusage``: steadier than wall on a shared
machine), the seconds JAX spent compiling (``jax.monitoring`` backend-compile events) and the
number of programs it compiled. Ratios are of medians over ``--repeats`` pairs. Usage::

    python benchmarks/startup.py --repeats 3            # prints a markdown table
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
from jax import monitoring
from numpyro.infer import MCMC, NUTS
import numpyro_ebm as ne

compile_s = []
COMPILE = "/jax/core/compile/backend_compile_duration"
monitoring.register_event_duration_secs_listener(
    lambda event, d, **kw: compile_s.append(d) if event == COMPILE else None
)
case, method = sys.argv[1], sys.argv[2]
if case == "mixture2d":
    means = jnp.array([[-3.0, -3.0], [3.0, 3.0]])
    mix = dist.MixtureSameFamily(dist.Categorical(jnp.array([1 / 3, 2 / 3])),
                                 dist.MultivariateNormal(means, 0.49 * jnp.eye(2)))
    warm = samples = 50
else:
    a = jnp.tril(0.5 + 0.3 * jax.random.normal(jax.random.PRNGKey(0), (10, 10)))
    cov = a @ a.T + 0.5 * jnp.eye(10)
    mix = dist.MultivariateNormal(jnp.zeros(10), cov)
    warm = samples = 200
model = lambda: numpyro.sample("x", mix)
kernel, chains = (ne.FlowMCKernel(model), 64) if method == "flowmc" else (NUTS(model), 4)
mcmc = MCMC(kernel, num_warmup=warm, num_samples=samples, num_chains=chains, chain_method="vectorized",
            progress_bar=False)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t, c = time.perf_counter(), cpu()
mcmc.run(jax.random.key(1))
x = np.asarray(jax.block_until_ready(mcmc.get_samples(group_by_chain=True)["x"]))
wall, cpu_s = time.perf_counter() - t, cpu() - c
import arviz as az
ess = float(az.ess(az.convert_to_dataset({"x": x}), method="bulk")["x"].min())
flat = x.reshape(-1, x.shape[-1])
w_plus = float((flat.sum(-1) > 0).mean()) if case == "mixture2d" else float("nan")  # truth 2/3
print(json.dumps({"wall": wall, "cpu": cpu_s, "compile": sum(compile_s), "programs": len(compile_s),
                  "ess": ess, "w_plus": w_plus}))
"""


def run_child(case: str, method: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, case, method], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{case}/{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="mixture2d,gauss10")
    args = parser.parse_args(argv)
    print(
        "| case | method | wall s | CPU s | compile s | programs | ESS | ESS / wall s | "
        "wall / NUTS | CPU / NUTS | ESS/s / NUTS | weight x1+x2>0 (true 0.667) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        rows = {"flowmc": [], "nuts": []}
        for _ in range(args.repeats):
            for method in rows:
                rows[method].append(run_child(case, method))
        keys = ("wall", "cpu", "compile", "programs", "ess", "w_plus")
        med = {m: {k: statistics.median(r[k] for r in rs) for k in keys} for m, rs in rows.items()}
        nuts = med["nuts"]
        for method, m in med.items():
            print(
                f"| {case} | {method} | {m['wall']:.1f} | {m['cpu']:.1f} | {m['compile']:.1f} | "
                f"{m['programs']:.0f} | {m['ess']:.0f} | {m['ess'] / m['wall']:.1f} | "
                f"{m['wall'] / nuts['wall']:.2f} | {m['cpu'] / nuts['cpu']:.2f} | "
                f"{m['ess'] / m['wall'] / (nuts['ess'] / nuts['wall']):.2f} | {m['w_plus']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
