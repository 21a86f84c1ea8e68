"""Mode weights of the last iterate against the moving average of the EBM (``train(ema=...)``).

One training gives both: ``result.ebm`` is the average, ``result.ebm_last`` the last iterate
(the average never feeds back into training). Three sets, as in docs/guide-training.md ("Why the
weights were off"):

    python benchmarks/ema_weights.py figure1 --ema 0.995 --seed 0   # the demo's flowMC-EBM, ~70 CPU s
    python benchmarks/ema_weights.py 2d --ema 0.99 --seed 0         # train() defaults, 1500 steps, ~65 CPU s
    python benchmarks/ema_weights.py d16 --ema 0.99 --seed 0        # train() defaults, 3000 steps, ~290 CPU s

``figure1`` traces the weight (grid integration) of the model ``train`` would return after every
chunk, so ``--ema 0`` gives the last iterate's last-quarter range; ``2d`` traces it too. ``d16``
weighs both final models by self-normalised flow importance weights (16,384 draws).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flowjax.distributions import Normal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared targets

from _weights_setup import train_2d_defaults, unequal_2d_target, unequal_mixture_target  # noqa: E402

from numpyro_ebm import datasets, diagnostics, flows, nets, train  # noqa: E402
from numpyro_ebm import negatives as ng  # noqa: E402
from numpyro_ebm.energy import EnergyModel  # noqa: E402
from numpyro_ebm.reproduce import common  # noqa: E402
from numpyro_ebm.reproduce.presets import GRID, config  # noqa: E402
from numpyro_ebm.training import monitor  # noqa: E402


def _last_quarter_range(steps, weights) -> list[float]:
    steps, weights = np.asarray(steps), np.asarray(weights).reshape(len(steps), -1)
    return np.ptp(weights[steps >= 0.75 * steps[-1]], axis=0).round(4).tolist()


def figure1(ema: float, seed: int) -> dict:
    """The cpu preset's flowMC-EBM with ``Schedule.ema = ema``, as ``reproduce figure1`` runs it."""
    target = datasets.two_modes_target()
    key_data, key = jax.random.split(jax.random.key(seed))  # reproduce.run's key
    method = config("figure1", "cpu")[0].with_schedule(ema=ema)
    data = target.sample(key_data, method.schedule.num_data)
    weight = diagnostics.GridZoneWeights(target, resolution=GRID["cpu"], zone=1)
    trained = common.train_method(
        method, data, jax.random.fold_in(key, 0), target=target, progress=False, metrics={"weight": weight}
    )
    r = trained["result"]
    steps, trace = [0, *r.history["step"]], [0.5, *r.history["weight"]]
    final = [
        float(diagnostics.zone_weights(m, target, resolution=GRID["cpu"])[1]) for m in (r.ebm, r.ebm_last)
    ]
    return {
        "weight": final[0],
        "last_iterate": final[1],
        "last_quarter_range": _last_quarter_range(steps, trace),
    }


def two_d(ema: float, seed: int) -> dict:
    """``tests/_weights_setup.train_2d_defaults`` at the test's budget, grid weights per chunk."""
    target = unequal_2d_target()

    def weight(i, ebm, flow, bank):
        return float(diagnostics.zone_weights(ebm, target)[i])

    watch = {f"w{i}": functools.partial(weight, i) for i in range(3)}
    _, r = train_2d_defaults(seed, num_steps=1500, batch_size=128, bank_size=2048, ema=ema, metrics=watch)
    truth = np.asarray(target.weights)
    errors = [
        float(np.abs(np.asarray(diagnostics.zone_weights(m, target)) - truth).max())
        for m in (r.ebm, r.ebm_last)
    ]
    trace = np.stack([r.history[f"w{i}"] for i in range(3)], 1)
    return {"max_error": errors[0], "last_iterate_max_error": errors[1],
            "last_quarter_range": _last_quarter_range(r.history["step"], trace)}  # fmt: skip


def d16(ema: float, seed: int, dim: int = 16, steps: int = 3000) -> dict:
    """The unequal 4-mode mixture with ``train``'s defaults (batch 128, bank 4096), as
    ``benchmarks/training_weights.py`` builds it."""
    target = unequal_mixture_target(dim)
    data = target.sample(jax.random.key(100 + seed), 50_000)
    key_flow, key_net, key_train, _ = jax.random.split(jax.random.key(seed), 4)
    sigma = float(jnp.sqrt(target.max_variance))
    base = Normal(jnp.zeros(dim), jnp.full(dim, sigma))
    flow = flows.default_flow(key_flow, dim, identity_init=True, base=base, interval=3 * sigma)
    ebm = EnergyModel(nets.ToyNet(dim, key=key_net), flow.base_dist)
    r = train(
        ebm, data, key=key_train, negatives=ng.FlowMC(flow), num_steps=steps, batch_size=128,
        bank_size=4096, chunk_size=steps // 20, zones=target, progress=False, ema=ema,
    )  # fmt: skip
    zone_fn, num_zones = monitor.resolve_zones(target)
    out, truth = {}, np.asarray(target.weights)
    for name, model in (("average", r.ebm), ("last_iterate", r.ebm_last)):
        ess, w, bank = monitor.flow_check(model, r.flow, jax.random.key(7), 16384, zone_fn, num_zones, r.bank)
        w = np.asarray(w)
        out[name] = {"weights": w.round(4).tolist(), "ess_fraction": round(float(ess), 3),
                     "max_error": round(float(np.abs(w - truth).max()), 4)}  # fmt: skip
    out["bank"] = np.asarray(bank).round(4).tolist()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=("figure1", "2d", "d16"))
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.process_time()
    row = {"figure1": figure1, "2d": two_d, "d16": d16}[args.set](args.ema, args.seed)
    print(json.dumps({"set": args.set, "ema": args.ema, "seed": args.seed, **row,
                      "cpu_seconds": round(time.process_time() - t0)}))  # fmt: skip


if __name__ == "__main__":
    main()
