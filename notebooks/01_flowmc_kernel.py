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
# # Sampling a multimodal target with `FlowMCKernel`
#
# Gradient-based MCMC (NUTS, MALA) explores one mode at a time: a chain almost never crosses a
# region of low density between two modes. An ensemble of such chains then reports the modes in
# the proportions in which the chains happened to *start*, not in the proportions of the target.
#
# `FlowMCKernel` adds global moves proposed by a normalizing flow that is fitted to the chains
# during warmup and frozen afterwards. In this notebook:
#
# 1. NUTS and `FlowMCKernel` on the same two-mode target with weights 1/3 and 2/3;
# 2. ArviZ diagnostics, and the kernel's local and global acceptance rates;
# 3. the trained flow: its density, and reusing it frozen in a new kernel;
# 4. the pure transition `flowmc_step` inside your own `jax.jit` + `lax.scan` loop;
# 5. the model evidence from the trained flow: choosing between 2 and 3 mixture components.
#
# Set `NUMPYRO_EBM_FAST=1` for a quick, smaller run (the tests do); the full run takes a minute
# or two on a laptop CPU.

# %%
import os

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from numpyro_ebm import FlowMCKernel, flowmc_step, flows, moves

FAST = os.environ.get("NUMPYRO_EBM_FAST") == "1"
NUM_WARMUP, NUM_SAMPLES = (150, 150) if FAST else (500, 1000)
NUM_CHAINS = 32 if FAST else 64
PROGRESS = not FAST

# %% [markdown]
# ## The target
#
# A mixture of two Gaussians in 2-D with standard deviation 0.7, centred at $(-3, -3)$ (weight
# 1/3) and $(3, 3)$ (weight 2/3). The modes are 12 standard deviations apart, so the half-plane
# $x_1 + x_2 > 0$ holds the heavy mode's mass, 2/3, up to $10^{-9}$: the share of draws in it is
# our check.

# %%
WEIGHTS = jnp.array([1 / 3, 2 / 3])
MEANS = jnp.array([[-3.0, -3.0], [3.0, 3.0]])
mixture = dist.MixtureSameFamily(dist.Categorical(WEIGHTS), dist.MultivariateNormal(MEANS, 0.49 * jnp.eye(2)))


def model():
    numpyro.sample("x", mixture)


def heavy_share(x):
    """Share of the points ``x`` (shape ``(..., draws, 2)``) in the heavy mode's half-plane."""
    return jnp.mean(x.sum(-1) > 0, axis=-1)


# %% [markdown]
# ## NUTS
#
# Eight NUTS chains, vectorized. NumPyro's default initialisation draws each start uniformly in
# $[-2, 2]^2$; each chain then settles in one mode, typically the one on its side of the line
# $x_1 + x_2 = 0$, and stays there.

# %%
nuts = MCMC(
    NUTS(model),
    num_warmup=NUM_WARMUP,
    num_samples=NUM_SAMPLES,
    num_chains=8,
    chain_method="vectorized",
    progress_bar=PROGRESS,
)
nuts.run(jax.random.key(3))
x_nuts = nuts.get_samples(group_by_chain=True)["x"]  # (chains, draws, 2)
print("NUTS, share in the heavy mode per chain:", np.round(heavy_share(x_nuts), 2))
print(f"NUTS, overall: {float(heavy_share(x_nuts.reshape(-1, 2))):.3f} (truth: 0.667)")

# %% [markdown]
# Every chain sits in one mode for good, so the overall share is just the fraction of chains
# that went to the heavy mode: 1/2 in expectation with this initialisation, whatever the true
# weights. Because the chains disagree, R-hat flags the problem (values far above 1.01) and the
# bulk ESS is tiny; had all chains started in the same mode, the diagnostics would look fine.
# Longer runs would not help.

# %%
print(az.summary(az.from_numpyro(nuts), kind="diagnostics"))

# %% [markdown]
# ## `FlowMCKernel`
#
# `FlowMCKernel` is an *ensemble* kernel: all chains share one flow, so it needs
# `chain_method="vectorized"` and at least 2 chains (32-128 give the flow a varied training
# set). Each iteration is one global move, here i-SIR with 16 particles, followed by 4 MALA
# steps. During warmup the MALA step size adapts and the flow is fitted by forward KL to the
# chains' recent states; after warmup both are frozen, so the production chain is a fixed,
# valid Markov chain.
#
# The extra fields `local_accept_prob` (MALA, averaged over the local steps) and
# `global_accept_prob` (the flow move) are recorded per chain and iteration.

# %%
kernel = FlowMCKernel(model, global_move="isir", num_particles=16, num_local_steps=4)
mcmc = MCMC(
    kernel,
    num_warmup=NUM_WARMUP,
    num_samples=NUM_SAMPLES,
    num_chains=NUM_CHAINS,
    chain_method="vectorized",
    progress_bar=PROGRESS,
)
mcmc.run(jax.random.key(0), extra_fields=("local_accept_prob", "global_accept_prob"))
x_flowmc = mcmc.get_samples(group_by_chain=True)["x"]
extra = mcmc.get_extra_fields()
print(f"FlowMCKernel, share in the heavy mode: {float(heavy_share(x_flowmc.reshape(-1, 2))):.3f}")
print(f"mean local (MALA) acceptance:   {float(extra['local_accept_prob'].mean()):.2f}")
print(f"mean global (i-SIR) acceptance: {float(extra['global_accept_prob'].mean()):.2f}")

