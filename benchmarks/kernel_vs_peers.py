"""FlowMCKernel against flowMC 0.6 and NumPyro NUTS on two multimodal Gaussian mixtures.

Every method runs 64 chains from the same starting points (uniform on ``[-2, 2]^d``, drawn from the
seed) and spends about the same number of target evaluations per chain (see ``ACCOUNTING`` below and
``docs/benchmarks.md``). For each (target, seed, method) the script records:

* wall time of the call, and the part of it JAX spent tracing, lowering and compiling (summed from
  ``jax.monitoring`` time spans, nested spans counted once); "run" time is wall minus compile;
* the mode-weight error: max over zones of ``|estimated zone weight - true zone weight|``;
* the bulk ESS (ArviZ), minimum over coordinates, and ESS per second of run time;
* the acceptance rate of the global (flow) move.

Peers run interleaved (seed by seed) in one process, so load from other processes on a shared
machine hits all of them alike. Results go to stdout as a markdown table and, for full runs, into
the results section of ``docs/benchmarks.md``.

flowMC is a benchmark-only dependency; install it in a separate environment::

    python3 -m venv .venv-bench && . .venv-bench/bin/activate
    pip install -e . "flowMC>=0.6,<0.7" arviz
    python benchmarks/kernel_vs_peers.py            # full run, ~9 CPU-minutes (mostly compilation)
    python benchmarks/kernel_vs_peers.py --quick    # smoke test, about 1 min

Without flowMC (or with ``--skip-flowmc``) that peer is skipped with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from jax import monitoring
from jax.scipy.special import logsumexp
from numpyro.infer import MCMC, NUTS
from tqdm.auto import tqdm

from numpyro_ebm import FlowMCKernel

N_CHAINS = 64
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- kernel_vs_peers:start -->", "<!-- kernel_vs_peers:end -->"

ACCOUNTING = """\
Evaluations per chain (a "grad" evaluation returns log pi and its gradient, a "value" one log pi only):
flowMC 0.6 MALA calls value_and_grad twice per step (current point and proposal) and evaluates the
start point of each local and global block once more; its flow proposals are value-only:
  flowMC   = loops * (2 * local_steps grad + (global_steps + 2) value)
