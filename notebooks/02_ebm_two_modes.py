# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training an EBM on two modes: flowMC-EBM against ULA-EBM
#
# An energy-based model $p_\theta(x) \propto \exp(-E_\theta(x))$ is trained by contrastive
# maximum likelihood: each step lowers the energy of data points and raises the energy of
# *negative samples* drawn from the model itself. If the sampler that draws the negatives cannot
# travel between modes, the model never learns how much mass each mode holds.
#
# This notebook reruns the motivating example of Grenioux, Moulines and Gabrié (2023), their
# Figure 1: data from a mixture with weights 1/3 and 2/3, and the same energy network trained
# twice on the same data for the same number of steps:
#
# * **flowMC-EBM**: negatives from flowMC chains (MALA steps and i-SIR moves proposed by a
#   normalizing flow), the flow being trained along with the EBM;
# * **ULA-EBM**: negatives from persistent unadjusted Langevin chains (the paper's Algorithm 3).
#
# We track the weight the EBM gives the heavy mode during training, look at the learned
# densities and the negatives, and finally sample the trained EBM with `FlowMCKernel`.
#
# Set `NUMPYRO_EBM_FAST=1` for a quick, smaller run (the tests do); the full run takes a few
# minutes on a laptop CPU.

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from numpyro.infer import MCMC

from numpyro_ebm import (
    EnergyModel,
    FlowMCKernel,
    TrainingDivergedError,
    datasets,
    diagnostics,
    flows,
    negatives,
    nets,
    plotting,
    train,
    training,
)

FAST = os.environ.get("NUMPYRO_EBM_FAST") == "1"
NUM_STEPS = 400 if FAST else 4000  # training steps, the same for both methods
CHUNK = 50 if FAST else 100  # steps per compiled chunk: one point of the weight history each
RESOLUTION = 60 if FAST else 100  # grid cells per axis for the weight integrals
PROGRESS = not FAST

# %% [markdown]
# ## The data
#
# $p^*(x) = \tfrac13\,\mathcal N(-1.5\cdot\mathbf 1, 0.05\, I) + \tfrac23\,\mathcal N(1.5\cdot\mathbf 1,
# 0.1\, I)$ in 2-D, and 16,384 training points, as in the paper. `datasets.two_modes_target()`
# bundles the exact density, a sampler, the two *zones* (the half-planes on either side of
# $x_1 + x_2 = 0$) and their exact weights; the weight of zone 1, the heavy mode at
# $(1.5, 1.5)$, is the number to watch.

# %%
target = datasets.two_modes_target()
key_data, key_net, key_flow, key_flowmc, key_ula, key_mcmc = jax.random.split(jax.random.key(0), 6)
data = target.sample(key_data, 16_384)
print("zone weights of the truth:", np.round(np.asarray(target.weights), 4))
print("zone frequencies of the data:", np.round(np.asarray(diagnostics.zone_frequencies(data, target)), 4))

# %% [markdown]
# ## The model: a tilted EBM that starts where the flow starts
#
# flowMC-EBM trains the **tilted** EBM
# $$p_\theta(x) = \frac{1}{Z_\theta} \exp(-E_\theta(x))\,\rho(x),$$
# where $\rho$ is the base distribution of the flow (here a standard normal). Two details make
# the EBM and its flow agree exactly at step 0:
#
# * `nets.ToyNet` (the paper's toy MLP, 10,593 parameters) has its last layer at zero, so
#   $E_{\theta_0} = 0$ and $p_{\theta_0} = \rho$;
# * `flows.default_flow(..., identity_init=True)` is a spline coupling flow whose couplings start
#   as the identity, so the flow's density is $\rho$ too.
#
# The flow is therefore a perfect proposal for the EBM at the start, and the two are then moved
# together by small steps, so that the flow keeps being a good proposal. The tilt does not
# change the gradient of the log-likelihood ($\rho$ does not depend on $\theta$).

# %%
flow = flows.default_flow(key_flow, 2, identity_init=True)
ebm_flowmc = EnergyModel(nets.ToyNet(2, key=key_net), flow.base_dist)
x = data[:1000]
print("E = 0 at initialisation:", bool(jnp.all(ebm_flowmc.energy(x) == 0)))
print("EBM log-density == flow log-density:", bool(jnp.allclose(ebm_flowmc.log_density(x), flow.log_prob(x))))

# %% [markdown]
# ULA-EBM, as in the paper's Algorithm 3, trains the plain, **untilted** EBM
# $\exp(-E_\theta(x))$: `EnergyModel(net, None)`. Same network, same initial weights.