# %% [markdown]
# Every chain now visits both modes, the overall share is close to 2/3, and R-hat is close to 1.
# A global acceptance near 0 after warmup would mean the flow did not learn the target: more
# warmup, more chains, or `global_move="isir"` with more particles. `az.from_numpyro` keeps
# both acceptance rates, per chain and draw, in `idata.sample_stats`.

# %%
idata = az.from_numpyro(mcmc)
print("per-chain shares, min and max:", np.round(np.percentile(heavy_share(x_flowmc), [0, 100]), 2))
print(az.summary(idata, kind="diagnostics"))

# %% [markdown]
# ## The trained flow
#
# The flow lives in the kernel's state; `kernel.get_flow(mcmc.last_state)` returns it as a
# flowjax distribution, with `sample` and `log_prob`. It is a rough but useful fit: it puts
# mass on both modes, in about the right proportions. Exact weights are not needed from it; the
# Metropolis-Hastings correction of the global move takes care of them.

# %%
trained = kernel.get_flow(mcmc.last_state)
x_flow = trained.sample(jax.random.key(4), (10_000,))
print(f"the flow's own share in the heavy mode: {float(heavy_share(x_flow)):.3f}")

# %% [markdown]
# Draws of both samplers, and the density of the flow. Dashed contours: the target.

# %%
grid = jnp.linspace(-6.5, 6.5, 120)
gx, gy = jnp.meshgrid(grid, grid)
points = jnp.stack([gx, gy], axis=-1)  # (120, 120, 2)
target_density = jnp.exp(mixture.log_prob(points))
flow_density = jnp.exp(trained.log_prob(points))
LEVELS = [0.01, 0.05, 0.1, 0.2]  # the peaks are 0.22 (heavy mode) and 0.11 (light mode)


def show(ax, x, title):
    ax.contour(gx, gy, target_density, levels=LEVELS, colors="k", linestyles="dashed", linewidths=0.7)
    ax.scatter(x[..., 0].ravel(), x[..., 1].ravel(), s=1, alpha=0.2)
    ax.set(title=title, xlim=(-6.5, 6.5), ylim=(-6.5, 6.5), aspect="equal")


fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
show(axes[0], x_nuts, f"NUTS: heavy mode share {float(heavy_share(x_nuts.reshape(-1, 2))):.2f}")
show(axes[1], x_flowmc, f"FlowMCKernel: heavy mode share {float(heavy_share(x_flowmc.reshape(-1, 2))):.2f}")
axes[2].contourf(gx, gy, flow_density, levels=20, cmap="viridis")
axes[2].contour(gx, gy, target_density, levels=LEVELS, colors="w", linestyles="dashed", linewidths=0.7)
axes[2].set(title="density of the trained flow", aspect="equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reusing the trained flow, frozen
#
# A flow trained once can drive later runs, e.g. on more chains or for longer. With
# `train_flow=False` and `tempering=None` (the trained flow already covers both modes: there is
# nothing left to discover) the warmup only adapts the MALA step size, so a short one suffices.
# (`FlowMCKernel(model, flow=trained)` would instead keep training it during warmup; with the
# default tempering, the frozen flow would also drive a tempered SMC from the prior first.)

# %%
frozen = FlowMCKernel(
    model, flow=trained, train_flow=False, tempering=None, global_move="isir", num_particles=16
)
mcmc_frozen = MCMC(
    frozen,
    num_warmup=50 if FAST else 100,
    num_samples=NUM_SAMPLES,
    num_chains=NUM_CHAINS,
    chain_method="vectorized",
    progress_bar=PROGRESS,
)
mcmc_frozen.run(jax.random.key(2))
x_frozen = mcmc_frozen.get_samples()["x"]
print(f"frozen flow, share in the heavy mode: {float(heavy_share(x_frozen)):.3f}")

# %% [markdown]
# ## The pure transition in your own loop
#
# For a sampler inside a larger JAX program (the EBM trainer is one), skip `MCMC` and call the
# transition itself: `flowmc_step(key, chains, logdensity_fn,
# flow, ...)` moves a batch of chains by one global move and `num_local_steps` MALA steps. It is
# pure, so it goes into `jax.jit` and `lax.scan` as is. `logdensity_fn` takes one point of
# shape `(dim,)`.
#
# A flow is a pytree of arrays and static parts; `flows.partition` splits it so the arrays can
# be a jitted function's argument, and `flows.combine` puts it back together inside. (Closing
# over the flow also works, but bakes its weights into the compiled program as constants.)
#
# Below, 512 chains all start in the *light* mode. MALA alone would keep them there; with the
# frozen flow and the step size adapted above, the share in the heavy mode reaches 2/3 within
# a few iterations.


# %%
def log_prob(x):
    return mixture.log_prob(x)


num_iterations = 20 if FAST else 50
step_size = mcmc.last_state.step_size  # the adapted MALA step size, frozen after warmup
params, static = flows.partition(trained)


@jax.jit
def run_chains(key, chains, params):
    flow = flows.combine(params, static)

    def one_iteration(chains, key):
        chains, info = flowmc_step(
            key,
            chains,
            log_prob,
            flow,
            step_size=step_size,
            num_local_steps=4,
            global_move="isir",
            num_particles=16,
        )
        return chains, (heavy_share(chains.position), jnp.mean(info.global_accept_prob))

    return jax.lax.scan(one_iteration, chains, jax.random.split(key, num_iterations))


key_start, key_run = jax.random.split(jax.random.key(3))
x0 = MEANS[0] + 0.7 * jax.random.normal(key_start, (512, 2))
chains = moves.init_chains(x0, log_prob)
chains, (share, global_accept_prob) = run_chains(key_run, chains, params)
print("share in the heavy mode after each iteration:", np.round(np.asarray(share[:10], float), 2), "...")
print(f"after {num_iterations} iterations: {float(share[-1]):.3f}")
print(f"mean global acceptance: {float(global_accept_prob.mean()):.2f}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.arange(num_iterations + 1), np.concatenate([[0.0], share]), marker=".", label="flowMC chains")
ax.axhline(2 / 3, color="k", linestyle="dashed", linewidth=0.8, label="truth")
ax.set(xlabel="iteration", ylabel="share in the heavy mode", ylim=(0, 1))
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Model evidence: how many components?
#
# `log_evidence(mcmc, key, *model_args)` estimates $\log p(\text{data})$ from a finished run by
# importance sampling: the trained flow (mixed with a broad Gaussian fitted to the draws) is
# the proposal, and the target is the unnormalised posterior in NumPyro's unconstrained space.
# It returns the estimate, its standard error, the importance-sampling ESS and the PSIS shape
# $\hat k$ (ArviZ); above 0.7 the weights are too heavy-tailed to trust, and it warns.
#
# Data from three Gaussian clusters; models with 2 and 3 equally weighted components of known
# spread. The locations get an ordered prior (`OrderedTransform` of independent normals), so
# the posterior has no label-switching copies. The evidence picks 3 components by a wide margin.
# With one mode there is nothing for tempering to discover, so `tempering=None` skips it: the
# flow is then fitted to the chains during warmup.

# %%
from numpyro.distributions.transforms import OrderedTransform  # noqa: E402

from numpyro_ebm import log_evidence  # noqa: E402

y_mix = jnp.concatenate(
    [c + 0.7 * jax.random.normal(jax.random.key(10 + i), (20,)) for i, c in enumerate([-3.0, 0.0, 3.0])]
)


def mixture_model(y, k):
    increments = dist.Normal(0.0, 3.0).expand([k]).to_event(1)
    locs = numpyro.sample("locs", dist.TransformedDistribution(increments, OrderedTransform()))
    components = dist.MixtureSameFamily(dist.Categorical(jnp.ones(k) / k), dist.Normal(locs, 0.7))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", components, obs=y)


evidence = {}
for k in (2, 3):
    mcmc_k = MCMC(
        FlowMCKernel(mixture_model, tempering=None),
        num_warmup=100 if FAST else NUM_WARMUP,
        num_samples=50 if FAST else NUM_SAMPLES,
        num_chains=16 if FAST else NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=PROGRESS,
    )
    mcmc_k.run(jax.random.PRNGKey(5), y_mix, k)  # a raw PRNGKey works as well as a typed key
    evidence[k] = log_evidence(mcmc_k, jax.random.PRNGKey(6), y_mix, k)
    ev = evidence[k]
    print(
        f"K={k}: log evidence {ev.log_z:.2f} +- {ev.stderr:.2f}  (ESS {ev.ess:.0f}, k-hat {ev.pareto_k:.2f})"
    )
print(f"log Bayes factor, 3 vs 2 components: {evidence[3].log_z - evidence[2].log_z:.1f}")

# %% [markdown]
# ## Summary
#
# * NUTS chains stay in the mode they first reach: the mode weights they report are proportions
#   of chains, set by the starting points. R-hat can detect this, when the chains disagree, but
#   not fix it.
# * `FlowMCKernel` chains jump between the modes with a Metropolis-corrected flow proposal and
#   recover the 2:1 weights; its flow is trained during warmup only, then frozen.
# * The trained flow is reusable (`flow=..., train_flow=False`), and `flowmc_step` is the same
#   transition as a pure function for your own compiled loops.
# * The trained flow also gives the model evidence (`log_evidence`), with PSIS $\hat k$ saying
#   when not to trust it.
#
# See the guide "Sampling with FlowMCKernel" for the settings that matter.