FlowMCKernel caches the gradient, so a MALA step costs one grad; IMH evaluates each flow proposal
with its gradient; i-SIR evaluates num_particles - 1 proposals value-only, then one grad at the pick:
  i-SIR    = 1 grad + iterations * ((num_local_steps + 1) grad + (num_particles - 1) value)
  IMH      = 1 grad + iterations * (num_local_steps + 1) grad
  NUTS     = sum of leapfrog steps (measured, NumPyro's "num_steps"), all grad
Flow training is matched too: flowMC trains train_loops * epochs * (n_max_examples // batch_size)
Adam steps, FlowMCKernel num_warmup * flow_steps_per_iteration, both on batches of 256."""


# -- compile-time accounting ----------------------------------------------------------------------
_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)
_SPANS: list[tuple[float, float]] = []


def _record_span(event: str, start: float, end: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _SPANS.append((start, end))


monitoring.register_event_time_span_listener(_record_span)


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length of a union of intervals (tracing an outer jit traces inner ones too)."""
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(spans):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


class Timer:
    """Wall time of a block and the part of it spent tracing/lowering/compiling."""

    def __enter__(self):
        self._n = len(_SPANS)
        self._t0 = time.time()
        return self

    def __exit__(self, *exc):
        self.wall = time.time() - self._t0
        self.compile = min(_union_length(_SPANS[self._n :]), self.wall)
        self.run = self.wall - self.compile


# -- targets --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    """An isotropic Gaussian mixture with known zone weights.

    ``zones="halfplane"``: zone 1 is ``sum(x) > 0`` (two modes); ``"nearest"``: nearest mean.
    """

    name: str
    means: np.ndarray  # (modes, dim)
    weights: np.ndarray  # (modes,)
    scale: float
    zones: str
    nuts_steps_guess: float  # leapfrog steps per NUTS iteration, to size NUTS to the budget

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_density(self, x):
        """``log pi(x)`` of one point ``(dim,)`` (normalised)."""
        means = jnp.asarray(self.means, jnp.float32)
        log_w = jnp.log(jnp.asarray(self.weights, jnp.float32))
        sq = jnp.sum((x - means) ** 2, axis=-1) / self.scale**2
        norm = 0.5 * self.dim * math.log(2 * math.pi * self.scale**2)
        return logsumexp(log_w - 0.5 * sq) - norm

    def zone_of(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).reshape(-1, self.dim)
        if self.zones == "halfplane":
            return (x.sum(-1) > 0).astype(int)
        return np.argmin(((x[:, None, :] - self.means[None]) ** 2).sum(-1), axis=1)

    def true_zone_weights(self) -> np.ndarray:
        if self.zones == "halfplane":
            # P(sum x > 0 | mode k) = Phi(sum(mu_k) / (scale sqrt(d)))
            z = self.means.sum(-1) / (self.scale * math.sqrt(self.dim))
            upper = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in z])
            w1 = float(self.weights @ upper)
            return np.array([1 - w1, w1])
        # Equal weights and a mode set mapped onto itself by sign flips that permute the modes
        # transitively: every nearest-mean zone has exactly weight 1/modes.
        return np.full(len(self.weights), 1.0 / len(self.weights))

    def mode_weight_error(self, samples: np.ndarray) -> float:
        truth = self.true_zone_weights()
        counts = np.bincount(self.zone_of(samples), minlength=len(truth))
        return float(np.max(np.abs(counts / counts.sum() - truth)))


def two_gaussians() -> Target:
    """(a) 2-D, weights 1/3 : 2/3, means (-3,-3), (3,3), sd 0.7; zones: x1 + x2 <> 0."""
    return Target(
        name="2-D two Gaussians (1/3 : 2/3)",
        means=np.array([[-3.0, -3.0], [3.0, 3.0]]),
        weights=np.array([1 / 3, 2 / 3]),
        scale=0.7,
        zones="halfplane",
        nuts_steps_guess=4.0,
    )


def four_gaussians_16d() -> Target:
    """(b) d = 16, four equal modes c(1..1), c(-1..-1 | 1..1) and their negatives, unit variance."""
    d = 16
    c = 0.5919 * math.sqrt(2 * math.log(d))
    half = np.r_[-np.ones(d // 2), np.ones(d // 2)]
    mu1, mu2 = c * np.ones(d), c * half
    return Target(
        name="16-D four Gaussians (equal)",
        means=np.stack([mu1, mu2, -mu2, -mu1]),
        weights=np.full(4, 0.25),
        scale=1.0,
        zones="nearest",
        nuts_steps_guess=7.0,
    )


TARGETS: dict[str, Callable[[], Target]] = {"2d": two_gaussians, "16d": four_gaussians_16d}


# -- budgets and settings ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Budget:
    """One budget, spent three ways. flowMC's loop structure defines it."""

    train_loops: int = 10
    prod_loops: int = 10
    local_steps: int = 20  # flowMC MALA steps per loop
    global_steps: int = 50  # flowMC flow proposals per loop
    epochs: int = 5
    n_max_examples: int = 2560
    batch_size: int = 256
    # FlowMCKernel, i-SIR
    isir_warmup: int = 100
    isir_samples: int = 100
    isir_local: int = 3
    isir_particles: int = 6
    isir_flow_steps: int = 5
    # FlowMCKernel, IMH
    imh_warmup: int = 500
    imh_samples: int = 420
    imh_local: int = 1
    imh_flow_steps: int = 1
    buffer_iterations: int = 64  # FlowMCKernel fits its flow to this many recent iterations
    step_size: float = 0.1  # MALA eta; flowMC's dt = sqrt(2 eta) is the same proposal

    def flowmc_evals(self) -> tuple[int, int]:
        loops = self.train_loops + self.prod_loops
        return loops * 2 * self.local_steps, loops * (self.global_steps + 2)

    def flowmc_flow_steps(self) -> int:
        return self.train_loops * self.epochs * max(self.n_max_examples // self.batch_size, 1)

    def total_evals(self) -> int:
        return sum(self.flowmc_evals())


FULL = Budget()
QUICK = Budget(
    train_loops=2,
    prod_loops=2,
    local_steps=5,
    global_steps=10,
    epochs=2,
    n_max_examples=512,
    isir_warmup=10,
    isir_samples=10,
    isir_local=2,
    isir_particles=4,
    isir_flow_steps=2,
    imh_warmup=20,
    imh_samples=20,
    imh_local=2,
    imh_flow_steps=1,
    buffer_iterations=8,
)


@dataclasses.dataclass
class Result:
    samples: np.ndarray  # (chains, draws, dim)
    global_accept_prob: float  # nan if no global move
    grad_evals: float  # per chain
    value_evals: float  # per chain


# -- methods ----------------------------------------------------------------------------------------
class FlowMCKernelRunner:
    def __init__(self, target: Target, budget: Budget, global_move: str):
        b = budget
        if global_move == "isir":
            self.num_warmup, self.num_samples = b.isir_warmup, b.isir_samples
            local, particles, flow_steps = b.isir_local, b.isir_particles, b.isir_flow_steps
        else:
            self.num_warmup, self.num_samples = b.imh_warmup, b.imh_samples
            local, particles, flow_steps = b.imh_local, 2, b.imh_flow_steps
        self.global_move, self.local, self.particles = global_move, local, particles
        self.settings = (
            f"{self.num_warmup}+{self.num_samples} it, {local} MALA/it"
            + (f", {particles} particles" if global_move == "isir" else "")
            + f", {flow_steps} flow steps/warmup it, buffer {b.buffer_iterations} it"
        )
        self.make_kernel = lambda: FlowMCKernel(
            potential_fn=lambda x: -target.log_density(x),
            step_size=b.step_size,
            num_local_steps=local,
            global_move=global_move,
            num_particles=particles,
            flow_steps_per_iteration=flow_steps,
            flow_batch_size=b.batch_size,
            buffer_iterations=b.buffer_iterations,
        )

    def __call__(self, key, x0) -> Result:
        mcmc = MCMC(
            self.make_kernel(),
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=N_CHAINS,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(key, init_params=x0, extra_fields=("global_accept_prob",))
        samples = np.asarray(mcmc.get_samples(group_by_chain=True))
        accept = float(np.mean(mcmc.get_extra_fields()["global_accept_prob"]))
        iters = self.num_warmup + self.num_samples
        value = iters * (self.particles - 1) if self.global_move == "isir" else 0
        return Result(samples, accept, 1 + iters * (self.local + 1), value)


class NUTSRunner:
    def __init__(self, target: Target, budget: Budget):
        iters = max(int(round(budget.total_evals() / target.nuts_steps_guess)), 20)
        self.num_warmup = self.num_samples = iters // 2
        self.settings = f"{self.num_warmup}+{self.num_samples} it, NumPyro defaults"
        self.potential_fn = lambda x: -target.log_density(x)
        self._warmup_grads = None

    def _mcmc(self) -> MCMC:
        return MCMC(
            NUTS(potential_fn=self.potential_fn),  # a fresh kernel: NUTS keeps state from init
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=N_CHAINS,
            chain_method="vectorized",
            progress_bar=False,
        )

    def __call__(self, key, x0) -> Result:
        mcmc = self._mcmc()
        mcmc.run(key, init_params=x0, extra_fields=("num_steps",))
        steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
        samples = np.asarray(mcmc.get_samples(group_by_chain=True))
        return Result(samples, float("nan"), float(np.mean(steps.sum(1))), 0.0)

    def untimed_accounting(self, key, x0, result: Result) -> None:
        """Add the warmup's leapfrog steps, which ``run`` does not report.

        ``warmup`` with the same key and start replays ``run``'s warmup phase exactly; this extra
        pass is untimed and, to keep the benchmark short, done for the first seed only (later
        seeds reuse its count).
        """
        if self._warmup_grads is None:
            mcmc = self._mcmc()
            mcmc.warmup(key, init_params=x0, extra_fields=("num_steps",), collect_warmup=True)
            steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
            self._warmup_grads = float(np.mean(steps.sum(1)))
        result.grad_evals += self._warmup_grads


class FlowMCRunner:
    """flowMC 0.6's RQSpline_MALA_Bundle with the same flow size as FlowMCKernel's default."""

    def __init__(self, target: Target, budget: Budget):
        from flowMC.resource_strategy_bundle.RQSpline_MALA import RQSpline_MALA_Bundle
        from flowMC.Sampler import Sampler

        self._bundle_cls, self._sampler_cls = RQSpline_MALA_Bundle, Sampler
        self.target, self.b = target, budget
        b = budget
        self.settings = (
            f"{b.train_loops}+{b.prod_loops} loops x ({b.local_steps} MALA + {b.global_steps} flow), "
            f"{b.epochs} epochs x {b.n_max_examples // b.batch_size} batches/loop"
        )

    def __call__(self, key, x0) -> Result:
        b, t = self.b, self.target
        key_flow, key_run = jax.random.split(key)
        bundle = self._bundle_cls(
            key_flow,
            N_CHAINS,
            t.dim,
            lambda x, data: t.log_density(x),
            n_local_steps=b.local_steps,
            n_global_steps=b.global_steps,
            n_training_loops=b.train_loops,
            n_production_loops=b.prod_loops,
            n_epochs=b.epochs,
            mala_step_size=math.sqrt(2 * b.step_size),
            rq_spline_hidden_units=(32,),
            rq_spline_n_bins=8,
            rq_spline_n_layers=4,
            batch_size=b.batch_size,
            n_max_examples=b.n_max_examples,
            learning_rate=1e-3,
        )
        # checkpoint_interval=0: no files, and no change to JAX's global compilation-cache setting.
        sampler = self._sampler_cls(
            n_dim=t.dim,
            n_chains=N_CHAINS,
            rng_key=key_run,
            resource_strategy_bundles=bundle,
            checkpoint_interval=0,
        )
        sampler.sample(x0, {})
        samples = np.asarray(sampler.resources["positions_production"].data)
        accs = np.asarray(sampler.resources["global_accs_production"].data)
        accept = float(np.mean(accs[np.isfinite(accs)]))  # unwritten (local-step) slots are -inf
        grads, values = b.flowmc_evals()
        return Result(samples, accept, grads, values)


# -- running ----------------------------------------------------------------------------------------
METHODS = ("flowMC 0.6", "FlowMCKernel i-SIR", "FlowMCKernel IMH", "NUTS")


def build_runners(target: Target, budget: Budget, skip_flowmc: bool) -> dict[str, Callable]:
    runners = {}
    if not skip_flowmc:
        runners["flowMC 0.6"] = FlowMCRunner(target, budget)
    runners["FlowMCKernel i-SIR"] = FlowMCKernelRunner(target, budget, "isir")
    runners["FlowMCKernel IMH"] = FlowMCKernelRunner(target, budget, "imh")
    runners["NUTS"] = NUTSRunner(target, budget)
    return runners


def min_bulk_ess(samples: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(az.convert_to_dataset(samples), method="bulk")
    return float(np.min(ess["x"].values))


def run_all(targets: list[Target], budget: Budget, seeds: int, skip_flowmc: bool) -> list[dict]:
    plan = {t.name: build_runners(t, budget, skip_flowmc) for t in targets}
    rows: list[dict] = []
    total = sum(len(r) for r in plan.values()) * seeds
    with tqdm(total=total, desc="configs", unit="run", file=sys.stderr) as bar:
        for target in targets:
            runners = plan[target.name]
            for seed in range(seeds):
                x0 = jax.random.uniform(jax.random.key(seed), (N_CHAINS, target.dim), minval=-2.0, maxval=2.0)
                for method, runner in runners.items():  # interleaved: peers share the same load
                    bar.set_postfix_str(f"{target.name[:4]} seed {seed} {method}")
                    key = jax.random.key(1000 + seed)
                    with Timer() as timer:
                        res = runner(key, x0)
                    if hasattr(runner, "untimed_accounting"):
                        runner.untimed_accounting(key, x0, res)
                    rows.append(
                        dict(
                            target=target.name,
                            method=method,
                            settings=runner.settings,
                            seed=seed,
                            wall=timer.wall,
                            compile=timer.compile,
                            run=timer.run,
                            error=target.mode_weight_error(res.samples),
                            ess=min_bulk_ess(res.samples),
                            accept=res.global_accept_prob,
                            grad_evals=res.grad_evals,
                            value_evals=res.value_evals,
                        )
                    )
                    bar.update()
    return rows


# -- reporting --------------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        by_method = {}
        for r in rows:
            if r["target"] == target:
                by_method.setdefault(r["method"], []).append(r)
        ref = by_method.get("flowMC 0.6")
        for method, rs in by_method.items():
            med = lambda k, rs=rs: statistics.median(r[k] for r in rs)
            first = min(rs, key=lambda r: r["seed"])
            s = dict(
                target=target,
                method=method,
                settings=rs[0]["settings"],
                n=len(rs),
                grad_evals=med("grad_evals"),
                value_evals=med("value_evals"),
                first_wall=first["wall"],
                wall=med("wall"),
                compile=med("compile"),
                run=med("run"),
                error=med("error"),
                error_max=max(r["error"] for r in rs),
                ess=med("ess"),
                ess_per_s=statistics.median(r["ess"] / max(r["run"], 1e-9) for r in rs),
                accept=med("accept"),
            )
            if ref:
                s["wall_ratio"] = s["wall"] / statistics.median(r["wall"] for r in ref)
                s["run_ratio"] = s["run"] / statistics.median(r["run"] for r in ref)
            out.append(s)
    return out


def markdown_table(summary: list[dict]) -> str:
    head = (
        "| target | method | evals/chain (grad + value) | wall s (1st call) | wall s (median) "
        "| compile s | run s | wall / flowMC | run / flowMC | mode-weight err, median (max) "
        "| min bulk ESS | ESS / run s | global acc |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in summary:
        ratio = lambda k, s=s: f"{s[k]:.2f}" if k in s else "n/a"
        acc = "n/a" if math.isnan(s["accept"]) else f"{s['accept']:.2f}"
        lines.append(
            f"| {s['target']} | {s['method']} | {s['grad_evals']:.0f} + {s['value_evals']:.0f} "
            f"| {s['first_wall']:.1f} | {s['wall']:.1f} | {s['compile']:.1f} | {s['run']:.2f} "
            f"| {ratio('wall_ratio')} | {ratio('run_ratio')} "
            f"| {s['error']:.3f} ({s['error_max']:.3f}) | {s['ess']:.0f} | {s['ess_per_s']:.0f} | {acc} |"
        )
    return "\n".join(lines)


def settings_table(summary: list[dict]) -> str:
    lines = ["| target | method | settings |", "|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['target']} | {s['method']} | {s['settings']} |")
    return "\n".join(lines)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(
        f"{p} {_version(p)}" for p in ("jax", "jaxlib", "numpyro", "flowjax", "flowMC", "arviz")
    )
    return (
        f"{platform.machine()} CPU, {cores} cores ({jax.default_backend()} backend), "
        f"Python {platform.python_version()}; {versions}"
    )


def write_docs(path: Path, command: str, seeds: int, table: str, settings: str) -> None:
    section = "\n".join(
        [
            START,
            f"Command: `{command}`  ",
            f"Date: {datetime.date.today().isoformat()}, {seeds} seeds  ",
            f"Machine: {machine_line()}",
            "",
            table,
            "",
            settings,
            END,
        ]
    )
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: section, text, count=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per config (default 5; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget, 2-D target only: a smoke test")
    parser.add_argument("--skip-flowmc", action="store_true", help="do not run the flowMC peer")
    parser.add_argument("--targets", default=None, help="comma-separated subset of: " + ",".join(TARGETS))
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refresh the results section of docs/benchmarks.md (default: on; off with --quick)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also save every run's raw numbers here")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    if seeds < 1:
        parser.error(f"--seeds must be >= 1; got {seeds}.")
    names = args.targets.split(",") if args.targets else (["2d"] if args.quick else list(TARGETS))
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}.")
    skip_flowmc = args.skip_flowmc
    if not skip_flowmc:
        try:
            import flowMC  # noqa: F401
        except ImportError:
            print(
                "flowMC is not installed: skipping that peer. Install it with "
                "`pip install 'flowMC>=0.6,<0.7'` (in a separate venv) to compare.",
                file=sys.stderr,
            )
            skip_flowmc = True
    budget = QUICK if args.quick else FULL
    rows = run_all([TARGETS[n]() for n in names], budget, seeds, skip_flowmc)
    if args.json is not None:
        args.json.write_text(
            json.dumps(dict(machine=machine_line(), budget=dataclasses.asdict(budget), rows=rows), indent=1)
        )
    summary = summarise(rows)
    table, settings = markdown_table(summary), settings_table(summary)
    print(f"\n{machine_line()}\n\n{table}\n\n{settings}\n\n{ACCOUNTING}")
    write = args.write if args.write is not None else not args.quick
    if write:
        command = "python benchmarks/kernel_vs_peers.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        write_docs(DOCS, command.strip(), seeds, table, settings)
        print(f"\nwrote the results section of {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
