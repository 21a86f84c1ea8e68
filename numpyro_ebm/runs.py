"""Trained runs on disk, and the data they train on: what ``numpyro-ebm train`` writes and reads.

A run folder (the ``--out`` of ``numpyro-ebm train``) holds:

* ``model.eqx``: every array of the trained state (the EBM, the sampler's flow, the persistent
  negative chains), written by ``equinox.tree_serialise_leaves``; never pickle.
* ``run.json``: ``format`` (``numpyro-ebm-run/1``), how to rebuild the models' skeleton (``dim``,
  ``sampler``, ``tilt``, ``net``, ``flow``, ``bank_size``), the data's origin, the settings and the
  training history.
* ``config.json`` and ``checkpoints/``: the settings and checkpoints that ``train --resume`` reads.

:func:`save_run` writes the first two, :func:`load_run` reads them back into a :class:`Run`;
:func:`load_data` turns ``--data`` (a named data set, or an ``(n, dim)`` ``.npy``/``.csv`` file)
into training points, with one-line errors (:class:`UsageError`) for files that will not do.

Example:
    >>> run = load_run("runs/two_modes")  # doctest: +SKIP
    >>> run.ebm.log_density(run.bank[:3])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import datasets, recipes
from numpyro_ebm._atomic import atomic_file
from numpyro_ebm._json import jsonable, write_json
from numpyro_ebm._validate import check_finite_rows
from numpyro_ebm.commands.options import PROG, UsageError
from numpyro_ebm.flows import default_flow
from numpyro_ebm.nets import ToyNet

__all__ = [
    "Run",
    "UsageError",
    "save_run",
    "load_run",
    "build_models",
    "load_data",
    "read_array",
    "run_target",
    "SAMPLERS",
    "RUN_FORMAT",
]

SAMPLERS = recipes.SAMPLERS
RUN_FORMAT = "numpyro-ebm-run/1"
MODEL_FILE, RUN_FILE, CONFIG_FILE = "model.eqx", "run.json", "config.json"
NET = {"kind": "ToyNet", "widths": [32, 64, 64, 64], "negative_slope": 0.05}
FLOW = {"flow_layers": 4, "nn_width": 32, "nn_depth": 1, "knots": 8, "interval": 4.0}


class Run(NamedTuple):
    """A trained run loaded by :func:`load_run`.

    Attributes:
        ebm: the trained ``EnergyModel``.
        flow: the trained flow (the sampler's, or the EBM's tilt for NT-EBM), else ``None``.
        bank: the persistent negative chains at the end of training, ``(bank_size, dim)``.
        manifest: the contents of ``run.json``.
    """

    ebm: Any
    flow: Any
    bank: Any
    manifest: dict


# ------------------------------------------------------------------------------------ models


def build_models(key, dim: int, sampler: str, net_cfg: dict, flow_cfg: dict | None, tilt: str | None = None):
    """A run's EBM and flow, freshly initialised: the skeleton that :func:`load_run` fills in.

    Args:
        key: PRNG key of the initialisation.
        dim: dimension of the data.
        sampler: one of ``SAMPLERS``; sets the EBM's tilt (:func:`numpyro_ebm.recipes.tilt_of`).
        net_cfg: ``ToyNet`` settings, as ``NET``.
        flow_cfg: ``default_flow`` settings, as ``FLOW``; ``None`` for samplers without a flow.
        tilt: the tilt a saved run was trained with (``run.json``'s ``tilt``); default: the
            sampler's today.

    Returns:
        ``(ebm, flow)``; ``flow`` is ``None`` when ``flow_cfg`` is.

    Example:
        >>> ebm, flow = build_models(jax.random.key(0), 2, "flowmc", NET, FLOW)
        >>> ebm.dim, flow is not None
        (2, True)
    """
    key_net, key_flow = jax.random.split(key)
    net = ToyNet(dim, key=key_net, widths=tuple(net_cfg["widths"]), negative_slope=net_cfg["negative_slope"])
    flow = None if flow_cfg is None else default_flow(key_flow, dim, identity_init=True, **flow_cfg)
    if tilt is None or tilt == recipes.tilt_of(sampler):
        ebm, _ = recipes.build(sampler, net, flow)
    else:  # a run saved when this sampler's tilt was another one
        from numpyro_ebm.energy import EnergyModel

        base = {"base": getattr(flow, "base_dist", None), "flow": flow, "none": None}[tilt]
        ebm = EnergyModel(net, base, trainable_base=tilt == "flow")
    return ebm, flow


def _state_to_save(ebm, flow, bank, tilt: str) -> dict:
    # NT-EBM's flow is the EBM's tilt: saved once, inside the EBM.
    return {"ebm": ebm, "flow": None if tilt == "flow" else flow, "bank": bank}


# ------------------------------------------------------------------------------- save / load


def save_run(directory, *, ebm, flow, bank, manifest: dict) -> Path:
    """Write a trained run: ``model.eqx`` (equinox-serialised arrays) and ``run.json``.

    ``manifest`` must hold ``dim``, ``sampler``, ``net`` and ``flow`` (the configurations
    :func:`load_run` rebuilds the skeleton from) and ``bank_size``; anything else JSON-able is
    kept. Both files are written under temporary names and renamed into place.

    Returns:
        The run directory.

    Example:
        >>> ebm, _ = build_models(jax.random.key(0), 2, "ula", NET, None)
        >>> manifest = {"dim": 2, "sampler": "ula", "net": NET, "flow": None, "bank_size": 4}
        >>> bank = jnp.zeros((4, 2))
        >>> save_run("/tmp/run", ebm=ebm, flow=None, bank=bank, manifest=manifest)  # doctest: +SKIP
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = _state_to_save(ebm, flow, bank, manifest.get("tilt") or recipes.tilt_of(manifest["sampler"]))
    with atomic_file(directory / MODEL_FILE, "wb") as f:
        eqx.tree_serialise_leaves(f, state)
    write_json(directory / RUN_FILE, jsonable({"format": RUN_FORMAT, **manifest}))
    return directory


def load_run(directory) -> Run:
    """Load a run written by ``numpyro-ebm train`` (or :func:`save_run`).

    Raises:
        UsageError: the directory holds no complete run, or one of another format.

    Example:
        >>> run = load_run("runs/two_modes")  # doctest: +SKIP
        >>> run.ebm.log_density(run.bank[:3])  # doctest: +SKIP
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--run {directory}: no such directory; pass the --out folder of `{PROG} train`.")
    manifest_path, model_path = directory / RUN_FILE, directory / MODEL_FILE
    if not manifest_path.is_file() or not model_path.is_file():
        hint = (
            " (training did not finish: resume it with `train --resume`)"
            if (directory / CONFIG_FILE).is_file()
            else ""
        )
        raise UsageError(
            f"--run {directory} holds no trained model ({RUN_FILE} and {MODEL_FILE}){hint}; pass the --out "
            f"folder of a finished `{PROG} train`."
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != RUN_FORMAT:
        raise UsageError(
            f"--run {directory}: {RUN_FILE} has format {manifest.get('format')!r}, expected {RUN_FORMAT!r}."
        )
    sampler = manifest["sampler"]
    tilt = manifest.get("tilt") or recipes.tilt_of(sampler)
    ebm, flow = build_models(
        jax.random.key(0), manifest["dim"], sampler, manifest["net"], manifest["flow"], tilt
    )
    bank = jnp.zeros((manifest["bank_size"], manifest["dim"]), jnp.result_type(float))
    state = eqx.tree_deserialise_leaves(model_path, _state_to_save(ebm, flow, bank, tilt))
    flow = state["ebm"].base if tilt == "flow" else state["flow"]
    return Run(state["ebm"], flow, state["bank"], manifest)


def run_target(run: Run) -> datasets.Target | None:
    """The named target a run was trained on (it knows the true zone weights), else ``None``."""
    data = run.manifest["data"]
    if not data.get("named"):
        return None
    kwargs = {"dim": data["dim_arg"]} if data.get("dim_arg") is not None else {}
    return datasets.TARGETS[data["source"]](**kwargs)


# -------------------------------------------------------------------------------------- data


def load_data(spec: str, *, num_data: int, dim: int | None, key, batch_size: int):
    """The training points of ``--data``: a named data set, or a ``.npy``/``.csv`` file.

    Args:
        spec: a name of ``datasets.TARGETS`` or the path of an ``(n, dim)`` array, ``dim >= 2``
            (a ``.csv`` file may start with a header line).
        num_data: points drawn from a named set.
        dim: dimension of ``gaussian_mixture`` (and of no other set).
        key: PRNG key of the draws from a named set.
        batch_size: a file must hold at least this many points.

    Returns:
        ``(data, target, info)``: an ``(n, dim)`` float array, the named ``Target`` (``None`` for a
        file), and where the data came from (kept in ``run.json``).

    Raises:
        UsageError: an unknown name, or a file that is missing, unreadable, not 2-D, too small,
            or holds NaN/inf (the message names the row).

    Example:
        >>> data, target, info = load_data("two_modes", num_data=100, dim=None,
        ...                                key=jax.random.key(0), batch_size=8)
        >>> data.shape, target.name, info["named"]
        ((100, 2), 'two_modes', True)
    """
    if spec in datasets.TARGETS:
        if spec == "gaussian_mixture":
            if dim is None:
                raise UsageError("--data gaussian_mixture needs --dim (an even integer >= 2, e.g. --dim 16).")
            kwargs = {"dim": dim}
        elif dim is not None:
            raise UsageError(f"--dim applies to --data gaussian_mixture only; {spec!r} is 2-D. Drop --dim.")
        else:
            kwargs = {}
        data, target = datasets.load(spec, key, num_data, **kwargs)
        return np.asarray(data), target, {"source": spec, "named": True, "dim_arg": dim}
    path = Path(spec)
    if path.suffix.lower() not in (".npy", ".csv"):
        raise UsageError(
            f"--data {spec!r} is neither a named data set ({', '.join(datasets.TARGETS)}) "
            "nor a .npy/.csv file."
        )
    if dim is not None:
        raise UsageError(
            "--dim applies to --data gaussian_mixture only; a file's dimension is its column count."
        )
    if not path.is_file():
        raise UsageError(f"--data {spec}: no such file; check the path.")
    data = read_array(path)
    if data.ndim != 2:
        raise UsageError(
            f"--data {spec} holds an array of shape {data.shape}; it must be 2-D, (n, dim) "
            "with one point per row."
        )
    if data.shape[1] < 2:
        raise UsageError(
            f"--data {spec} has dim={data.shape[1]}; the default flow needs dim >= 2 (coupling "
            "layers split the coordinates)."
        )
    check_finite_rows(data, f"--data {spec}", "drop or impute them.", error=UsageError)
    if data.shape[0] < batch_size:
        raise UsageError(
            f"--data {spec} has {data.shape[0]} points, fewer than --batch-size {batch_size}; lower it."
        )
    scale = float(np.max(np.abs(data)))
    if scale > 50:
        print(
            f"{PROG}: warning: --data {spec} reaches |x| = {scale:.3g}; the EBM's tilt and flow "
            "start at N(0, I), so standardise the data first for faster, stabler training.",
            file=sys.stderr,
        )
    return data.astype(np.float32), None, {"source": str(path.resolve()), "named": False, "dim_arg": None}


def read_array(path: Path) -> np.ndarray:
    """A ``.npy`` file (no pickles) or a ``.csv`` of numbers, as float64; one-line errors.

    Raises:
        UsageError: the file is not a numeric array.
    """
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise UsageError(f"--data {path}: cannot read it as a numeric .npy array ({err}).") from None
    else:
        data = None
        for skip in (0, 1):  # a header line is allowed
            try:
                data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
                break
            except ValueError:
                continue
        if data is None:
            raise UsageError(
                f"--data {path}: cannot parse it as comma-separated numbers (one point per row)."
            )
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise UsageError(f"--data {path} holds dtype {data.dtype}; it must hold real numbers.")
    return np.asarray(data, np.float64)