# %%
ebm_ula = EnergyModel(nets.ToyNet(2, key=key_net), None)

# %% [markdown]
# ## The negative samplers
#
# Both use the paper's settings for this example (App. C.2). Each training step picks 64 chains
# at random from a persistent bank of 1,024 (started from the flow, i.e. from $\rho$, for
# flowMC; uniformly on $[-4, 4]^2$ for ULA, where the paper says only "uniform"), moves them
# toward the current EBM, writes them back and uses their final states as the 64 negatives.
#
# * `negatives.FlowMC(flow)`: 10 kernel steps per training step, [1 i-SIR move with 32 particles,
#   4 MALA steps] twice (the paper's setting), with its default MALA step: adapted toward 0.574
#   acceptance from 0.1 (the paper fixes it at 0.01, which accepts nearly every MALA move and
#   so moves the chains less);
# * `negatives.ULA(step_size=0.01, num_mcmc_steps=10)`: 10 ULA steps of size 0.01.

# %%
sampler_flowmc = negatives.FlowMC(flow)
sampler_ula = negatives.ULA(step_size=0.01, num_mcmc_steps=10, start="uniform", start_scale=4.0)

# %% [markdown]
# ## The learning rates, and tracking the weight while training
#
# The flow is fitted to the negatives by one optax step per EBM step (forward KL,
# $-\frac1n\sum_i \log q(x^-_i)$). The two learning rates must be **co-adjusted**: if the EBM
# moves much faster than its flow, the flow stops being a good proposal and the global moves stop
# being accepted (`history["global_accept_prob"]` and `history["flow_ess"]` show it). `train`'s
# default gives both models the same Adam rate: a short warmup to $10^{-3}$ (the paper's rate for
# flowMC-EBM on its other 2-D tasks), then a cosine decay to $10^{-5}$ at the end of the run
# (`training.default_schedule`): the decay removes the mini-batch noise that keeps a
# constant-rate EBM's weight moving by several hundredths. ULA-EBM gets the same default. (The
# paper uses $10^{-2}$ in this example, constant, for 19,200 steps; at that rate our ULA-EBM
# blows up, see below.)
#
# The weight of the heavy mode is integrated on a grid after every chunk of steps by a
# `metrics` callable, `fn(ebm, flow, bank) -> float`; the history stores it beside the loss and
# acceptance rates. Two more metrics record the share of the bank's chains in the heavy mode and
# how far the chains have wandered.


# %%
def heavy_mode_weight(ebm, flow, bank):
    """Weight of the (1.5, 1.5) zone by grid integration on target.bounds = [-4, 4]^2."""
    return diagnostics.zone_weights(ebm, target, resolution=RESOLUTION)[1]


def bank_weight(ebm, flow, bank):
    return diagnostics.zone_frequencies(bank, target)[1]


def bank_max_abs(ebm, flow, bank):
    return jnp.max(jnp.abs(bank))


METRICS = {"weight": heavy_mode_weight, "bank_weight": bank_weight, "bank_max_abs": bank_max_abs}
SETTINGS = dict(
    num_steps=NUM_STEPS, batch_size=64, bank_size=1024, chunk_size=CHUNK, metrics=METRICS, progress=PROGRESS
)

# %% [markdown]
# ## Training
#
# `train` runs the hot loop as one compiled `lax.scan` per chunk; Python only loops over the
# chunks (progress bar, metrics, checks).

# %%
start = time.perf_counter()
result_flowmc = train(
    ebm_flowmc,
    data,
    key=key_flowmc,
    negatives=sampler_flowmc,
    zones=target,  # the monitor: each mode's weight in the bank and under the model
    **SETTINGS,
)
print(f"flowMC-EBM: {NUM_STEPS} steps in {time.perf_counter() - start:.0f} s")

start = time.perf_counter()
result_ula = train(
    ebm_ula,
    data,
    key=key_ula,
    negatives=sampler_ula,
    **SETTINGS,
)
print(f"ULA-EBM:    {NUM_STEPS} steps in {time.perf_counter() - start:.0f} s")

# %%
h_flowmc, h_ula = result_flowmc.history, result_ula.history
for name, h in [("flowMC-EBM", h_flowmc), ("ULA-EBM", h_ula)]:
    print(
        f"{name:11s} weight of the heavy mode at the end: {h['weight'][-1]:.3f} (truth 0.667), "
        f"over training: {h['weight'].min():.2f} to {h['weight'].max():.2f}; "
        f"share of the bank in it: {h['bank_weight'][-1]:.3f}; "
        f"largest |x| in the bank: {h['bank_max_abs'].max():.1f}"
    )
