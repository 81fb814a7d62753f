"""Torch weight files written without torch, for the readers' tests and their fuzz benchmark:
stand-in ``torch`` modules let pickle name the globals torch writes (``torch._utils._rebuild_tensor_v2``,
``torch.FloatStorage``), then the legacy and zip layouts are assembled as torch.save writes them."""

import collections
import dataclasses
import io
import pickle
import struct
import types

import numpy as np


@dataclasses.dataclass
class FakeTorch:
    rebuild: object
    storage_types: dict
    modules: dict


def fake_torch_modules() -> FakeTorch:
    """The stand-in modules (install them in ``sys.modules`` while pickling)."""
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
    return FakeTorch(_rebuild_tensor_v2, storages, {"torch": torch, "torch._utils": utils})


def legacy_file(fake: FakeTorch, tensors: dict, storages: dict) -> bytes:
    """``{name: (storage key, offset, size, stride)}`` over ``{key: 1-d array}`` in the legacy format."""
    rebuild, storage_types = fake.rebuild, fake.storage_types

    class Storage:
        def __init__(self, key, arr):
            self.key, self.arr = key, arr

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (rebuild, self.args)

    st = {k: Storage(k, a) for k, a in storages.items()}
    state = collections.OrderedDict(
        (n, Tensor(st[k], off, size, stride)) for n, (k, off, size, stride) in tensors.items()
    )

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


def zip_file(fake: FakeTorch, tensors: dict, storages: dict) -> bytes:
    """A zip-format torch file: archive/data.pkl + archive/data/<key>, as torch.save writes it."""
    import zipfile

    legacy = legacy_file(fake, tensors, storages)
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
