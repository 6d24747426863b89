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

A broken or hostile file must not exhaust memory or crash the interpreter
either, and pickle alone allows both: ``BINBYTES8`` allocates the length it
declares before reading, ``LONG_BINPUT 2**32-1`` grows the memo to tens of
gigabytes, and a megabyte of ``TUPLE1`` opcodes builds a tuple nested a
million deep whose hash overflows the C stack (a segmentation fault). So
each pickle record is first walked opcode by opcode without building
anything (:func:`_check_record`): every length must fit in the bytes that
follow, memo indices must be ones the record could have filled, nesting and
opcode counts are bounded, and opcodes a state dict never uses are refused.
Storage sizes, tensor shapes, strides and offsets are then checked against
the bytes the file really holds before any array is made; the file is read
as it goes, never whole. Every problem ends in a :class:`PthError`
(``PthFormatError`` or ``UnsafePickleError``) that says what is wrong;
``tests/test_pth.py`` fuzzes the reader to keep it that way.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct

import numpy as np

__all__ = ["PthError", "UnsafePickleError", "PthFormatError", "load_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
SUPPORTED_PROTOCOL = 1001

# EfficientNet-Lite0's state dict is 11,327 opcodes (296 tensors); this allows
# ~20x that, while a hostile record is refused within about a second.
MAX_PICKLE_OPCODES = 250_000
# Real state dicts nest 4 deep; tuple hashing recurses in C without a
# guard, so a deep tuple would crash the interpreter rather than raise.
MAX_NESTING = 64
MAX_RECORD_BYTES = 16 * 2 ** 20  # EfficientNet-Lite0's state dict pickle is 47 kB
MAX_DIMENSIONS = 32  # numpy's limit is 64; no state dict tensor comes near either
MAX_EXTENT = 2 ** 48  # any size, stride or offset beyond this cannot index a real storage

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

_RECORDS = ("the magic number", "the protocol version", "the system information",
            "the state dict", "the list of storage keys")


class PthError(Exception):
    """Base of every error this reader raises for a file it will not load."""


class UnsafePickleError(PthError, pickle.UnpicklingError):
    """The file asks for a Python object that a state dict never needs."""


class PthFormatError(PthError, ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


def _describe(value) -> str:
    """A short description of a value from the file, safe to put in a message.

    ``repr`` is not: a shared structure's repr grows exponentially, and an
    integer of more than 4300 digits refuses to print at all.
    """
    if isinstance(value, (str, bytes)):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    return f"a {type(value).__name__}"


def _error_text(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # str() of an error holding a file's value can itself fail
        text = ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------------------
# Walking a pickle record before unpickling it
# ---------------------------------------------------------------------------

# Opcodes that build objects through classes or registries, or read
# out-of-band data: a state dict written by torch uses none of them.
_REFUSED_OPCODES = {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4",
                    "PERSID", "NEXT_BUFFER", "READONLY_BUFFER"}
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_EMPTY_CONTAINERS = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"}
_ATOM_RESULTS = {"BINPERSID", "STACK_GLOBAL"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_ATOM = -1  # numbers, strings, globals, storages: values that never hold anything


class _Nesting:
    """How deep each value of a walked record nests, and which containers hold it.

    Values are numbered rather than modelled as objects, so that a hostile
    record of many values does not make the garbage collector rescan them
    over and over. The holders let a container that grows after it was put
    in another (through a memo reference) deepen everything that holds it.
    """

    def __init__(self):
        self.depths: list[int] = []
        self.holders: dict[int, int | list[int]] = {}  # one holder is the common case

    def new(self) -> int:
        self.depths.append(1)
        return len(self.depths) - 1

    def hold(self, container: int, items, where: "_Where") -> None:
        for item in items:
            if item == _ATOM:
                continue
            known = self.holders.get(item)
            if known is None:
                self.holders[item] = container
            elif isinstance(known, int):
                self.holders[item] = [known, container]
            else:
                known.append(container)
            self._deepen(container, self.depths[item] + 1, where)

    def _deepen(self, value: int, depth: int, where: "_Where") -> None:
        pending = [(value, depth)]
        while pending:  # each depth only rises, and at most to MAX_NESTING: bounded work
            value, depth = pending.pop()
            if depth <= self.depths[value]:
                continue
            if depth > MAX_NESTING:
                raise PthFormatError(
                    f"{where} nests values more than {MAX_NESTING} levels deep (or inside "
                    "themselves); a state dict nests 4")
            self.depths[value] = depth
            holders = self.holders.get(value, ())
            for holder in (holders,) if isinstance(holders, int) else holders:
                pending.append((holder, depth + 1))


class _Window:
    """A file seen up to ``limit``: no read may ask for more bytes than are there.

    ``BufferedReader.read(n)`` allocates ``n`` bytes before reading, so a
    length field of 2**62 handed straight to it would be a MemoryError.
    """

    def __init__(self, file, limit: int):
        self.file = file
        self.limit = limit

    def _room(self, n) -> int:
        room = max(self.limit - self.file.tell(), 0)
        return room if n is None or n < 0 else min(n, room)

    def read(self, n=-1) -> bytes:
        return self.file.read(self._room(n))

    def readline(self, n=-1) -> bytes:
        return self.file.readline(self._room(n))

    def tell(self) -> int:
        return self.file.tell()


class _Where:
    """Names an opcode in messages; formatted only when a message is raised."""

    __slots__ = ("what", "name", "position")

    def __init__(self, what: str, name: str, position: int):
        self.what, self.name, self.position = what, name, position

    def __str__(self) -> str:
        return f"{self.what} (opcode {self.name} at byte {self.position})"


def _check_record(file, size: int, what: str) -> int:
    """Walk the pickle record at ``file``'s position without building it; return its end.

    Simulates the unpickler's stack with numbered placeholders, so the record
    is refused before the real unpickler allocates anything it declares.
    """
    start = file.tell()
    limit = min(size, start + MAX_RECORD_BYTES)
    stream = _Window(file, limit)
    nesting = _Nesting()
    stack: list[int] = []
    marks: list[int] = []  # stack heights at each MARK, as the C unpickler keeps them
    memo: dict[int, int] = {}
    frame_end = start
    opcodes = 0
    try:
        for opcode, arg, position in pickletools.genops(stream):
            opcodes += 1
            if opcodes > MAX_PICKLE_OPCODES:
                raise PthFormatError(
                    f"{what} has more than {MAX_PICKLE_OPCODES:,} pickle opcodes; "
                    f"EfficientNet-Lite0's 296 tensors take 11,327")
            name = opcode.name
            where = _Where(what, name, position)
            if name in _REFUSED_OPCODES:
                raise UnsafePickleError(
                    f"refusing {where}: a PyTorch state dict never uses this opcode")
            if name == "FRAME":
                frame_end = stream.tell() + arg
                if frame_end > size:
                    raise PthFormatError(
                        f"{where} declares a frame of {arg:,} bytes; only "
                        f"{size - stream.tell():,} remain in the file")
                continue
            floor = marks[-1] if marks else 0
            if name in _PUTS:
                if arg < 0 or arg > opcodes:
                    raise PthFormatError(
                        f"{where} stores memo entry {_describe(arg)}, beyond the {opcodes} "
                        "entries this record could have filled")
                if len(stack) <= floor:
                    raise PthFormatError(f"{where} has nothing on the stack to store")
                memo[arg] = stack[-1]
                continue
            if name in _GETS:
                if arg not in memo:
                    raise PthFormatError(f"{where} reads memo entry {_describe(arg)}, never stored")
                stack.append(memo[arg])
                continue
            if name == "MARK":
                marks.append(len(stack))
                continue
            before = opcode.stack_before
            marked = pickletools.markobject in before
            if marked:
                if not marks:
                    raise PthFormatError(f"{where} needs a MARK and there is none")
                items = stack[marks[-1]:]
                del stack[marks.pop():]
                fixed = before.index(pickletools.markobject)  # values below the MARK
                floor = marks[-1] if marks else 0
            else:
                items = []
                fixed = len(before)
            if len(stack) - floor < fixed:
                raise PthFormatError(f"{where} finds too few values on the stack")
            popped = stack[len(stack) - fixed:] + items
            del stack[len(stack) - fixed:]
            if name == "STOP":
                break
            if name in _MUTATORS:
                target = popped[0]
                if target == _ATOM:
                    raise PthFormatError(f"{where} adds items to a value that cannot hold any")
                nesting.hold(target, popped[1:], where)
                stack.append(target)
            elif name == "DUP":
                stack.extend(popped * 2)
            elif name == "MEMOIZE":
                memo[len(memo)] = popped[0]
                stack.extend(popped)
            elif opcode.stack_after:
                # Scalars, globals and storages never hold anything; every other
                # new value is a container (or a call's result) that might.
                if name in _ATOM_RESULTS or not (popped or marked or name in _EMPTY_CONTAINERS):
                    stack.append(_ATOM)
                else:
                    value = nesting.new()
                    nesting.hold(value, popped, where)
                    stack.append(value)
    except PthError:
        raise
    except (ValueError, EOFError, OverflowError, struct.error) as error:
        if stream.tell() >= size:
            raise PthFormatError(
                f"the file ends early, inside {what} ({_error_text(error)})") from None
        if stream.tell() >= limit:
            raise PthFormatError(
                f"{what} is larger than {MAX_RECORD_BYTES // 2 ** 20} MiB; a state dict's "
                "pickle is a few hundred kB at most") from None
        raise PthFormatError(f"{what} is not a valid pickle: {_error_text(error)}") from None
    end = stream.tell()
    if frame_end > end:
        raise PthFormatError(f"{what} declares a pickle frame that runs past its end")
    return end


# ---------------------------------------------------------------------------
# The objects a state dict's pickle may build
# ---------------------------------------------------------------------------

class _Stateless:
    """Refuses pickle's BUILD, which would otherwise set any attribute on it.

    The storage types and rebuild functions are shared by every load, so a
    file that could set their attributes would change how later files load.
    """

    __slots__ = ()
    kind = "value"

    def __setstate__(self, state):
        raise PthFormatError(f"the file tries to set attributes on a {self.kind}, "
                             "which no state dict does")


class _StorageType(_Stateless):
    """Stands for ``torch.FloatStorage`` and friends: only its dtype matters."""

    __slots__ = ("name", "dtype")
    kind = "storage type"

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage(_Stateless):
    """One storage: its declared type and length, and its bytes once read."""

    __slots__ = ("key", "dtype", "numel", "data")
    kind = "storage"

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


def _extent(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EXTENT:
        raise PthFormatError(f"{what} must be a whole number in 0..2**48, not {_describe(value)}")
    return value


class _TensorRef(_Stateless):
    """A tensor whose storage bytes come later in the file."""

    __slots__ = ("storage", "offset", "size", "stride")
    kind = "tensor"

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise PthFormatError(f"a tensor's storage is {_describe(storage)}, not a storage record")
        for shape, what in ((size, "size"), (stride, "stride")):
            if not isinstance(shape, (tuple, list)):
                raise PthFormatError(f"a tensor's {what} must be a tuple, not {_describe(shape)}")
            if len(shape) > MAX_DIMENSIONS:
                raise PthFormatError(f"a tensor's {what} has {len(shape)} dimensions; at most "
                                     f"{MAX_DIMENSIONS} are supported")
        if len(size) != len(stride):
            raise PthFormatError(f"a tensor has {len(size)} sizes but {len(stride)} strides")
        self.storage = storage
        self.offset = _extent(offset, "a tensor's storage offset")
        self.size = tuple(_extent(n, "a tensor size") for n in size)
        self.stride = tuple(_extent(s, "a tensor stride") for s in stride)
        if any(s == 0 for n, s in zip(self.size, self.stride) if n > 1):
            raise PthFormatError(
                f"a tensor of size {self.size} has a zero stride {self.stride}: it would repeat "
                "elements the file does not hold")

    def materialise(self, budget: list) -> np.ndarray:
        """The tensor as an array; copies (non-contiguous views) are charged to ``budget``."""
        flat = self.storage.data
        if flat is None:
            raise PthFormatError(
                f"a tensor refers to storage {_describe(self.storage.key)}, whose bytes are missing")
        count = math.prod(self.size)
        if count == 0:
            if math.prod(n for n in self.size if n) > MAX_EXTENT:
                raise PthFormatError(f"an empty tensor of size {self.size} is too large to describe")
            return np.empty(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.size or count > flat.size:
            raise PthFormatError(
                f"a tensor of size {self.size}, stride {self.stride} and offset {self.offset} "
                f"reaches beyond its storage of {flat.size:,} elements")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=[s * itemsize for s in self.stride], writeable=False)
        if view.flags.c_contiguous:
            return view
        # Overlapping strides let a small storage describe a huge tensor, and many
        # tensors may share one storage: copies may not exceed the file's own bytes.
        budget[0] -= view.nbytes
        if budget[0] < 0:
            raise PthFormatError(
                "the tensors' strided views together need more memory than the file's "
                "storages hold")
        return np.ascontiguousarray(view)


class _Rebuild(_Stateless):
    """``torch._utils._rebuild_tensor(_v2)``: makes a tensor reference, and nothing else."""

    __slots__ = ()
    kind = "tensor-rebuilding function"

    def __call__(self, storage, storage_offset, size, stride, *_flags_and_hooks):
        if len(_flags_and_hooks) > 3:
            raise PthFormatError(f"a tensor has {4 + len(_flags_and_hooks)} fields, at most 7 exist")
        return _TensorRef(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Rebuild(),
    ("torch._utils", "_rebuild_tensor"): _Rebuild(),
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals listed above; everything else is refused."""

    def __init__(self, file, storages: dict, file_size: int):
        super().__init__(file)
        self._storages = storages
        self._file_size = file_size

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to load '{str(module)[:80]}.{str(name)[:80]}': a PyTorch state dict "
                "only needs OrderedDict, tensors and storages, so this file is either not a "
                "plain state dict or has been tampered with") from None

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id:
            raise PthFormatError(f"unexpected persistent id {_describe(saved_id)}")
        if saved_id[0] != "storage" or len(saved_id) != 6:
            raise PthFormatError(
                f"unsupported persistent id {_describe(saved_id[0])} with {len(saved_id)} fields; "
                "expected ('storage', type, key, location, size, view)")
        _, storage_type, key, _location, numel, view_metadata = saved_id
        if not isinstance(storage_type, _StorageType):
            raise PthFormatError(f"a storage's element type is {_describe(storage_type)}, "
                                 f"not one of {', '.join(_STORAGE_DTYPES)}")
        if not isinstance(key, str):
            raise PthFormatError(f"a storage key must be a string, not {_describe(key)}")
        if view_metadata is not None:
            raise PthFormatError("storage views are not supported")
        numel = _extent(numel, f"the element count of storage {_describe(key)}")
        if numel * storage_type.dtype.itemsize > self._file_size:
            raise PthFormatError(
                f"storage {_describe(key)} declares {numel:,} elements "
                f"({numel * storage_type.dtype.itemsize:,} bytes), more than the whole file's "
                f"{self._file_size:,} bytes")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise PthFormatError(f"storage {_describe(key)} is declared twice, differently")
        return storage


def _load_record(file, size: int, what: str, storages: dict):
    """The record at ``file``'s position, checked then unpickled."""
    start = file.tell()
    end = _check_record(file, size, what)
    file.seek(start)
    # The unpickler sees only this record's bytes, so it cannot read past it.
    stream = io.BytesIO(file.read(end - start))
    try:
        return _RestrictedUnpickler(stream, storages, size).load()
    except PthError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            IndexError, KeyError, OverflowError, struct.error) as error:
        raise PthFormatError(f"{what} is not a readable pickle: {_error_text(error)}") from None


def load_state_dict(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a legacy ``.pth`` state dict into numpy arrays without torch.

    Refuses (``UnsafePickleError``) any file whose pickle names a callable
    other than the few a state dict needs, so loading cannot run code. Any
    other file this reader cannot trust raises ``PthFormatError`` saying
    what is wrong; both are :class:`PthError`. Nothing is allocated beyond
    what the file's own bytes back, and a file that is not a state dict is
    refused after reading its first few bytes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    with open(path, "rb") as f:
        try:
            return _read(f)
        except PthError as error:
            raise type(error)(f"cannot read {path!r}: {error}") from None


def _read(file) -> "collections.OrderedDict[str, np.ndarray]":
    """The state dict in a binary file object positioned at its start."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if file.read(2) == b"PK":
        raise PthFormatError("it is a zip-format checkpoint; only the legacy format is supported")
    file.seek(0)
    storages: dict[str, _Storage] = {}
    records = []
    for what in _RECORDS:
        value = _load_record(file, size, what, storages)
        records.append(value)
        if what == "the magic number" and value != LEGACY_MAGIC_NUMBER:
            raise PthFormatError("it is not a legacy PyTorch file (bad magic number)")
        if what == "the protocol version" and value != SUPPORTED_PROTOCOL:
            raise PthFormatError(f"unsupported PyTorch protocol version {_describe(value)}; "
                                 f"expected {SUPPORTED_PROTOCOL}")
        if what == "the system information" and not (
                isinstance(value, dict) and value.get("little_endian", True) is True):
            raise PthFormatError("only little-endian files are supported")
    state, keys = records[3], records[4]
    if not isinstance(state, dict):
        raise PthFormatError(f"it holds {_describe(state)}, not a state dict")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise PthFormatError(f"its storage keys are {_describe(keys)}, not a list of strings")
    if len(set(keys)) != len(keys):
        raise PthFormatError("a storage is listed twice")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise PthFormatError(f"storage {_describe(key)} is listed but never used")
        count = file.read(8)
        if len(count) != 8:
            raise PthFormatError(
                f"the file ends early while reading the size of storage {_describe(key)}")
        (numel,) = struct.unpack("<q", count)
        if numel != storage.numel:
            raise PthFormatError(
                f"storage {_describe(key)} has {numel} elements, expected {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        left = size - file.tell()
        if nbytes > left:
            raise PthFormatError(
                f"the file ends early while reading storage {_describe(key)} ({nbytes:,} bytes "
                f"needed, {left:,} left)")
        raw = file.read(nbytes)
        if len(raw) != nbytes:  # the file shrank while being read
            raise PthFormatError(f"the file ends early while reading storage {_describe(key)}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    budget = [sum(storage.numel * storage.dtype.itemsize for storage in storages.values())]
    arrays = collections.OrderedDict()
    for name, value in state.items():
        if not isinstance(name, str):
            raise PthFormatError(f"an entry is named by {_describe(name)}, not a string")
        if not isinstance(value, _TensorRef):
            raise PthFormatError(f"entry {_describe(name)} is {_describe(value)}, not a tensor")
        arrays[name] = value.materialise(budget)
    return arrays
