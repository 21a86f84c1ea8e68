"""images: the logit pre-processing, image flows and tilts, dequantisation, CIFAR-10 reading,
class balance, and a tiny digits EBM run with flowMC negatives."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from numpyro_ebm import images
from numpyro_ebm import negatives as ng
from numpyro_ebm.datasets import digits
from numpyro_ebm.energy import EnergyModel
from numpyro_ebm.flows import combine, partition
from numpyro_ebm.nets import ConvEnergy
from numpyro_ebm.training import train

# Eager flowjax calls dispatch hundreds of small ops; one compiled call is much faster.
log_prob = eqx.filter_jit(lambda dist, x: dist.log_prob(x))
sample = eqx.filter_jit(lambda dist, key, n: dist.sample(key, (n,)))
# --- logit pre-processing ----------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 0.3])
def test_logit_preprocessing_round_trips_and_log_det_matches_autodiff(alpha):
    dim = 6
    p = images.logit_preprocessing(dim, alpha=alpha)
    x = jax.random.uniform(jax.random.key(0), (dim,), minval=0.0, maxval=1.0)
    u, inv_log_det = p.inverse_and_log_det(x)
    y, fwd_log_det = p.transform_and_log_det(u)
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(fwd_log_det, -inv_log_det, rtol=1e-5, atol=1e-5)
    # the Dinh et al. formula for the pixel -> logit direction
    np.testing.assert_allclose(u, jax.scipy.special.logit(alpha + (1 - 2 * alpha) * x), rtol=1e-5, atol=1e-5)
    jacobian = jax.jacfwd(p.transform)(u)
    _, autodiff_log_det = jnp.linalg.slogdet(jacobian)
    np.testing.assert_allclose(fwd_log_det, autodiff_log_det, rtol=1e-5, atol=1e-4)


def test_logit_preprocessing_maps_zero_and_one_to_finite_logits_and_is_frozen():
    p = images.logit_preprocessing((2,), alpha=0.05)
    u = p.inverse(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(u, [-np.log(19.0), np.log(19.0)], rtol=1e-5)
    params, _ = eqx.partition(p, eqx.is_inexact_array, is_leaf=lambda leaf: hasattr(leaf, "unwrap"))
    assert jax.tree.leaves(params) == [], "the pre-processing must have no trainable array"


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.1, "0.05"])
def test_logit_preprocessing_rejects_a_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        images.logit_preprocessing(4, alpha=alpha)


# --- image flow and tilt ---------------------------------------------------------------------------


def test_image_flow_equals_the_tilt_at_initialisation():
    dim = 64
    flow = images.image_flow(jax.random.key(0), dim, flow_layers=2)
    tilt = images.image_tilt(dim)
    x_flow = sample(flow, jax.random.key(1), 256)
    x_data, _ = digits(dequantize_key=jax.random.key(2))
    for x in (x_flow, x_data[:256]):
        np.testing.assert_allclose(log_prob(flow, x), log_prob(tilt, x), rtol=1e-5, atol=1e-3)
    # identity couplings: the same base draw gives the same image
    np.testing.assert_allclose(x_flow, sample(tilt, jax.random.key(1), 256), atol=1e-5)
    # the image box of the pre-processing
    bound = 0.05 / 0.9
    assert float(x_flow.min()) > -bound and float(x_flow.max()) < 1 + bound


def test_image_flow_tilts_an_ebm_that_matches_it_at_initialisation():
    flow = images.image_flow(jax.random.key(0), 64, flow_layers=2)
    ebm = EnergyModel(ConvEnergy(key=jax.random.key(1)), images.image_tilt(64))
    x = sample(flow, jax.random.key(2), 32)
    log_density = eqx.filter_jit(lambda ebm, x: ebm.log_density(x))
    np.testing.assert_allclose(log_density(ebm, x), log_prob(flow, x), rtol=1e-5, atol=1e-3)


def test_image_flow_is_trainable_but_its_preprocessing_is_not():
    flow = images.image_flow(jax.random.key(0), 8, identity_init=False, flow_layers=2)
    params, static = partition(flow)
    assert jax.tree.leaves(params), "the coupling flow must have trainable parameters"
    # perturbing every trainable array leaves the fixed pre-processing untouched
    bumped = combine(jax.tree.map(lambda a: a + 0.1, params), static)
    preprocessing = combine(*partition(flow)).bijection.bijections[-1]
    assert eqx.tree_equal(bumped.bijection.bijections[-1], preprocessing)


def test_image_flow_rejects_a_base():
    with pytest.raises(ValueError, match="base"):
        images.image_flow(jax.random.key(0), 4, base=None)


# --- dequantisation and flips -------------------------------------------------------------------


def test_dequantize_lands_in_the_unit_interval_and_keeps_the_level():
    levels = 256
    x = jnp.tile(jnp.arange(levels, dtype=jnp.uint8), 40)
    y = images.dequantize(jax.random.key(0), x, levels)
    assert y.dtype == jnp.float32
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
    np.testing.assert_array_equal(np.floor(np.asarray(y, np.float64) * levels), np.asarray(x))
    with pytest.raises(ValueError, match="levels"):
        images.dequantize(jax.random.key(0), jnp.array([0.5, 1.0]) * 300, levels)
    with pytest.raises(ValueError, match="levels"):
        images.dequantize(jax.random.key(0), x, 1)


def test_random_flip_mirrors_about_half_of_the_images():
    x = jnp.tile(jnp.arange(24.0).reshape(1, 2, 3, 4), (200, 1, 1, 1))
    flat = x.reshape(200, -1)
    y = images.random_flip(jax.random.key(0), flat, image_shape=(2, 3, 4)).reshape(x.shape)
    flipped = np.all(np.asarray(y) == np.asarray(x[0, :, :, ::-1]), axis=(1, 2, 3))
    unchanged = np.all(np.asarray(y) == np.asarray(x[0]), axis=(1, 2, 3))
    assert np.all(flipped | unchanged)
    assert 60 < flipped.sum() < 140


# --- CIFAR-10 binary format ---------------------------------------------------------------------


def _write_cifar(folder, name, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
    (folder / name).write_bytes(records.tobytes())
    return labels, pixels


def test_load_cifar10_reads_the_official_binary_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    written = [_write_cifar(folder, f"data_batch_{i}.bin", 3, seed=i) for i in range(1, 6)]
    test_labels, test_pixels = _write_cifar(folder, "test_batch.bin", 4, seed=9)

    x, y = images.load_cifar10(folder, split="test")
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x, test_pixels)
    np.testing.assert_array_equal(y, test_labels)

    # train = the five batches in order; the parent folder works too; limit crosses files
    x, y = images.load_cifar10(tmp_path, split="train")
    np.testing.assert_array_equal(x, np.concatenate([p for _, p in written]))
    np.testing.assert_array_equal(y, np.concatenate([lab for lab, _ in written]))
    x, y = images.load_cifar10(folder, limit=5, flat=True)
    assert x.shape == (5, 3072)
    np.testing.assert_array_equal(x, np.concatenate([p for _, p in written])[:5].reshape(5, -1))
    # record layout: channel-major planes (red first), row-major inside a plane
    raw = np.frombuffer((folder / "test_batch.bin").read_bytes(), np.uint8)
    assert raw[1 + 32 * 32 + 5] == test_pixels[0, 1, 0, 5]


def test_load_cifar10_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        images.load_cifar10(tmp_path / "nowhere")
    _write_cifar(tmp_path, "test_batch.bin", 2, seed=0)
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        images.load_cifar10(tmp_path, split="train")
    with pytest.raises(ValueError, match="split"):
        images.load_cifar10(tmp_path, split="valid")
    with pytest.raises(ValueError, match="limit"):
        images.load_cifar10(tmp_path, split="test", limit=0)
    # a truncated file
    data = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "test_batch.bin").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        images.load_cifar10(tmp_path, split="test")
    # a label byte that CIFAR-10 cannot have
    bad = bytearray(data)
    bad[3073] = 57
    (tmp_path / "test_batch.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="label 57"):
        images.load_cifar10(tmp_path, split="test")


# --- class balance --------------------------------------------------------------------------------


def test_class_balance_of_the_data_is_its_label_frequencies():
    x, labels = digits()
    classifier = images.fit_digit_classifier(x, labels)
    freq = images.class_balance(x, classifier)
    truth = np.bincount(np.asarray(labels), minlength=10) / labels.shape[0]
    assert freq.shape == (10,) and freq.sum() == pytest.approx(1.0)
    assert 0.5 * np.abs(freq - truth).sum() < 0.03  # the classifier is ~99 % right on its train set
    only_zeros = images.class_balance(x[np.asarray(labels) == 0], classifier)
    assert only_zeros[0] > 0.95
    with pytest.warns(DeprecationWarning, match="num_classes"):  # the old keyword still works
        assert np.array_equal(images.class_balance(x, classifier, n_classes=10), freq)


def test_tile_images_places_each_image():
    x = np.arange(3 * 4, dtype=float).reshape(3, 4)
    grid = images.tile_images(x, (2, 2), ncols=2, pad=1, pad_value=-1)
    assert grid.shape == (5, 5)
    np.testing.assert_array_equal(grid[3:5, 0:2], x[2].reshape(2, 2))
    assert grid[0, 2] == -1


# --- a tiny digits EBM ----------------------------------------------------------------------------


# FlowMC compares the tilt with flow.base_dist (logit space for an image flow) and warns wrongly.
@pytest.mark.filterwarnings("ignore::numpyro_ebm.negatives.UnbalancedWarning")
def test_tiny_digits_ebm_with_flowmc_negatives_stays_finite():
    x, _ = digits(dequantize_key=jax.random.key(0))
    flow = images.image_flow(jax.random.key(1), 64, flow_layers=2, nn_width=16)
    ebm = EnergyModel(ConvEnergy(key=jax.random.key(2), channels=(4, 8, 8)), images.image_tilt(64))
    result = train(
        ebm,
        x,
        key=jax.random.key(3),
        negatives=ng.FlowMC(
            flow, num_particles=4, num_local_steps=2, num_cycles=1, step_size=1e-4, target_accept=0.6
        ),
        optimizer=optax.adam(1e-3),
        flow_optimizer=optax.adam(1e-3),
        num_steps=10,
        batch_size=16,
        bank_size=32,
        chunk_size=10,
        progress=False,
    )
    assert np.all(np.isfinite(result.bank))
    for name in ("loss", "energy_data", "energy_negatives", "flow_loss"):
        assert np.all(np.isfinite(result.history[name])), name
    bound = 0.05 / 0.9
    assert float(result.bank.min()) > -bound and float(result.bank.max()) < 1 + bound
    # the contrastive step pushed data energies below the negatives'
    assert result.history["energy_data"][-1] < result.history["energy_negatives"][-1]


# --- the multi-scale RealNVP and the residual energy of the CIFAR-10 experiment -------------------


def test_realnvp_image_flow_starts_as_the_tilt_and_has_exact_log_dets():
    flow = images.realnvp_image_flow(jax.random.key(0), (1, 8, 8), width=4, blocks=1, scales=2)
    x = jax.random.uniform(jax.random.key(1), (3, 64), minval=0.05, maxval=0.95)
    np.testing.assert_allclose(log_prob(flow, x), log_prob(images.image_tilt(64), x), rtol=1e-5, atol=1e-4)
    # Away from the identity: inverse(transform(z)) = z, and the log-det is the Jacobian's.
    couplings = flow.bijection.bijections[:-1]
    moved = [
        eqx.tree_at(
            lambda c: c.net,
            c,
            replace_fn=lambda net, i=i: jax.tree.map(
                lambda a: a + 0.05 * jax.random.normal(jax.random.key(i), a.shape), net
            ),
        )
        for i, c in enumerate(couplings)
    ]
    from flowjax.bijections import Chain

    @eqx.filter_jit
    def check(bijection, z):
        y, log_det = bijection.transform_and_log_det(z)
        back, inv_log_det = bijection.inverse_and_log_det(y)
        return y, log_det, back, inv_log_det, jnp.linalg.slogdet(jax.jacfwd(bijection.transform)(z))[1]

    z = jax.random.normal(jax.random.key(2), (64,))
    y, log_det, back, inv_log_det, autodiff = check(Chain(moved), z)
    np.testing.assert_allclose(back, z, atol=1e-5)
    assert float(jnp.abs(y - z).max()) > 1e-2  # the couplings do move the points
    np.testing.assert_allclose(log_det, autodiff, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(inv_log_det, -log_det, rtol=1e-5, atol=1e-5)


def test_cifar10_networks_have_the_papers_sizes():
    from numpyro_ebm.nets import ResNetEnergy

    # Shapes only (no arrays are made): the parameters the trainer would see.
    energy = eqx.filter_eval_shape(lambda: ResNetEnergy(key=jax.random.key(0)))
    flow = eqx.filter_eval_shape(lambda: partition(images.realnvp_image_flow(jax.random.key(1)))[0])
    count = lambda tree: sum(a.size for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating))  # noqa: E731
    assert 4.0e6 < count(energy) < 5.0e6  # the paper's "about 4.5M"
    assert 3.5e6 < count(flow) < 4.5e6  # the paper's "about 4M"
    with pytest.raises(ValueError, match="squeezed"):
        images.realnvp_image_flow(jax.random.key(0), (3, 30, 30), scales=3)