print(
    f"flowMC-EBM global (i-SIR) acceptance, first and last chunk: "
    f"{h_flowmc['global_accept_prob'][0]:.2f}, {h_flowmc['global_accept_prob'][-1]:.2f}"
)

# %% [markdown]
# ## The weight of the heavy mode during training (the paper's Figure 1, right)
#
# Both EBMs start at weight 1/2 ($\rho$, and the flat $\exp(0)$ on the box, are symmetric).
# flowMC-EBM settles near 2/3. ULA-EBM's weight wanders to an extreme, 0 or 1, and can jump from
# one to the other: the model erases a mode, and may bring it back later.
#
# Why: a ULA chain does not cross from one mode to the other, so the share of negatives in each
# mode stays what it was when the chains settled, whatever the model says. The loss
# $\bar E(x^+) - \bar E(x^-)$ then cannot see the relative weight of the modes: adding a constant
# to the energy of one mode changes it by that constant times the difference between the data's
# share and the negatives' share of that mode, which is about zero here (ULA's bank above holds
# about 2/3 of its chains in the heavy mode, the share they reached while settling early on). Nothing pins the
# weight, and it drifts. flowMC's chains do move between the modes, in the proportions of the
# current EBM, so any error in the EBM's weight shows up in the negatives and the gradient
# corrects it.

