"""Names from before the ``num_*`` rename (issue 12) keep working: keywords and attributes with a
``DeprecationWarning`` naming the new name, old command-line flags, old checkpoints and run folders.

This file names the old keywords on purpose: /work/notes/rename.py leaves it alone.
"""

from __future__ import annotations

import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_ebm as ne
from numpyro_ebm import checkpoints, datasets, diagnostics, tempering
from numpyro_ebm import negatives as ng
from numpyro_ebm._compat import RENAMED
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import default_flow
from numpyro_ebm.nets import ToyNet
from numpyro_ebm.settings import FlowMCSettings
from numpyro_ebm.training import train

FLOW = default_flow(jax.random.key(0), 2, identity_init=True, flow_layers=1, knots=4, nn_width=8)
TWO_MODES = datasets.two_modes_target()
SAMPLES = jax.random.normal(jax.random.key(1), (64, 2))

# (what, old keywords -> object, new keywords -> object): each pair must build the same object.
CASES = {
    "FlowMCSettings": (
        lambda: FlowMCSettings(n_particles=8, n_local_steps=2),
        lambda: FlowMCSettings(num_particles=8, num_local_steps=2),
    ),
    "FlowMCSettings.replace": (
        lambda: FlowMCSettings().replace(n_particles=8),
        lambda: FlowMCSettings().replace(num_particles=8),
    ),
    "FlowMCKernel": (
        lambda: ne.FlowMCKernel(potential_fn=lambda x: x @ x, n_particles=8, n_local_steps=2).settings,
        lambda: ne.FlowMCKernel(potential_fn=lambda x: x @ x, num_particles=8, num_local_steps=2).settings,
    ),
    "FlowMC": (
        lambda: ng.FlowMC(FLOW, n_particles=8, n_local_steps=2, n_cycles=1),
        lambda: ng.FlowMC(FLOW, num_particles=8, num_local_steps=2, num_cycles=1),
    ),
    "FlowMC.from_settings": (
        lambda: ng.FlowMC.from_settings(FLOW, FlowMCSettings(), n_cycles=3),
        lambda: ng.FlowMC.from_settings(FLOW, FlowMCSettings(), num_cycles=3),
    ),
    "ULA": (lambda: ng.ULA(n_steps=5), lambda: ng.ULA(num_mcmc_steps=5)),
    "MALA": (lambda: ng.MALA(n_steps=5), lambda: ng.MALA(num_mcmc_steps=5)),
    "ShortRun": (lambda: ng.ShortRun(n_steps=5), lambda: ng.ShortRun(num_mcmc_steps=5)),
    "NTEBM": (lambda: ng.NTEBM(n_steps=5), lambda: ng.NTEBM(num_mcmc_steps=5)),
    "CoopFlow": (lambda: ng.CoopFlow(FLOW, n_steps=5), lambda: ng.CoopFlow(FLOW, num_mcmc_steps=5)),
    "TemperedSMC": (
        lambda: tempering.TemperedSMC(n_mcmc_steps=2),
        lambda: tempering.TemperedSMC(num_mcmc_steps=2),
    ),
    "AngularZones": (
        lambda: datasets.AngularZones(n_sectors=4),
        lambda: datasets.AngularZones(num_sectors=4),
    ),
    "zone_frequencies": (
        lambda: diagnostics.zone_frequencies(SAMPLES, TWO_MODES.zones, n_zones=2),
        lambda: diagnostics.zone_frequencies(SAMPLES, TWO_MODES.zones, num_zones=2),
    ),
    "zone_weights": (
        lambda: diagnostics.zone_weights(SAMPLES, TWO_MODES.zones, n_zones=2),
        lambda: diagnostics.zone_weights(SAMPLES, TWO_MODES.zones, num_zones=2),
    ),
}


@pytest.mark.parametrize("what", CASES)
def test_old_keyword_warns_and_builds_the_same_object(what):
    old, new = CASES[what]
    with pytest.warns(DeprecationWarning, match=r"is deprecated; use num_\w+="):
        built_old = old()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new names warn of nothing
        built_new = new()
    assert bool(eqx.tree_equal(built_old, built_new)), what


def test_old_and_new_keyword_together_is_an_error():
    with pytest.raises(TypeError, match="got both n_steps= and num_mcmc_steps="):
        ng.ULA(n_steps=5, num_mcmc_steps=5)


