"""jpegedit.losses: each term of the objective and the fitted bit estimate against real files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_helpers import jpeg_batch, jpeg_config, photos

from jpegedit import codec, losses, task


def test_each_loss_term():
    tables = jnp.stack([jnp.full((8, 8), 2.0), jnp.full((8, 8), 4.0)])
    assert float(losses.table_rate(tables)) == pytest.approx(64 / 2 + 64 / 4)
    a = (jnp.full((2, 3, 8, 8), 0.25), jnp.full((2, 3, 8, 8), 0.5))
    assert float(losses.attention_rate(*a)) == pytest.approx(0.75)
    assert float(losses.attention_rate(None, None)) == 0.0
    x = jnp.zeros((2, 32, 32, 3))
    y = x + 3.0
    d = losses.distortion(x, y, gamma=0.0)
    assert float(d["mse"]) == pytest.approx(9.0) and float(d["lpips"]) == 0.0
    d = losses.distortion(x, y + jnp.arange(32.0)[:, None, None], gamma=1.0)
    assert float(d["lpips"]) > 0
    total, terms = losses.objective(x, y, tables, a, lam=0.1, alpha=10.0, beta=2.0, gamma=0.0)
    assert float(terms["distortion_term"]) == pytest.approx(0.9)
    assert float(terms["rate_term"]) == pytest.approx(10 * 48 + 2 * 0.75)
    assert float(total) == pytest.approx(0.9 + 480 + 1.5)


def test_the_bit_estimate_is_within_a_few_percent_of_real_files_at_every_rate():
    from jpegedit import jpegfile

    for name in ("astronaut", "coffee", "chelsea"):
        image = jnp.asarray(photos()[name], jnp.float32)
        for q in (1, 5, 10, 25, 50, 75):
            t = codec.quality_to_tables(q)
            real = 8 * len(jpegfile.write(codec.encode(image, t, rounding="hard"), t))
            est = float(losses.estimated_bits(codec.encode(image, t, rounding="none").components))
            assert abs(est - real) / real < 0.08, (name, q, est, real)


def test_the_bit_estimate_counts_the_rounded_coefficients():
    y = (
        jnp.zeros((1, 2, 8, 8))
        .at[0, 0, 0, 1]
        .set(2.6)
        .at[0, 0, 1, 0]
        .set(-0.4)
        .at[0, 1, 0, 0]
        .set(5.2)
        .at[0, 1, 2, 2]
        .set(0.5)
    )
    w = losses.BITS_WEIGHTS
    # block 0: one nonzero AC (3), DC 0; block 1: DC 5 (difference 5) and one AC (1: ties away from zero)
    want = (
        w["nonzero"] * 2 + w["log"] * (np.log2(4) + np.log2(2)) + w["dc_log"] * np.log2(6) + 2 * w["block"] + w["file"]
    )
    assert float(losses.estimated_bits([y])) == pytest.approx(want, rel=1e-5)
    # leading axes are images: one estimate each
    assert losses.estimated_bits([jnp.stack([y, 2 * y])]).shape == (2,)


def test_the_bit_estimate_pushes_kept_and_threshold_coefficients_hardest():
    y = jnp.zeros((1, 1, 8, 8)).at[0, 0, 0, 1].set(3.0).at[0, 0, 0, 2].set(0.05).at[0, 0, 0, 3].set(0.55)
    g = np.asarray(jax.grad(lambda v: losses.estimated_bits([v]))(y))[0, 0, 0]
    assert g[1] > 0  # a kept coefficient: fewer magnitude bits if smaller
    assert g[3] > g[1]  # at the threshold: dropping it saves a whole code
    assert 0 <= g[2] < 0.25 * g[3]  # far below the threshold it is free: only the smooth step's tail


def test_the_bits_rate_mode_makes_the_estimated_bpp_the_rate_term():
    image = jnp.asarray(photos()["astronaut"][:64, :64], jnp.float32)[None]
    tables = jnp.asarray(codec.quality_to_tables(20), jnp.float32)
    un = codec.encode(image, tables, rounding="none")
    decoded = codec.decode(jax.tree.map(lambda c: codec.round_with(c, "hard"), un), tables)
    total, terms = losses.objective(image, decoded, tables, None, lam=0.01, rate="bits", unrounded=un.components)
    assert float(terms["rate_term"]) == pytest.approx(float(losses.estimated_bits(un.components)[0]) / 64**2)
    assert float(total) == pytest.approx(0.01 * float(terms["mse"]) + float(terms["rate_term"]), rel=1e-6)
    with pytest.raises(ValueError, match="unrounded"):
        losses.objective(image, decoded, tables, None, lam=0.01, rate="bits")
    with pytest.raises(ValueError, match="rate must be one of"):
        losses.objective(image, decoded, tables, None, lam=0.01, rate="entropy")


def test_training_on_the_bit_estimate_trades_bits_for_distortion_with_lambda():
    out = {}
    for lam in (3e-4, 1e-2):
        config = jpeg_config(attention=False, lam=lam)
        config.loss.rate = "bits"
        config.optim.lr = 3e-4
        t = task.make_task(config)
        state = t.init(jax.random.key(0))
        step = jax.jit(t.train_step)
        for _ in range(30):
            state, m = step(state, jpeg_batch(), jax.random.key(0))
        out[lam] = m
    assert float(out[3e-4]["bpp_estimate"]) < float(out[1e-2]["bpp_estimate"])
    assert float(out[3e-4]["mse"]) > float(out[1e-2]["mse"])
    config.chroma = "420"
    with pytest.raises(ValueError, match="4:4:4"):
        task.make_task(config)