# %%
w0_flowmc = heavy_mode_weight(ebm_flowmc, None, None)
w0_ula = heavy_mode_weight(ebm_ula, None, None)
histories = {
    "flowMC-EBM": (np.r_[0, h_flowmc["step"]], np.r_[w0_flowmc, h_flowmc["weight"]]),
    "ULA-EBM": (np.r_[0, h_ula["step"]], np.r_[w0_ula, h_ula["weight"]]),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
plotting.plot_weight_history(histories, true_weight=2 / 3, ax=axes[0], ylabel="weight of the (1.5, 1.5) mode")
axes[1].plot(h_flowmc["step"], h_flowmc["global_accept_prob"], label="global (i-SIR) acceptance")
axes[1].plot(h_flowmc["step"], h_flowmc["local_accept_prob"], label="local (MALA) acceptance")
axes[1].set(xlabel="training step", ylabel="flowMC-EBM acceptance", ylim=(0, 1.02))
axes[1].legend(frameon=False)
plt.show()

# %% [markdown]
# The right panel is the health check of flowMC-EBM: the flow keeps pace with the EBM, so
# nearly all i-SIR moves leave the current state. A global acceptance sliding toward 0 during
# training would mean the EBM outran its flow: lower the EBM's rate, or raise the flow's.
#
# `train`'s monitor (with `zones=target`) records the same from the flow's side after every
# chunk: the importance-sampling ESS of flow draws against the EBM, the energy gap between
# negatives and data, and each mode's weight in the bank and under the model (flow importance
# weights); `train` warns if the two disagree beyond their sampling error at the end.

# %%
training.plot_history(result_flowmc.history, true_weights=target.weights)
plt.show()

# %% [markdown]
#
# ### Aside: ULA-EBM at the paper's rate
#
# At a peak rate of $10^{-2}$, the untilted ULA-EBM diverges within a few hundred steps here: the
# energy grows steeply away from the data, a ULA step of size 0.01 along that gradient overshoots,
# the chains land where the energy is higher still, and the loss pushes it higher again. Nothing
# stops it: the untilted model has no $\rho$ to keep its mass near the data. The losses and
# energies stay finite for a while, so a NaN check would not see it; `train` stops the run with a
# `TrainingDivergedError` naming the step at which a chain first flies farther than
# `max_chain_distance` (100 by default) data radii from the data's mean.

# %%
short = dict(SETTINGS, num_steps=200, chunk_size=50)
try:
    train(ebm_ula, data, key=key_ula, negatives=sampler_ula, optimizer=optax.adam(1e-2), **short)
    print("ULA-EBM at 1e-2: no runaway within 200 steps this time")
except TrainingDivergedError as err:
    print(f"ULA-EBM at 1e-2 stopped at step {err.step}:\n{err}")

# %% [markdown]
# ## The learned densities
#
# Top row: the truth, the two trained EBMs (normalised on the grid) and the companion flow of
# flowMC-EBM. Bottom row: the slice of the densities along the line through the two centres
# (the paper's Fig. 1d, 1h), and the persistent banks of negative chains at the end of training
# over the true density.

# %%
bounds = target.bounds
fig, axes = plt.subplots(2, 4, figsize=(15, 7), layout="constrained")
plotting.plot_density(target, bounds, ax=axes[0, 0], title="truth")
plotting.plot_density(result_flowmc.ebm, bounds, ax=axes[0, 1], title="flowMC-EBM")
plotting.plot_density(result_ula.ebm, bounds, ax=axes[0, 2], title="ULA-EBM")
plotting.plot_flow_density(result_flowmc.flow, bounds, ax=axes[0, 3], title="flowMC-EBM's flow")
for ax, log, title in [(axes[1, 0], False, "slice through the two centres"), (axes[1, 1], True, "log scale")]:
    ebms = {"flowMC-EBM": result_flowmc.ebm, "ULA-EBM": result_ula.ebm}
    plotting.plot_slice(
        ebms, (-1.5, -1.5), (1.5, 1.5), bounds=bounds, truth=target, log=log, ax=ax, title=title
    )
axes[1, 1].set_ylim(-15, 3)
plotting.plot_samples(
    result_flowmc.bank, bounds=bounds, background=target, ax=axes[1, 2], title="flowMC-EBM's bank"
)
plotting.plot_samples(
    result_ula.bank, bounds=bounds, background=target, ax=axes[1, 3], title="ULA-EBM's bank"
)
plt.show()

# %% [markdown]
# flowMC-EBM matches the truth, in the slice too. ULA-EBM learns the shape of the modes, but puts
# almost all the mass in one of them, so the other fades from its map, although its bank still
# holds chains in both. The flow is a rougher fit than the EBM (as in the paper): it only needs to
# be good enough for its proposals to be accepted, and the Metropolis correction of i-SIR takes
# care of the rest.
#
# ## Sampling the trained EBM with `FlowMCKernel`
#
# `ebm.model` is a NumPyro model of the EBM ($x \sim \rho$, then a factor $-E(x)$), so any NumPyro
# kernel can sample it. `FlowMCKernel` with the flow trained along with the EBM, frozen
# (`train_flow=False`), needs only a short warmup to adapt its MALA step size. The share of its
# draws in the heavy mode should agree with the EBM's grid weight.

# %%
kernel = FlowMCKernel(
    result_flowmc.ebm.model,
    flow=result_flowmc.flow,
    train_flow=False,
    global_move="isir",
    num_particles=32,
)
mcmc = MCMC(
    kernel,
    num_warmup=100,
    num_samples=200 if FAST else 1000,
    num_chains=32 if FAST else 64,
    chain_method="vectorized",
    progress_bar=PROGRESS,
)
mcmc.run(key_mcmc, extra_fields=("global_accept_prob",))
samples = mcmc.get_samples(group_by_chain=True)["x"]  # (chains, draws, 2)
sampled_weight = float(diagnostics.zone_frequencies(samples.reshape(-1, 2), target)[1])
grid_weight = float(diagnostics.zone_weights(result_flowmc.ebm, target, resolution=200)[1])
print(f"heavy-mode share of the FlowMCKernel draws: {sampled_weight:.3f}")
print(f"the EBM's weight by grid integration (200 x 200): {grid_weight:.3f}   truth: 0.667")
print(
    f"global acceptance: {float(mcmc.get_extra_fields()['global_accept_prob'].mean()):.2f}, "
    f"max R-hat: {diagnostics.max_rhat(samples):.3f}"
)

# %% [markdown]
# ## Summary
#
# * With flowMC negatives, the EBM learns the 2:1 weights; with ULA negatives, the same network
#   on the same data learns the modes but not their weights, and erases one mode after the other.
# * The tilt $\rho$, the zero energy and the identity flow make the EBM and the flow agree at step
#   0; equal, co-decayed learning rates keep them together, and the global acceptance shows it.
# * `metrics` callables record any number per chunk; `diagnostics.zone_weights` integrates a 2-D
#   EBM on a grid, `zone_frequencies` counts samples.
# * The trained EBM is a NumPyro model: `MCMC(FlowMCKernel(ebm.model, flow=result.flow,
#   train_flow=False))` samples it with the flow trained alongside.
#
# The guide "Training an EBM" lists `train`'s arguments, the other negative samplers and the
# paper's settings for each; `notebooks/03_high_dimensional_mixing.py` goes to 16 dimensions.