def test_old_attribute_names_warn_and_read_the_new_ones():
    sampler, flowmc, settings = (
        ng.MALA(num_mcmc_steps=7, keep=7),
        ng.FlowMC(FLOW, num_cycles=3),
        FlowMCSettings(),
    )
    reads = [
        (lambda: TWO_MODES.n_zones, TWO_MODES.num_zones),
        (lambda: datasets.NearestMeanZones(jnp.eye(2)).n_zones, 2),
        (lambda: settings.n_particles, settings.num_particles),
        (lambda: settings.n_local_steps, settings.num_local_steps),
        (lambda: sampler.n_steps, 7),
        (lambda: sampler.n_states, 7),
        (lambda: sampler.n_chains(14), 2),  # an old method, reached through its alias
        (lambda: flowmc.n_cycles, 3),
        (lambda: flowmc.n_particles, flowmc.num_particles),
        (lambda: ng.NegativeSample(0, 0, 0.5, 0.25, 0).local_accept, 0.5),
        (lambda: ng.NegativeSample(0, 0, 0.5, 0.25, 0).global_accept, 0.25),
    ]
    for read, expected in reads:
        with pytest.warns(DeprecationWarning, match=r"is deprecated; use \.(num_|\w+_accept_prob)"):
            assert read() == expected


def test_a_zone_function_with_the_old_count_attribute_still_counts():
    class OldZones:  # a user's zone function written before the rename
        n_zones = 2

        def __call__(self, x):
            return TWO_MODES.zones(x)

    np.testing.assert_array_equal(
        diagnostics.zone_frequencies(SAMPLES, OldZones()), diagnostics.zone_frequencies(SAMPLES, TWO_MODES)
    )


def test_old_command_line_flags_are_hidden_aliases(capsys):
    from numpyro_ebm.cli import build_parser

    parser = build_parser()
    base = ["train", "--data", "two_modes", "--sampler", "ula", "--steps", "3", "--out", "x"]
    args = parser.parse_args([*base, "--n-steps", "7", "--n-cycles", "2", "--n-particles", "5"])
    assert (args.num_mcmc_steps, args.num_cycles, args.num_particles) == (7, 2, 5)
    assert "--n-steps is deprecated; use --num-mcmc-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    assert "--n-" not in capsys.readouterr().out  # hidden from the help


def test_a_run_folder_from_before_the_rename_resumes(tmp_path):
    from numpyro_ebm.commands.train import resolve_config

    # The options of an old run, as its config.json holds them (old names).
    old = {"data": "two_modes", "sampler": "flowmc", "n_cycles": 1, "n_particles": 4, "n_steps": None}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = resolve_config({"num_particles": 4}, steps=10, out=tmp_path, resume=True)
    assert (config["num_cycles"], config["num_particles"], config["steps"]) == (1, 4, 10)
    assert not any(name in config for name in RENAMED)


def test_a_checkpoint_from_before_the_rename_resumes(tmp_path):
    ebm = EnergyModel(ToyNet(2, key=jax.random.key(1)), FLOW.base_dist)
    sampler = ng.FlowMC(FLOW, num_particles=4, num_local_steps=1, num_cycles=1)
    data = datasets.two_modes(jax.random.key(2), 64)
    kwargs = dict(key=jax.random.key(3), negatives=sampler, num_steps=2, batch_size=8, bank_size=16)
    kwargs.update(chunk_size=2, checkpoint_dir=tmp_path, progress=False)
    first = train(ebm, data, **kwargs)
    # Rewrite the checkpoint's settings record as a checkpoint written before the rename held it.
    new_to_old = {new: old for old, new in RENAMED.items() if old != "n_mcmc_steps"}
    manifest_path = checkpoints.latest_checkpoint(tmp_path) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    sampler_record = {new_to_old.get(k, k): v for k, v in manifest["config"]["sampler"].items()}
    assert {"n_particles", "n_local_steps", "n_cycles"} <= set(sampler_record)
    manifest["config"]["sampler"] = sampler_record
    manifest["history"] = {new_to_old.get(k, k): v for k, v in manifest["history"].items()}
    assert {"local_accept", "global_accept"} <= set(manifest["history"])
    manifest_path.write_text(json.dumps(manifest))

    resumed = train(ebm, data, resume=True, **kwargs)  # a finished run: returned as saved
    assert resumed.step == first.step == 2
    assert bool(eqx.tree_equal(eqx.filter(resumed.ebm, eqx.is_array), eqx.filter(first.ebm, eqx.is_array)))
    for name in ("local_accept_prob", "global_accept_prob"):  # the old history, under the new names
        np.testing.assert_array_equal(resumed.history[name], first.history[name])
    with pytest.warns(
        DeprecationWarning, match=r"\['local_accept'\] is deprecated; use \['local_accept_prob'\]"
    ):
        np.testing.assert_array_equal(resumed.history["local_accept"], first.history["local_accept_prob"])
    # The comparison still runs on the mapped names: an old record with another value is refused.
    manifest["config"]["sampler"]["n_particles"] = 6
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"sampler\.num_particles: checkpoint 6, now 4"):
        train(ebm, data, resume=True, **kwargs)
