"""Reproduce the experiments of Grenioux, Moulines and Gabrié (2023) at three budgets.

``run(name, preset=..., out_dir=...)`` trains the paper's models on one experiment, evaluates the
paper's metric and writes ``metrics.json`` (and a small figure) into ``out_dir``:

* ``figure1``: the 2:1 two-mode example (Sec. 4.1, Fig. 1), flowMC-EBM beside ULA-EBM; the EBM
  weight of the ``(1.5, 1.5)`` mode by grid integration, its history, and how much it moves over
  the last quarter of training.
* ``table3``: the line of four Gaussians (App. C.3, Table 3), the three zone-weight MSEs.
* ``table1``: eight Gaussians and rings (Sec. 4.3, Table 1), the median squared log-density error.
* ``table2``: the 4-mode Gaussian mixture in d = 16, 32, 64 (Sec. 4.4, Table 2), the maximum R-hat
  of 128 negative chains run with the trained EBM from the persistent state, and the mode weights.

Presets (:data:`PRESETS`):

* ``"paper"``: the paper's settings (paper-notes section 4); where the paper is silent the choice
  is marked "reconstructed" in the configuration below. Hours to days on a CPU; meant for a GPU.
* ``"cpu"``: a budget for a 2-core CPU that aims at the paper's statistical outcome with far less
  work (fewer particles, local steps, iterations, a smaller bank; rates decayed to the end).
* ``"quick"``: a smoke run of seconds, for the tests; its numbers mean nothing.

Every result carries the wall time and the work done: sampler evaluations of the energy (with and
without input gradient) and of the flow, counted from the sampler's settings (:func:`sampler_work`).

Example:
    >>> from numpyro_ebm import reproduce
    >>> sorted(reproduce.EXPERIMENTS), reproduce.PRESETS
    (['figure1', 'table1', 'table2', 'table3'], ('quick', 'cpu', 'paper'))
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_ebm import datasets, diagnostics, plotting
from numpyro_ebm import negatives as ng
from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flowmc import flowmc_step
from numpyro_ebm.flows import default_flow, fit_flow, partition
from numpyro_ebm.moves import init_chains
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.training import train

__all__ = ["run", "EXPERIMENTS", "PRESETS", "Method", "Schedule", "FlowArch", "sampler_work", "config"]

PRESETS = ("quick", "cpu", "paper")


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Schedule:
    """Training length and rates.

    Attributes:
        num_steps: training steps.
        batch_size: data points (and negatives) per step.
        bank_size: persistent chains.
        num_data: size of the training set drawn from the target.
        lr: learning rate of the EBM and of the flow (Adam, as in the authors' code).
        lr_final: ``None``: constant rate (the paper); else cosine decay from ``lr`` to this.
        chunk_size: steps per compiled chunk (history resolution); divides ``num_steps``.
        energy_l2: weight of the L2 energy penalty (the paper uses one on CIFAR-10 only).
    """

    num_steps: int
    batch_size: int
    bank_size: int
    num_data: int
    lr: float
    lr_final: float | None = None
    chunk_size: int = 100
    energy_l2: float = 0.0

    def optimizer(self) -> optax.GradientTransformation:
        """Adam at ``lr`` (cosine-decayed to ``lr_final``); one object per schedule, so that
        ``train`` calls with equal settings share their compilation."""
        return _adam(self)


@functools.cache
def _adam(schedule: Schedule) -> optax.GradientTransformation:
    if schedule.lr_final is None:
        return optax.adam(schedule.lr)
    alpha = schedule.lr_final / schedule.lr
    return optax.adam(optax.cosine_decay_schedule(schedule.lr, schedule.num_steps, alpha=alpha))


@dataclass(frozen=True)
class FlowArch:
    """The flow (``flows.default_flow``, a spline coupling flow; the paper uses RealNVP).

    Attributes:
        layers: coupling layers.
        width: hidden width of each conditioner MLP.
        depth: hidden layers of each conditioner MLP.
        interval: the splines act on ``[-interval, interval]`` in units of the base's scale.
        pretrain_steps: forward-KL steps on the data before training (NT-EBM and CoopFlow only).
        pretrain_lr: their rate.
    """

    layers: int = 4
    width: int = 16
    depth: int = 1
    interval: float = 3.0
    pretrain_steps: int = 0
    pretrain_lr: float = 1e-2


@dataclass(frozen=True)
class Method:
    """One model of a table: the negative sampler and how it is trained.

    Attributes:
        name: the paper's name ("flowMC-EBM", "ULA-EBM", "NT-EBM", "CoopFlow").
        sampler: ``"flowmc"``, ``"ula"``, ``"ntebm"`` or ``"coopflow"``.
        options: keyword arguments of the ``numpyro_ebm.negatives`` class.
        schedule: training length and rates.
        flow: the flow architecture (ignored by ULA-EBM).
    """

    name: str
    sampler: str
    options: dict[str, Any]
    schedule: Schedule
    flow: FlowArch = field(default_factory=FlowArch)

    def with_schedule(self, **changes) -> Method:
        return replace(self, schedule=replace(self.schedule, **changes))


def _flowmc(schedule, flow=FlowArch(), **options) -> Method:
    return Method("flowMC-EBM", "flowmc", options, schedule, flow)


def _ula(schedule, **options) -> Method:
    return Method("ULA-EBM", "ula", options, schedule)


def _ntebm(schedule, flow, **options) -> Method:
    return Method("NT-EBM", "ntebm", options, schedule, flow)


def _coopflow(schedule, flow, **options) -> Method:
    return Method("CoopFlow", "coopflow", options, schedule, flow)


# --- figure1: the 2:1 example (Sec. 4.1, App. C.2) ------------------------------------------
# Paper: 75 epochs of 16384 points, batch 64 -> 19,200 steps; bank 1024; lr 1e-2 for both models;
# i-SIR with 32 particles; 10 steps = [1 i-SIR + 4 MALA] x 2, MALA step 0.01; ULA-EBM: 10 ULA
# steps of 0.01. RealNVP with 4 layers of 16 hidden units -> here 4 spline couplings of width 16.
# Reconstructed: rho = N(0, s^2 I) with s^2 the largest coordinate variance of the data (the
# paper's rule for the mixtures, App. C.5; it gives no rho in 2-D); ULA-EBM's bank starts uniform
# on [-4, 4]^2 (the 2-D tasks' "uniform" start) and uses the same Adam rate; negatives are the
# chains' final states.
_F1_FLOWMC = dict(n_particles=32, n_cycles=2, n_local_steps=4, step_size=0.01)
_F1_ULA = dict(step_size=0.01, n_steps=10, start="uniform", start_scale=4.0)
_F1_PAPER = Schedule(19200, 64, 1024, 16384, 1e-2, chunk_size=400)
# cpu: the same sampler, 4,000 steps (4.8x fewer) with both rates cosine-decayed from 1e-2 to 1e-5,
# which averages out the mini-batch noise that keeps a constant-rate EBM's weight moving (+-0.05
# at 1e-2). Three seeds gave 0.668, 0.661, 0.667; a decay to 1e-4 over 3,000 steps gave 0.676.
_F1_CPU = Schedule(4000, 64, 1024, 16384, 1e-2, lr_final=1e-5, chunk_size=100)
_F1_QUICK = Schedule(40, 32, 128, 1024, 1e-2, chunk_size=20)
FIGURE1 = {
    "paper": [_flowmc(_F1_PAPER, **_F1_FLOWMC), _ula(_F1_PAPER, **_F1_ULA)],
    "cpu": [_flowmc(_F1_CPU, **_F1_FLOWMC), _ula(_F1_CPU, **_F1_ULA)],
    "quick": [_flowmc(_F1_QUICK, **dict(_F1_FLOWMC, n_particles=8)), _ula(_F1_QUICK, **_F1_ULA)],
}

# --- table3: the line of four (App. C.3, Tables 3-4) ----------------------------------------
# Paper: 60000 points, batch 256, bank 8192, 100 epochs (23,438 steps); lr 1e-3 (flowMC-EBM,
# CoopFlow) and 1e-2 (ULA-EBM, NT-EBM); i-SIR with 64 particles; flowMC 128 steps of
# [1 i-SIR + 24 MALA] (here 5 whole cycles = 125 kernel applications); baselines: ULA 512 steps of
# 0.125^2/2 from a uniform start, NT-EBM 128 latent MALA steps at 75 % acceptance, CoopFlow 256
# noise-free Langevin steps of 5e-4; baseline flows pre-trained 1024 steps at 1e-2.
# Reconstructed: zones split at x1 = -2, 0, 2; negatives are 4 states per chain taken evenly from
# the trajectory (Table 5's "subsampling by 4"), so 64 chains per step; MALA step 0.01; baseline
# flows pre-trained by maximum likelihood on the data (App. C.1 says CoopFlow's flow is pre-trained
# "on samples from p*"); ULA-EBM and CoopFlow train the untilted EBM exp(-E).
_T3_PAPER = Schedule(23438, 256, 8192, 60000, 1e-3, chunk_size=500)
_T3_PAPER_BASELINE = replace(_T3_PAPER, lr=1e-2)
_PRETRAINED = FlowArch(pretrain_steps=1024, pretrain_lr=1e-2)
# cpu: one cycle of [1 i-SIR with 32 particles + 15 MALA] per step (16 instead of 125 kernel
# applications, 31 instead of 5 x 63 particles), a bank of 4096, 4,000 steps with the rate
# cosine-decayed from 3e-3 to 3e-5; MALA step 0.02. Baselines: 2,000 steps, 64 ULA / 32 NT-EBM /
# 64 CoopFlow steps (1/8, 1/4, 1/4 of the paper's).
_T3_CPU = Schedule(4000, 256, 4096, 60000, 3e-3, lr_final=3e-5, chunk_size=200)
_T3_CPU_BASELINE = Schedule(2000, 256, 4096, 60000, 1e-2, lr_final=1e-4, chunk_size=200)
_T3_QUICK = Schedule(20, 32, 128, 1024, 1e-3, chunk_size=10)
TABLE3 = {
    "paper": [
        _flowmc(_T3_PAPER, n_particles=64, n_cycles=5, n_local_steps=24, keep=4, step_size=0.01),
        _ula(_T3_PAPER_BASELINE, step_size=0.125**2 / 2, n_steps=512, start="uniform", start_scale=4.5),
        _ntebm(_T3_PAPER_BASELINE, _PRETRAINED, n_steps=128, target_accept=0.75),
        _coopflow(_T3_PAPER, _PRETRAINED, step_size=5e-4, n_steps=256),
    ],
    "cpu": [
        _flowmc(_T3_CPU, n_particles=32, n_cycles=1, n_local_steps=15, keep=4, step_size=0.02),
        _ula(_T3_CPU_BASELINE, step_size=0.125**2 / 2, n_steps=64, start="uniform", start_scale=4.5),
        # NT-EBM at the paper's 1e-2 diverged here (energies of -1e8 within 400 steps): 1e-3.
        _ntebm(
            replace(_T3_CPU_BASELINE, lr=1e-3, lr_final=1e-5), _PRETRAINED, n_steps=32, target_accept=0.75
        ),
        _coopflow(replace(_T3_CPU_BASELINE, lr=1e-3, lr_final=1e-5), _PRETRAINED, step_size=5e-4, n_steps=64),
    ],
    "quick": [
        _flowmc(_T3_QUICK, n_particles=8, n_cycles=1, n_local_steps=3, keep=2, step_size=0.02),
    ],
}

# --- table1: eight Gaussians and rings (Sec. 4.3, Tables 1 and 5) ---------------------------
# Paper: as table3, with flowMC = [1 i-SIR with 64 particles + 127 MALA], subsampling by 4.
# Reconstructed: rho as in figure1; MALA step 0.01; the median runs over the grid points of the
# true density's 99 % highest-density region (diagnostics.median_squared_log_density_error).
_T1_PAPER = _T3_PAPER
# cpu: table3's flowMC-EBM budget (1 i-SIR x 32 + 15 MALA, 4,000 decayed steps, bank 4096).
_T1_CPU = Schedule(4000, 256, 4096, 60000, 3e-3, lr_final=3e-5, chunk_size=200)
TABLE1 = {
    "paper": [_flowmc(_T1_PAPER, n_particles=64, n_cycles=1, n_local_steps=127, keep=4, step_size=0.01)],
    "cpu": [_flowmc(_T1_CPU, n_particles=32, n_cycles=1, n_local_steps=15, keep=4, step_size=0.02)],
    "quick": [_flowmc(_T3_QUICK, n_particles=8, n_cycles=1, n_local_steps=3, keep=2, step_size=0.02)],
}
TABLE1_DATASETS = ("eight_gaussians", "rings")

# --- table2: the high-dimensional mixture (Sec. 4.4, Tables 2, 6, 7) ------------------------
# Paper: 50000 points, batch 128, bank 8192, 150 epochs (58,594 steps), lr 1e-3; rho =
# N(0, s^2 I) with s^2 the largest coordinate variance of the target; RealNVP with 2 blocks
# (4 couplings) of hidden width 32 / 39 / 51; flowMC 16 stacked steps of [1 i-SIR with 128
# particles + 8 MALA], negatives not only the last state.
# Reconstructed: the means scale as 0.5919 sqrt(2 log d) (the authors' companion code; see
# datasets.gaussian_mixture_target); negatives are the state at the end of each of the 16 stacked
# steps of 8 chains (keep=16); the MALA step adapts toward 60 % acceptance from 0.1; R-hat on 128
# chains from the bank, run with the trained EBM and flow for `rhat_draws` stacked steps.
_T2_WIDTH = {16: 32, 32: 39, 64: 51}
_T2_PAPER = Schedule(58594, 128, 8192, 50000, 1e-3, chunk_size=500)
# cpu: 2 stacked steps of [1 i-SIR x 64 + 8 MALA], 4 states from each of 32 chains, bank 2048,
# 2,000 steps decayed from 3e-3 to 3e-5; R-hat on 128 chains of 200 stacked steps.
_T2_CPU = Schedule(2000, 128, 2048, 50000, 3e-3, lr_final=3e-5, chunk_size=200)
_T2_QUICK = Schedule(20, 32, 128, 1024, 1e-3, chunk_size=10)
_T2_MALA = dict(step_size=0.1, target_accept=0.6)
TABLE2 = {
    "paper": [_flowmc(_T2_PAPER, n_particles=128, n_cycles=16, n_local_steps=8, keep=16, **_T2_MALA)],
    "cpu": [_flowmc(_T2_CPU, n_particles=64, n_cycles=2, n_local_steps=8, keep=4, **_T2_MALA)],
    "quick": [_flowmc(_T2_QUICK, n_particles=8, n_cycles=1, n_local_steps=2, keep=2, **_T2_MALA)],
}
TABLE2_DIMS = {"paper": (16, 32, 64), "cpu": (16, 32, 64), "quick": (4,)}
TABLE2_RHAT = {
    "paper": dict(chains=128, draws=1000),
    "cpu": dict(chains=128, draws=200),
    "quick": dict(chains=8, draws=8),
}

# Grid resolution of every 2-D integral (the paper does not give one).
GRID = {"paper": 200, "cpu": 200, "quick": 40}


def config(name: str, preset: str) -> list[Method]:
    """The methods (with their settings) that ``run(name, preset=preset)`` trains.

    Example:
        >>> [m.name for m in config("figure1", "cpu")]
        ['flowMC-EBM', 'ULA-EBM']
    """
    _check(name, preset)
    return list(_CONFIGS[name][preset])


_CONFIGS = {"figure1": FIGURE1, "table1": TABLE1, "table2": TABLE2, "table3": TABLE3}


# ------------------------------------------------------------------------------ work counting


def sampler_work(sampler: str, options: dict[str, Any], n_chains: int) -> dict[str, int]:
    """Evaluations one sampler call makes on ``n_chains`` chains.

    ``energy`` counts every evaluation of the energy (with or without input gradient),
    ``energy_grad`` those with a gradient, ``flow`` the flow samples and density evaluations.
    flowMC: per chain, ``init`` (1 gradient) + per cycle ``particles - 1`` proposals (energy and
    flow), 1 flow density of the current state, 1 gradient at the chosen particle, and one gradient
    per MALA step. Langevin samplers: 1 + ``n_steps`` gradients per chain (NT-EBM also pushes each
    through the flow).

    Example:
        >>> sampler_work("ula", {"n_steps": 10}, 64)
        {'energy': 704, 'energy_grad': 704, 'flow': 0}
    """
    if sampler == "flowmc":
        cycles = options.get("n_cycles", 2)
        local = options.get("n_local_steps", 4)
        if options.get("global_move", "isir") == "isir":
            proposals = options.get("n_particles", 32) - 1
        else:
            proposals = 1
        grads = 1 + cycles * (1 + local)
        energy = grads + cycles * proposals
        flow = cycles * (proposals + 1)
    else:
        grads = 1 + options.get("n_steps", 10)
        energy = grads
        flow = grads + 1 if sampler == "ntebm" else 0
    return {"energy": energy * n_chains, "energy_grad": grads * n_chains, "flow": flow * n_chains}


def _n_chains(options: dict[str, Any], batch_size: int) -> int:
    keep = options.get("keep", "last")
    return batch_size if keep == "last" else batch_size // keep


def _training_work(method: Method) -> dict[str, int]:
    s = method.schedule
    per_step = sampler_work(method.sampler, method.options, _n_chains(method.options, s.batch_size))
    work = {f"sampler_{k}_evals": v * s.num_steps for k, v in per_step.items()}
    work["train_steps"] = s.num_steps
    work["data_points_seen"] = s.num_steps * s.batch_size
    work["flow_pretrain_steps"] = method.flow.pretrain_steps if method.sampler in ("ntebm", "coopflow") else 0
    return work


# ------------------------------------------------------------------------------ training


def _base_scale(data: np.ndarray, target) -> float:
    """``s`` of rho = N(0, s^2 I): the largest coordinate variance (App. C.5)."""
    try:
        return float(np.sqrt(target.max_variance))
    except TypeError:
        return float(np.sqrt(np.max(np.var(data, axis=0))))


def _make_flow(key, dim: int, arch: FlowArch, scale: float, *, identity_init: bool):
    from flowjax.distributions import Normal

    base = Normal(jnp.zeros(dim), jnp.full(dim, scale))
    return default_flow(
        key,
        dim,
        identity_init=identity_init,
        base=base,
        flow_layers=arch.layers,
        nn_width=arch.width,
        nn_depth=arch.depth,
        interval=arch.interval * scale,
    )


def _pretrain(key, flow, data, arch: FlowArch):
    """Maximum likelihood of the flow on the data (the baselines' pre-training)."""
    if arch.pretrain_steps == 0:
        return flow
    params, static = partition(flow)
    opt = optax.adam(arch.pretrain_lr)
    params, _, _ = jax.jit(
        lambda k, p, s: fit_flow(k, p, static, s, data, opt, num_steps=arch.pretrain_steps, batch_size=256)
    )(key, params, opt.init(params))
    return eqx.combine(params, static)


def _train_method(method: Method, data, target, key, *, progress: bool, metrics=None) -> dict[str, Any]:
    """Build the EBM, flow and sampler of ``method``, train, and time it."""
    key_net, key_flow, key_pre, key_train = jax.random.split(key, 4)
    dim = data.shape[1]
    scale = _base_scale(np.asarray(data), target)
    net = ToyNet(dim, key=key_net)
    s = method.schedule
    t0 = time.perf_counter()
    if method.sampler == "flowmc":
        flow = _make_flow(key_flow, dim, method.flow, scale, identity_init=True)
        ebm = EnergyModel(net, flow.base_dist)
        sampler = ng.FlowMC(flow, **method.options)
    elif method.sampler == "ula":
        ebm = EnergyModel(net, None)
        sampler = ng.ULA(**method.options)
    elif method.sampler == "ntebm":
        flow = _pretrain(
            key_pre, _make_flow(key_flow, dim, method.flow, scale, identity_init=False), data, method.flow
        )
        ebm = EnergyModel(net, flow, trainable_base=True)
        sampler = ng.NTEBM(**method.options)
    elif method.sampler == "coopflow":
        flow = _pretrain(
            key_pre, _make_flow(key_flow, dim, method.flow, scale, identity_init=False), data, method.flow
        )
        ebm = EnergyModel(net, None)
        sampler = ng.CoopFlow(flow, **method.options)
    else:
        raise ValueError(f"unknown sampler {method.sampler!r}")
    result = train(
        ebm,
        data,
        key=key_train,
        negatives=sampler,
        optimizer=s.optimizer(),
        flow_optimizer=s.optimizer(),
        num_steps=s.num_steps,
        batch_size=s.batch_size,
        bank_size=s.bank_size,
        chunk_size=s.chunk_size,
        energy_l2=s.energy_l2,
        metrics=metrics,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    return {"result": result, "sampler": sampler, "train_seconds": seconds, "work": _training_work(method)}


def _final_negatives(trained: dict[str, Any], key, n: int):
    """Starting points and negatives of one sampler call on ``n`` chains with the trained models.

    Persistent samplers start from the bank (its first ``n`` rows), the others afresh.
    """
    result, sampler = trained["result"], trained["sampler"]
    bank = result.bank[:n]
    key_start, key_move = jax.random.split(key)
    flow = None if sampler.flow_training is None else result.flow
    if sampler.flow_training == "tilt":
        flow = None  # the sampler takes its flow from the EBM's tilt
    if sampler.persistent:
        start = bank
    else:
        start = sampler.initial_positions(key_start, result.ebm, flow, n)
    out = jax.jit(lambda k, x: sampler(k, result.ebm, flow, x, result.step_size))(key_move, start)
    return start, out.negatives


# ------------------------------------------------------------------------------ experiments


def _figure1(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    target = datasets.two_modes_target()
    key_data, key = jax.random.split(key)
    data = target.sample(key_data, config("figure1", preset)[0].schedule.num_data)
    res = GRID[preset]
    out: dict[str, Any] = {"truth": 2 / 3, "methods": {}}
    histories = {}
    # The weight of the (1.5, 1.5) mode (zone 1) after every chunk: one grid, one compilation.
    weight = diagnostics.GridZoneWeights(target, resolution=res, zone=1)
    for i, method in enumerate(config("figure1", preset)):
        trained = _train_method(
            method, data, target, jax.random.fold_in(key, i), progress=progress, metrics={"weight": weight}
        )
        h = trained["result"].history
        steps, weights = np.asarray(h["step"]), np.asarray(h["weight"])
        last = steps > 0.75 * steps[-1]
        final = float(diagnostics.zone_weights(trained["result"].ebm, target, resolution=res)[1])
        out["methods"][method.name] = {
            "weight": final,
            "weight_error": final - 2 / 3,
            "bank_weight": float(diagnostics.zone_frequencies(trained["result"].bank, target)[1]),
            "last_quarter_range": float(np.ptp(weights[last])),
            "last_quarter_std": float(np.std(weights[last])),
            "history_range": float(np.ptp(weights)),
            "history": {"step": steps.tolist(), "weight": weights.tolist()},
            "global_accept": _last(h, "global_accept"),
            "local_accept": _last(h, "local_accept"),
            "train_seconds": trained["train_seconds"],
            "work": trained["work"],
            "settings": _settings(method),
        }
        histories[method.name] = (steps, weights, trained["result"].ebm)
    _plot(out_dir, lambda fig: _figure1_plot(fig, histories, target, res))
    return out


def _table3(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    target = datasets.line_of_four_target()
    key_data, key = jax.random.split(key)
    methods = config("table3", preset)
    data = target.sample(key_data, methods[0].schedule.num_data)
    res = GRID[preset]
    out: dict[str, Any] = {"truth": np.asarray(target.weights).tolist(), "methods": {}}
    weights = {}
    for i, method in enumerate(methods):
        trained = _train_method(method, data, target, jax.random.fold_in(key, i), progress=progress)
        t0 = time.perf_counter()
        start, negatives = _final_negatives(
            trained, jax.random.fold_in(key, 100 + i), method.schedule.bank_size
        )
        ebm = trained["result"].ebm
        mses = diagnostics.zone_weight_mses(start, negatives, ebm, target, resolution=res)
        ebm_w = np.asarray(diagnostics.zone_weights(ebm, target, resolution=res))
        neg_w = np.asarray(diagnostics.zone_frequencies(negatives, target))
        weights[method.name] = (ebm_w, neg_w)
        out["methods"][method.name] = {
            **mses,
            "ebm_weights": ebm_w.tolist(),
            "init_weights": np.asarray(diagnostics.zone_frequencies(start, target)).tolist(),
            "negative_weights": neg_w.tolist(),
            "global_accept": _last(trained["result"].history, "global_accept"),
            "local_accept": _last(trained["result"].history, "local_accept"),
            "train_seconds": trained["train_seconds"],
            "eval_seconds": time.perf_counter() - t0,
            "work": trained["work"],
            "settings": _settings(method),
        }
    _plot(out_dir, lambda fig: _table3_plot(fig, weights, np.asarray(target.weights)))
    return out


def _table1(preset: str, key, progress: bool, out_dir: Path) -> dict[str, Any]:
    res = GRID[preset]
    out: dict[str, Any] = {"datasets": {}}
    models = {}
    for j, name in enumerate(TABLE1_DATASETS):
        target = datasets.TARGETS[name]()
        key_data, key_run = jax.random.split(jax.random.fold_in(key, j))
        methods = config("table1", preset)
        data = target.sample(key_data, methods[0].schedule.num_data)
        rows = {}
        for i, method in enumerate(methods):
            trained = _train_method(method, data, target, jax.random.fold_in(key_run, i), progress=progress)
            ebm = trained["result"].ebm
            err = diagnostics.median_squared_log_density_error(ebm, target, resolution=res)
            rows[method.name] = {
                "median_sq_log_density_error": err,
                **_log_density_error_variants(ebm, target, jax.random.fold_in(key_run, 1000 + i), res),
                "ebm_zone_weights": np.asarray(
                    diagnostics.zone_weights(ebm, target, resolution=res)
                ).tolist(),
                "global_accept": _last(trained["result"].history, "global_accept"),
                "local_accept": _last(trained["result"].history, "local_accept"),
                "train_seconds": trained["train_seconds"],
                "work": trained["work"],
                "settings": _settings(method),
            }
            models[(name, method.name)] = (target, ebm)
        out["datasets"][name] = {"methods": rows}
    _plot(out_dir, lambda fig: _table1_plot(fig, models, res))
    return out


def _log_density_error_variants(ebm, target, key, res: int, n: int = 10000) -> dict[str, float]:
    """Table 1's error over other point sets, since the paper does not say which it used.

    ``..._whole_box``: the median over every grid point of the box (``mass=1``);
    ``..._at_data``: the median over ``n`` fresh draws of the target, with the EBM normalised on
    the grid (the mass outside the box is ignored, as for the main number).
    """
    whole = diagnostics.median_squared_log_density_error(ebm, target, resolution=res, mass=1.0)
    grid = diagnostics.grid_log_density(ebm, target.bounds, res)
    raw = np.asarray(ebm.log_density(grid.points), np.float64)
    log_z = float(np.median(raw - np.asarray(grid.log_density, np.float64)))  # the grid constant
    x = target.sample(key, n)
    diff = np.asarray(ebm.log_density(x), np.float64) - log_z - np.asarray(target.log_prob(x), np.float64)
    return {
        "median_sq_log_density_error_whole_box": whole,
        "median_sq_log_density_error_at_data": float(np.median(diff**2)),
    }


def _rhat_chains(trained, key, chains: int, draws: int):
    """``draws`` stacked flowMC steps of ``chains`` chains from the bank, with the trained EBM and flow."""
    result, sampler = trained["result"], trained["sampler"]
    ebm, flow = result.ebm, result.flow
    log_density = lambda x: ebm.log_density(x)
    start = result.bank[:chains]

    @jax.jit
    def run(key, start):
        state = init_chains(start, log_density)

        def step(state, k):
            state, info = flowmc_step(
                k,
                state,
                log_density,
                flow,
                step_size=result.step_size,
                n_local_steps=sampler.n_local_steps,
                global_move=sampler.global_move,
                n_particles=sampler.n_particles,
            )
            return state, (state.position, jnp.mean(info.global_accept_prob))

        _, (positions, accept) = jax.lax.scan(step, state, jax.random.split(key, draws))
        return jnp.swapaxes(positions, 0, 1), jnp.mean(accept)

    return run(key, start)


def _table2(preset: str, key, progress: bool, out_dir: Path, dims=None) -> dict[str, Any]:
    dims = TABLE2_DIMS[preset] if dims is None else tuple(dims)
    rhat_cfg = TABLE2_RHAT[preset]
    out: dict[str, Any] = {"dims": {}, "rhat_chains": rhat_cfg["chains"], "rhat_draws": rhat_cfg["draws"]}
    traces = {}
    for d in dims:
        target = datasets.gaussian_mixture_target(d)
        key_data, key_run, key_rhat, key_is = jax.random.split(jax.random.fold_in(key, d), 4)
        rows = {}
        for i, method in enumerate(config("table2", preset)):
            method = replace(method, flow=replace(method.flow, width=_T2_WIDTH.get(d, method.flow.width)))
            data = target.sample(key_data, method.schedule.num_data)
            trained = _train_method(method, data, target, jax.random.fold_in(key_run, i), progress=progress)
            t0 = time.perf_counter()
            chains, accept = _rhat_chains(trained, key_rhat, rhat_cfg["chains"], rhat_cfg["draws"])
            chains = np.asarray(chains)
            flat = chains.reshape(-1, d)
            result = trained["result"]
            rows[method.name] = {
                "max_rhat": diagnostics.max_rhat(chains),
                "min_ess": diagnostics.min_ess(chains),
                "rhat_global_accept": float(accept),
                "mode_weights_chains": np.asarray(diagnostics.zone_frequencies(flat, target)).tolist(),
                "mode_weights_bank": np.asarray(diagnostics.zone_frequencies(result.bank, target)).tolist(),
                **_is_mode_weights(result.ebm, result.flow, target, key_is),
                "step_size": float(result.step_size),
                "global_accept": _last(result.history, "global_accept"),
                "local_accept": _last(result.history, "local_accept"),
                "train_seconds": trained["train_seconds"],
                "eval_seconds": time.perf_counter() - t0,
                "work": trained["work"],
                "eval_work": sampler_work(
                    "flowmc", {**method.options, "n_cycles": rhat_cfg["draws"]}, rhat_cfg["chains"]
                ),
                "settings": _settings(method),
            }
            traces[(d, method.name)] = np.asarray(target.zones(jnp.asarray(chains[:4])))
        out["dims"][str(d)] = {"methods": rows}
    _plot(out_dir, lambda fig: _table2_plot(fig, traces))
    return out


def _is_mode_weights(ebm, flow, target, key, n: int = 20000) -> dict[str, Any]:
    """The EBM's mode weights by self-normalised importance sampling with the flow as proposal."""
    x, log_q = flow.sample_and_log_prob(key, (n,))
    log_w = ebm.log_density(x) - log_q
    log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    w = jnp.exp(log_w - jax.nn.logsumexp(log_w))
    zones = target.zones(x)
    weights = jax.ops.segment_sum(w, zones, num_segments=target.n_zones)
    return {"mode_weights_is": np.asarray(weights).tolist(), "is_ess": float(1.0 / jnp.sum(w**2))}


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "figure1": _figure1,
    "table1": _table1,
    "table2": _table2,
    "table3": _table3,
}


# ------------------------------------------------------------------------------ entry point


def run(
    name: str,
    *,
    preset: str,
    out_dir: str | Path,
    key: int = 0,
    progress: bool = True,
    dims: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Run one experiment at one budget; write ``metrics.json`` (and ``figure.png``) to ``out_dir``.

    Args:
        name: one of :data:`EXPERIMENTS` (``"figure1"``, ``"table1"``, ``"table2"``, ``"table3"``).
        preset: one of :data:`PRESETS` (``"quick"``, ``"cpu"``, ``"paper"``).
        out_dir: directory for the outputs (created).
        key: integer seed.
        progress: show progress bars.
        dims: ``table2`` only: the dimensions to run (default: all of the preset's).

    Returns:
        The metrics (as written to ``metrics.json``): the experiment's numbers per method, the
        wall time, the work (sampler evaluations), the settings and the machine.

    Example:
        A minute on a CPU, so the doctests skip it (tests/test_reproduce.py runs it):

        >>> import tempfile
        >>> from numpyro_ebm import reproduce
        >>> m = reproduce.run("figure1", preset="quick", out_dir=tempfile.mkdtemp(),
        ...                   progress=False)  # doctest: +SKIP
        >>> sorted(m["methods"])  # doctest: +SKIP
        ['ULA-EBM', 'flowMC-EBM']
    """
    _check(name, preset)
    if dims is not None and name != "table2":
        raise ValueError(f"dims applies to table2 only; got dims={dims!r} for {name!r}.")
    if isinstance(key, bool) or not isinstance(key, int | np.integer):
        raise TypeError(f"key must be an integer seed; got {key!r}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    kwargs = {"dims": dims} if name == "table2" else {}
    metrics = EXPERIMENTS[name](preset, jax.random.key(int(key)), progress, out_dir, **kwargs)
    metrics = {
        "experiment": name,
        "preset": preset,
        "key": int(key),
        **metrics,
        "seconds": time.perf_counter() - t0,
        "machine": _machine(),
    }
    metrics["work"] = _total_work(metrics)
    write_json(out_dir / "metrics.json", jsonable(metrics))
    return metrics


def _check(name: str, preset: str) -> None:
    if name not in _CONFIGS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(_CONFIGS)}.")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}.")


# ------------------------------------------------------------------------------ helpers


def _last(history, name: str) -> float:
    values = np.asarray(history.get(name, [np.nan]), dtype=float)
    return float(values[-1]) if values.size else math.nan


def _settings(method: Method) -> dict[str, Any]:
    return {
        "sampler": method.sampler,
        **method.options,
        **asdict(method.schedule),
        "flow": asdict(method.flow) if method.sampler != "ula" else None,
    }


def _total_work(metrics: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "work" and isinstance(v, dict):
                    for name, value in v.items():
                        total[name] = total.get(name, 0) + int(value)
                else:
                    walk(v)

    walk({k: v for k, v in metrics.items() if k != "work"})
    return total


def _machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_version": jax.__version__,
    }


# ------------------------------------------------------------------------------ figures


def _plot(out_dir: Path, draw: Callable) -> None:
    """Draw a small figure with matplotlib (Agg) into ``out_dir/figure.png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 3.2))
    try:
        draw(fig)
        fig.tight_layout()
        fig.savefig(out_dir / "figure.png", dpi=110)
    finally:
        plt.close(fig)


def _density_panel(ax, ebm_or_target, bounds, res, title):
    plotting.plot_density(ebm_or_target, bounds, resolution=res, ax=ax)
    ax.set_title(title, fontsize=9)
    ax.set(xticks=[], yticks=[], xlabel="", ylabel="")


def _figure1_plot(fig, histories, target, res):
    n = len(histories)
    plotting.plot_weight_history(
        {name: (steps, weights) for name, (steps, weights, _) in histories.items()},
        true_weight=2 / 3,
        ax=fig.add_subplot(1, n + 1, n + 1),
        ylabel="weight of the (1.5, 1.5) mode",
    )
    for i, (name, (_, _, ebm)) in enumerate(histories.items()):
        _density_panel(fig.add_subplot(1, n + 1, i + 1), ebm, target.bounds, res, name)


def _table3_plot(fig, weights, truth):
    ax = fig.add_subplot(1, 1, 1)
    names = list(weights)
    width = 0.8 / (1 + 2 * len(names))
    x = np.arange(truth.size)
    ax.bar(x, truth, width, label="truth", color="k")
    for i, name in enumerate(names):
        ebm_w, neg_w = weights[name]
        ax.bar(x + (2 * i + 1) * width, ebm_w, width, label=f"{name}: EBM")
        ax.bar(x + (2 * i + 2) * width, neg_w, width, label=f"{name}: negatives", alpha=0.6)
    ax.set_xticks(x + 0.4 - width / 2, [f"mode {i + 1}" for i in x])
    ax.set_ylabel("zone weight")
    ax.legend(fontsize=7, ncol=2)


def _table1_plot(fig, models, res):
    names = sorted({name for name, _ in models})
    methods = sorted({m for _, m in models})
    cols = 1 + len(methods)
    for r, name in enumerate(names):
        target = next(t for (n, _), (t, _) in models.items() if n == name)
        _density_panel(
            fig.add_subplot(len(names), cols, r * cols + 1), target, target.bounds, res, f"{name}: truth"
        )
        for c, m in enumerate(methods):
            _, ebm = models[(name, m)]
            _density_panel(
                fig.add_subplot(len(names), cols, r * cols + c + 2), ebm, target.bounds, res, f"{name}: {m}"
            )
    fig.set_size_inches(3.0 * cols, 3.0 * len(names))


def _table2_plot(fig, traces):
    keys = list(traces)
    for i, (d, name) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for zones in traces[(d, name)]:
            ax.plot(zones, lw=0.8)
        ax.set_title(f"{name}, d = {d}: mode of 4 chains", fontsize=9)
        ax.set_xlabel("stacked flowMC step")
        ax.set_yticks(range(4))
