"""trimesh_decode.decoding: the symmetries of the square and equivariant averaging."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_8_symmetries_are_distinct_and_each_is_undone_by_its_inverse():
    from trimesh_decode.decoding import dihedral

    x = jnp.asarray(np.random.default_rng(0).random((2, 16, 16, 3), np.float32))
    turned = [np.asarray(dihedral(x, k)) for k in range(8)]
    assert len({t.tobytes() for t in turned}) == 8
    for k, t in enumerate(turned):
        np.testing.assert_array_equal(dihedral(jnp.asarray(t), k, inverse=True), x)


def test_decodings_averaged_over_a_subgroup_of_symmetries_are_equivariant_to_it_and_only_to_it():
    from trimesh_decode.decoding import decode_channels, dihedral

    rng = np.random.default_rng(1)
    ramp = jnp.asarray(rng.random((1, 16, 16, 1), np.float32))  # a decoder that knows where it is

    def apply(x, interp):
        return interp * ramp + 0.3 * jnp.roll(x[..., :3], 1, axis=2)

    x = jnp.asarray(rng.random((2, 16, 16, 8), np.float32))
    np.testing.assert_allclose(decode_channels(apply, x), jnp.clip(apply(x, x[..., 2:5]), 0, 1), atol=1e-6)
    for symmetries in (1, 2, 4, 8):
        y = decode_channels(apply, x, symmetries)
        for k in range(8):
            d = float(jnp.abs(decode_channels(apply, dihedral(x, k), symmetries) - dihedral(y, k)).max())
            if k < symmetries:
                assert d < 1e-5, (symmetries, k)
            else:
                assert d > 1e-2, (symmetries, k)
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8, got 3"):
        decode_channels(apply, x, 3)
