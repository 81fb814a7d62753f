"""jpegedit.network: the attention net on the frozen VGG16, the learnable tables, their projection and export."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jpeg_helpers import jpeg_config, photos

from jpegedit import codec, network, task


def test_attention_net_gives_two_8x8_maps_per_block_in_0_1():
    net = network.AttentionNet()
    x = jnp.asarray(photos()["chelsea"][:40, :64], jnp.float32)[None]
    params = jax.jit(net.init)(jax.random.key(0), x)["params"]
    assert set(params) == {"backbone", "head"}
    assert params["head"]["Conv_0" if "Conv_0" in params["head"] else "kernel"].shape[-1] == 128
    a_l, a_c = jax.jit(net.apply)({"params": params}, x)
    assert a_l.shape == a_c.shape == (1, 5, 8, 8, 8)
    assert float(a_l.min()) > 0 and float(a_l.max()) < 1
    # odd sizes: one map per block of the padded image (the codec's block grid)
    a_l, _ = jax.jit(net.apply)({"params": params}, jnp.zeros((1, 41, 65, 3)))
    assert a_l.shape[1:3] == (6, 9)


def test_the_backbone_is_the_pretrained_vgg16_up_to_conv3_3():
    b = network.pretrained_backbone()
    assert sorted(b) == [f"Conv_{i}" for i in range(7)]
    assert b["Conv_6"]["kernel"].shape == (3, 3, 256, 256)
    params, _ = task.init_params(jpeg_config(), jax.random.key(0))
    np.testing.assert_array_equal(params["net"]["backbone"]["Conv_0"]["kernel"], b["Conv_0"]["kernel"])


def test_the_lite0_backbone_gives_176_features_per_block_at_any_size():
    net = network.AttentionNet(backbone="lite0")
    x = jnp.asarray(photos()["chelsea"][:41, :65], jnp.float32)[None]  # padded to 48x72: 6x9 blocks
    params = jax.jit(net.init)(jax.random.key(0), x)["params"]
    params = {**params, "backbone": network.pretrained_backbone("lite0")}
    feats = jax.jit(lambda p, x: net.apply({"params": p}, x, features_only=True))(params, x)
    assert feats.shape == (1, 6, 9, 176) and bool(jnp.all(jnp.isfinite(feats)))
    assert params["head"]["kernel"].shape == (1, 1, 176, 128)
    a_l, a_c = jax.jit(net.apply)({"params": params}, x)
    assert a_l.shape == a_c.shape == (1, 6, 9, 8, 8)
    # the pretrained stack is the classifier's (batch norm folded), up to the end of its stride-16 stage
    assert sorted(network.pretrained_backbone("lite0")) == sorted(["conv_stem"] + [f"blocks_{b}" for b in range(11)])
    with pytest.raises(ValueError, match="backbone must be one of"):
        network.AttentionNet(backbone="resnet").init(jax.random.key(0), x)


def test_attention_of_ones_is_the_plain_codec():
    x = jnp.asarray(photos()["noise_37x53"][:32, :48], jnp.float32)
    t = codec.quality_to_tables(60)
    ones = jnp.ones((4, 6, 8, 8))
    a = codec.encode(x, t, rounding="hard")
    b = codec.encode(x, t, rounding="hard", scales=(ones, ones))
    for u, v in zip(a.components, b.components):
        np.testing.assert_array_equal(u, v)
    zero = codec.encode(x, t, rounding="hard", scales=(jnp.zeros_like(ones), ones))
    assert float(jnp.abs(zero.y).max()) == 0 and float(jnp.abs(zero.cb).max()) > 0


def test_tables_start_in_1_2_and_the_projection_keeps_them_in_1_255():
    q = network.init_tables(jax.random.key(1))
    t = network.tables_from_params(q)
    assert float(t.min()) >= 1.0 and float(t.max()) <= 2.0
    tx = optax.chain(optax.sgd(1.0), network.project_tables())
    params = {"q": q, "other": jnp.ones(3)}
    state = tx.init(params)
    grads = {"q": jnp.full_like(q, 1.0).at[0, 0, 0].set(-1.0), "other": jnp.ones(3)}  # push most down, one up
    updates, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    nt = network.tables_from_params(new["q"])
    assert float(nt.min()) == pytest.approx(1.0) and float(nt.max()) == pytest.approx(255.0)
    np.testing.assert_allclose(new["other"], 0.0)  # other parameters are not projected


def test_export_rounds_and_clips_to_baseline_tables():
    q = jnp.asarray(np.array([0.2, 1.4, 1.6, 37.5, 254.6, 400.0]) * network.TABLE_SCALE)
    np.testing.assert_array_equal(network.export_tables(q), [1, 1, 2, 38, 255, 255])


def test_the_vgg19_backbone_reads_its_weights_from_a_file_the_user_gives(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py (the test extra) writes the Keras-layout file")
    from compat.weights import VGG19_KERAS_LAYERS

    rng = np.random.default_rng(0)
    chans = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
    path = tmp_path / "vgg19_notop.h5"
    kernels, c_in = [], 3
    with h5py.File(path, "w") as f:
        for name, c in zip(VGG19_KERAS_LAYERS, chans):
            k = (rng.normal(size=(3, 3, c_in, c)) * 0.05).astype(np.float32)
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_group(name)
            g[name]["kernel:0"] = k
            g[name]["bias:0"] = np.zeros(c, np.float32)
            kernels.append(k)
            c_in = c
    config = jpeg_config(attention=True)
    config.model.backbone, config.model.backbone_weights = "vgg19", str(path)
    params, net = task.init_params(config, jax.random.key(0))
    assert sorted(params["net"]["backbone"]) == [f"Conv_{i}" for i in range(8)]  # conv1_1 .. conv3_4
    np.testing.assert_array_equal(params["net"]["backbone"]["Conv_7"]["kernel"], kernels[7])
    a_l, a_c = jax.jit(net.apply)({"params": params["net"]}, jnp.zeros((1, 32, 32, 3)))
    assert a_l.shape == (1, 4, 4, 8, 8)
    config.model.backbone_weights = ""
    with pytest.raises(ValueError, match="backbone_weights"):
        task.init_params(config, jax.random.key(0))
