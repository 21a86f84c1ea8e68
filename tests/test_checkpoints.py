"""Checkpoints and the atomic writer: all or nothing on disk, one process only, no pickle.

The SIGKILL-mid-write and exact-resume tests live in tests/test_faults.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm import _atomic, checkpoints


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError), _atomic.atomic_file(path) as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_directory_is_swapped_whole_and_crash_leftovers_are_removed(tmp_path):
    (tmp_path / ".tmp-crashed").mkdir()
    target = tmp_path / "step-1"
    for text in ("first", "second"):
        with _atomic.atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text(text)
    assert (target / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1"]


def test_round_trip_is_exact_and_keeps_the_newest(tmp_path):
    state = {"w": jax.random.normal(jax.random.key(0), (3,)), "i": jnp.asarray(7, jnp.int32)}
    for step in (1, 2, 3):
        checkpoints.save_checkpoint(tmp_path, step, state, {"note": "x"}, keep=2)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step-000000002", "step-000000003"]
    loaded, manifest = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(tmp_path), state)
    np.testing.assert_array_equal(loaded["w"], state["w"])
    assert manifest["step"] == 3 and manifest["format"] == checkpoints.FORMAT


def test_multi_process_runs_are_refused_before_writing(tmp_path, monkeypatch):
    """No multi-host checkpoints: one process cannot write arrays other processes hold."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="checkpoint_dir=None"):
        checkpoints.save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("keep", [0, -1, 1.5, True])
def test_bad_keep_raises(tmp_path, keep):
    with pytest.raises(ValueError, match="keep"):
        checkpoints.save_checkpoint(tmp_path, 1, {"w": jnp.ones(2)}, {}, keep=keep)
