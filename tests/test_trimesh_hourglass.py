"""The stacked hourglass (trimesh_decode.hourglass): shapes, sizes, widening, residual output."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trimesh_decode.hourglass import CHANNEL_SETS, StackedHourglass, depth_to_space, select_channels, space_to_depth

REPO = Path(__file__).resolve().parents[1]


def test_space_to_depth_and_back_are_inverse_and_move_blocks():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 4, 4, 12)
    # the first output pixel holds the top-left 2x2 block, row by row
    np.testing.assert_array_equal(y[0, 0, 0].reshape(2, 2, 3), x[0, :2, :2])
    np.testing.assert_array_equal(depth_to_space(y, 2), x)
    np.testing.assert_array_equal(space_to_depth(depth_to_space(y, 2), 2), y)


@pytest.mark.parametrize("stacks", [1, 3])
def test_stacked_hourglass_gives_one_256_image_per_stack(stacks):
    m = StackedHourglass(width=16, stacks=stacks, depth=4)
    x = jnp.zeros((1, 256, 256, 8))
    v = jax.eval_shape(lambda: m.init(jax.random.key(0), x))
    out = jax.eval_shape(lambda v: m.apply(v, x), v)
    assert [o.shape for o in out] == [(1, 256, 256, 3)] * stacks
    names = set(v["params"])
    assert {"stem1", "stem2", *(f"hourglass{s}" for s in range(stacks)), *(f"head{s}" for s in range(stacks))} == names


def test_mobile_model_is_phone_sized_and_paper_model_is_wider():
    def count(width):
        m = StackedHourglass(width=width, stacks=2)
        v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 64, 8))))
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))

    mobile, paper = count(64), count(256)
    assert 4 * mobile * 4 > paper > 8 * mobile  # convs scale with width squared
    assert mobile * 2 < 10e6  # float16 weights under 10 MB


def test_widening_computes_the_same_function_and_the_copies_train_apart():
    """model.widen: a 32-filter network as a 48-filter one (uneven: some channels get two copies,
    some one) gives the same images in both BatchNorm modes; each weight is shared out between the
    copies of its input channel (the parts sum to it and differ), so the copies get different gradients."""
    from trimesh_decode.hourglass import _channel_map, widen

    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 8))
    small, big = (StackedHourglass(width=w, stacks=2, depth=2, output="residual") for w in (32, 48))
    v = jax.jit(lambda r: small.init(r, x, interp=x[..., 2:5]))(jax.random.key(0))
    rng = np.random.default_rng(2)
    v = jax.tree.map(
        lambda a: np.asarray(a) + 0.1 * rng.standard_normal(a.shape, np.float32), v
    )  # nothing trivially 0 or 1
    v["batch_stats"] = jax.tree.map(np.abs, v["batch_stats"])
    wide = widen(v, 32, 48)
    for train in (False, True):
        run = lambda m, w: m.apply(w, x, interp=x[..., 2:5], train=train, mutable=["batch_stats"])[0]  # noqa: E731
        a, b = jax.jit(functools.partial(run, small))(v), jax.jit(functools.partial(run, big))(wide)
        for p, q in zip(a, b):
            np.testing.assert_allclose(np.asarray(q), np.asarray(p), atol=1e-4)
    k_old = np.asarray(v["params"]["hourglass0"]["skip1"]["Conv_0"]["kernel"])
    k_new = wide["params"]["hourglass0"]["skip1"]["Conv_0"]["kernel"]
    assert k_new.shape == (3, 3, 48, 48)
    # copies stay in their DepthToSpace(4) run: old channel 0 of the run of 2 is new 0 and 2 of the run of 3
    copies = np.flatnonzero(_channel_map(48, 32, 16) == 0)
    assert copies.tolist() == [0, 2]
    np.testing.assert_allclose(sum(k_new[:, :, c, 0] for c in copies), k_old[:, :, 0, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(k_new[:, :, 0, 0], k_new[:, :, 2, 0])

    def loss(params):
        out, _ = big.apply(
            {"params": params, "batch_stats": wide["batch_stats"]},
            x,
            interp=x[..., 2:5],
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean(jnp.square(out[-1] - 0.5))

    g = jax.jit(jax.grad(loss))(jax.tree.map(jnp.asarray, wide["params"]))["hourglass0"]["skip1"]["Conv_0"]["kernel"]
    assert not np.allclose(np.asarray(g[..., 0]), np.asarray(g[..., 2]))  # output copies get different gradients
    with pytest.raises(ValueError, match="multiples of 16"):
        widen(v, 32, 40)


def test_input_side_must_fit_the_hourglass():
    m = StackedHourglass(width=16, stacks=1, depth=4)
    with pytest.raises(ValueError, match="multiple of 64"):
        m.init(jax.random.key(0), jnp.zeros((1, 96, 96, 8)))


def test_residual_output_starts_near_the_interpolation_and_channel_sets():
    interp = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3))
    m = StackedHourglass(width=16, stacks=1, depth=2, output="residual")
    v = jax.jit(lambda r: m.init(r, jnp.zeros((1, 64, 64, 8)), interp=interp))(jax.random.key(0))
    v = {"params": jax.tree.map(jnp.zeros_like, v["params"]), "batch_stats": v["batch_stats"]}
    out = jax.jit(lambda v: m.apply(v, jnp.ones((1, 64, 64, 8)), interp=interp))(v)[-1]
    np.testing.assert_allclose(out, interp, atol=1e-6)  # a zero network adds nothing
    ch = jnp.arange(8.0).reshape(1, 1, 1, 8)
    assert select_channels(ch, "interp_only").ravel().tolist() == [2, 3, 4]
    assert select_channels(ch, "no_interp").ravel().tolist() == list(CHANNEL_SETS["no_interp"])
    with pytest.raises(ValueError, match="unknown channel set"):
        select_channels(ch, "rgb")
