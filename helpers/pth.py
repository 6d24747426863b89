"""Read PyTorch's legacy ``.pth`` state dicts with numpy alone, safely.

A legacy (non-zip) ``torch.save`` file is five things back to back:

1. a pickle of a magic number,
2. a pickle of the protocol version,
3. a pickle of system information (endianness, type sizes),
4. the state dict itself, pickled, whose tensors point at storages through
   *persistent ids* ``('storage', StorageType, key, location, numel, view)``,
5. a pickle of the storage keys, then for each key its raw bytes, preceded by
   an int64 element count.

Python's ``pickle`` can run arbitrary code: a ``GLOBAL`` opcode imports any
callable and ``REDUCE`` calls it. So the unpickler below resolves only the
four globals a state dict needs and refuses every other one *before*
anything is imported or called. A hostile file raises ``UnsafePickleError``.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct

import numpy as np

__all__ = ["UnsafePickleError", "PthFormatError", "load_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
SUPPORTED_PROTOCOL = 1001

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


class UnsafePickleError(pickle.UnpicklingError):
    """The file asks for a Python object that a state dict never needs."""


class PthFormatError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


class _StorageType:
    """Stands for ``torch.FloatStorage`` and friends: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    """A tensor whose storage bytes come later in the file."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise PthFormatError("a tensor refers to a storage whose bytes are missing")
        if not self.size:
            return flat[self.offset].copy()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if min(self.size) > 0 and (last >= flat.size or min(self.stride) < 0):
            raise PthFormatError("a tensor reaches outside its storage")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:],
            shape=self.size,
            strides=[s * itemsize for s in self.stride],
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals listed above; everything else is refused."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load '{module}.{name}': a PyTorch state dict only "
                "needs OrderedDict, tensors and storages, so this file is either "
                "not a plain state dict or has been tampered with"
            ) from None

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id:
            raise PthFormatError(f"unexpected persistent id {saved_id!r}")
        if saved_id[0] != "storage" or len(saved_id) != 6:
            raise PthFormatError(f"unsupported persistent id kind {saved_id[0]!r}")
        _, storage_type, key, _location, numel, view_metadata = saved_id
        if not isinstance(storage_type, _StorageType):
            raise PthFormatError("a storage has no known element type")
        if view_metadata is not None:
            raise PthFormatError("storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, int(numel))
        return self._storages[key]


def _read_exact(f, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PthFormatError(f"the file ends early while reading {what}")
    return data


def load_state_dict(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a legacy ``.pth`` state dict into numpy arrays without torch.

    Refuses (``UnsafePickleError``) any file whose pickle names a callable
    other than the few a state dict needs, so loading cannot run code.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    storages: dict = {}
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise PthFormatError(
                f"{path!r} is a zip-format checkpoint; only the legacy format is supported")
        f.seek(0)
        try:
            magic = _RestrictedUnpickler(f, storages).load()
            if magic != LEGACY_MAGIC_NUMBER:
                raise PthFormatError(f"{path!r} is not a legacy PyTorch file (bad magic number)")
            protocol = _RestrictedUnpickler(f, storages).load()
            if protocol != SUPPORTED_PROTOCOL:
                raise PthFormatError(f"unsupported PyTorch protocol version {protocol!r}")
            sys_info = _RestrictedUnpickler(f, storages).load()
            if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
                raise PthFormatError("only little-endian files are supported")
            state = _RestrictedUnpickler(f, storages).load()
            keys = _RestrictedUnpickler(f, storages).load()
        except (UnsafePickleError, PthFormatError):
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
                IndexError, KeyError) as error:
            raise PthFormatError(f"{path!r} is not a readable PyTorch state dict: {error}") from None
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise PthFormatError(f"{path!r} does not hold a state dict")
        for key in keys:
            if key not in storages:
                raise PthFormatError(f"storage {key!r} is listed but never used")
            storage = storages[key]
            (numel,) = struct.unpack("<q", _read_exact(f, 8, "a storage size"))
            if numel != storage.numel:
                raise PthFormatError(f"storage {key!r} has {numel} elements, expected {storage.numel}")
            raw = _read_exact(f, numel * storage.dtype.itemsize, f"storage {key!r}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise PthFormatError(f"entry {name!r} is not a tensor")
        arrays[name] = value.materialise()
    return arrays
