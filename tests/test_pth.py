"""The restricted .pth reader: real weights load, hostile or broken files are refused."""
import collections
import io
import pickle
import pickletools
import struct
import time
import tracemalloc

import numpy as np
import pytest

from helpers import pth
from helpers.models import _lite_weights_file


def _legacy_header():
    return b"".join(pickle.dumps(obj, protocol=2) for obj in (
        pth.LEGACY_MAGIC_NUMBER, pth.SUPPORTED_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}))


# ---------------------------------------------------------------------------
# A torch-free writer of legacy files, as torch.save(..., _use_new_zipfile_serialization=False)
# lays them out: the same opcodes (protocol 2, memo, persistent ids, BUILD of _metadata).
# ---------------------------------------------------------------------------

class _Global:
    """A global written by name (GLOBAL opcode) without importing it: torch is not installed."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise AssertionError("only ever pickled")


_GLOBALS = {}


def _named_global(module, name):
    return _GLOBALS.setdefault((module, name), _Global(module, name))  # one object: memo reuse


class _StorageBytes:
    """A storage's values; ``numel`` may claim more elements than the bytes written."""

    def __init__(self, key, type_name, values, numel=None):
        self.key, self.type_name, self.values = key, type_name, values
        self.numel = values.size if numel is None else numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (_named_global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, self.offset, self.size, self.stride, False,
                 collections.OrderedDict()))

    def expected(self):
        values = self.storage.values
        return np.lib.stride_tricks.as_strided(
            values[self.offset:], self.size, [s * values.itemsize for s in self.stride]).copy()


class _LegacyPickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_named_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_named_global

    def persistent_id(self, obj):
        if isinstance(obj, _StorageBytes):
            return ("storage", _named_global("torch", obj.type_name), obj.key, "cpu",
                    obj.numel, None)
        return None


def _legacy_file(tensors):
    state = collections.OrderedDict(tensors)
    state._metadata = collections.OrderedDict({"": {"version": 1}, "fc": {"version": 1}})
    out = io.BytesIO()
    out.write(_legacy_header())
    _LegacyPickler(out, protocol=2).dump(state)
    storages = list(dict.fromkeys(tensor.storage for tensor in tensors.values()))
    pickle.dump([storage.key for storage in storages], out, protocol=2)
    for storage in storages:
        out.write(struct.pack("<q", storage.numel))
        out.write(storage.values.astype(storage.values.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def _small_tensors():
    weights = _StorageBytes("0", "FloatStorage",
                            np.random.default_rng(0).standard_normal(24).astype(np.float32))
    counts = _StorageBytes("1", "LongStorage", np.array([7], np.int64))
    half = _StorageBytes("2", "HalfStorage", np.arange(8, dtype=np.float16))
    return {
        "conv.weight": _Tensor(weights, 0, (2, 3, 2, 2), (12, 4, 2, 1)),
        "fc.weight": _Tensor(weights, 4, (4, 5), (1, 4)),  # a transposed view of the same storage
        "bn.num_batches_tracked": _Tensor(counts, 0, (), ()),
        "half": _Tensor(half, 0, (2, 4), (4, 1)),
    }


SMALL_FILE = _legacy_file(_small_tensors())


def _write(tmp_path, data, name="weights.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_small_legacy_file_round_trips(tmp_path):
    state = pth.load_state_dict(_write(tmp_path, SMALL_FILE))
    tensors = _small_tensors()
    assert list(state) == list(tensors)
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(state[name], tensor.expected())
        assert state[name].dtype == tensor.storage.values.dtype


class _RunsCode:
    """Pickles to ``os.system(<touch marker>)``: what a hostile checkpoint looks like."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_real_state_dict_has_the_expected_tensors():
    state = pth.load_state_dict(_lite_weights_file("efficientnet_lite0"))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.all(np.isfinite(state["_fc.weight"]))
    assert state["_bn0.running_var"].min() >= 0  # some channels are dead (variance 0)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_legacy_header() + pickle.dumps({"weight": _RunsCode(marker)}, protocol=2))
    with pytest.raises(pth.UnsafePickleError,
                       match="cannot read '.*evil.pth': refusing to load '(posix|os).system'"):
        pth.load_state_dict(evil)
    assert not marker.exists()


def test_malicious_first_record_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(pth.UnsafePickleError,
                       match="cannot read '.*evil.pth': refusing to load '(posix|os).system'"):
        pth.load_state_dict(evil)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    evil = tmp_path / "eval.pth"
    # GLOBAL builtins.eval, then call it: the classic pickle exploit, hand-written.
    payload = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
    evil.write_bytes(_legacy_header() + payload)
    with pytest.raises(pth.UnsafePickleError, match="cannot read '.*eval.pth': .*'builtins.eval'"):
        pth.load_state_dict(evil)


def test_not_a_torch_file(tmp_path):
    wrong = tmp_path / "numbers.pth"
    wrong.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(pth.PthFormatError,
                       match=r"cannot read '.*numbers.pth': .*not a legacy PyTorch file \(bad magic"):
        pth.load_state_dict(wrong)


def test_zip_checkpoint_is_named(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(pth.PthFormatError, match="cannot read '.*new.pth': .*zip-format checkpoint"):
        pth.load_state_dict(zipped)


def test_truncated_file_is_detected(tmp_path):
    source = _lite_weights_file("efficientnet_lite0").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(pth.PthFormatError,
                       match="cannot read '.*cut.pth': the file ends early while reading storage"):
        pth.load_state_dict(cut)


def test_wrong_storage_size_is_detected(tmp_path):
    source = bytearray(_lite_weights_file("efficientnet_lite0").read_bytes())
    # The first storage's element count follows the key list; corrupt it.
    header_end = _first_storage_offset(bytes(source))
    (count,) = struct.unpack("<q", source[header_end:header_end + 8])
    source[header_end:header_end + 8] = struct.pack("<q", count + 1)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(bytes(source))
    with pytest.raises(pth.PthFormatError,
                       match=r"cannot read '.*broken.pth': storage '\d+' has \d+ elements, expected"):
        pth.load_state_dict(broken)


def _first_storage_offset(data: bytes) -> int:
    f = io.BytesIO(data)
    for _ in range(5):  # magic, protocol, sys info, state dict, storage keys
        for op, _, _ in pickletools.genops(f):
            if op.name == "STOP":
                break
    return f.tell()


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no weights file at '/nonexistent/weights.pth'"):
        pth.load_state_dict("/nonexistent/weights.pth")


# ---------------------------------------------------------------------------
# Hostile files: each is refused with a message saying what is wrong, before
# anything the file's bytes cannot back is allocated.
# ---------------------------------------------------------------------------

def _state_dict_pickle(body: bytes) -> bytes:
    return _legacy_header() + b"\x80\x02" + body + b"."


def _one_tensor(size, stride, offset=0, numel=4, stored=None):
    values = np.zeros(numel if stored is None else stored, np.float32)
    storage = _StorageBytes("0", "FloatStorage", values, numel)
    return _legacy_file({"w": _Tensor(storage, offset, size, stride)})


HOSTILE_FILES = [
    ("a tuple nested 1000 deep as a dict key (its hash would overflow the C stack)",
     _state_dict_pickle(b"})" + b"\x85" * 1000 + b"K\x01s"), pth.PthFormatError, "nests values more"),
    ("a list that holds itself", _state_dict_pickle(b"]q\x00h\x00a"), pth.PthFormatError,
     "nests values more"),
    ("BINBYTES8 declaring 2**62 bytes", _state_dict_pickle(b"\x8e" + struct.pack("<Q", 2 ** 62)),
     pth.PthFormatError, "ends early.*expected 4611686018427387904 bytes"),
    ("BYTEARRAY8 declaring 2**40 bytes", _state_dict_pickle(b"\x96" + struct.pack("<Q", 2 ** 40)),
     pth.PthFormatError, "ends early.*1099511627776 bytes"),
    ("FRAME declaring 2**62 bytes", _state_dict_pickle(b"\x95" + struct.pack("<Q", 2 ** 62) + b"N"),
     pth.PthFormatError, "frame of 4,611,686,018,427,387,904 bytes"),
    ("LONG_BINPUT at index 2**32-1 (would grow the memo to 32 GB)",
     _state_dict_pickle(b"Nr\xff\xff\xff\xff"), pth.PthFormatError, "memo entry 4294967295, beyond"),
    ("LONG_BINGET of an entry never stored", _state_dict_pickle(b"j\xff\xff\xff\x7f"),
     pth.PthFormatError, "memo entry 2147483647, never stored"),
    ("LONG4 declaring 2**31-1 bytes", _state_dict_pickle(b"\x8b" + struct.pack("<i", 2 ** 31 - 1)),
     pth.PthFormatError, "ends early"),
    ("APPEND on an empty stack", _state_dict_pickle(b"a"), pth.PthFormatError, "too few values"),
    ("TUPLE without MARK", _state_dict_pickle(b"Nt"), pth.PthFormatError, "needs a MARK"),
    ("INST, which builds objects by class name", _state_dict_pickle(b"(ibuiltins\neval\n"),
     pth.UnsafePickleError, "opcode INST .* never uses"),
    ("BUILD setting attributes on the shared FloatStorage type",
     _state_dict_pickle(b"ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeK\x01sb"),
     pth.PthFormatError, "adds items to a value that cannot hold any"),
    ("BUILD setting attributes on a tensor",
     SMALL_FILE.replace(b"tq\x0cRq\x0d", b"tq\x0cRq\x0d}X\x04\x00\x00\x00sizeNsb", 1),
     pth.PthFormatError, "tries to set attributes on a tensor"),
    ("a negative stride", _one_tensor((2, 2), (-2, 1)), pth.PthFormatError,
     "tensor stride must be a whole number in 0..2\\*\\*48, not -2"),
    ("a zero stride repeating one element 2**40 times", _one_tensor((2 ** 20, 2 ** 20), (0, 0)),
     pth.PthFormatError, "zero stride"),
    ("overlapping strides describing more elements than the storage",
     _one_tensor((3, 3), (1, 1), numel=5), pth.PthFormatError, "reaches beyond its storage of 5"),
    ("an offset past the storage", _one_tensor((2, 2), (2, 1), offset=1), pth.PthFormatError,
     "offset 1 reaches beyond"),
    ("a size of 2**62", _one_tensor((2 ** 62,), (1,)), pth.PthFormatError,
     "tensor size must be a whole number"),
    ("a float offset", _one_tensor((2, 2), (2, 1), offset=1.5), pth.PthFormatError,
     "storage offset must be a whole number.*not 1.5"),
    ("a storage of 2**40 elements in a small file", _one_tensor((2,), (1,), numel=2 ** 40, stored=0),
     pth.PthFormatError, "declares 1,099,511,627,776 elements"),
    ("a storage shorter than its count", _one_tensor((2, 2), (2, 1), stored=2), pth.PthFormatError,
     "ends early while reading storage '0' \\(16 bytes needed, 8 left\\)"),
    ("a scalar past its storage", _one_tensor((), (), offset=4), pth.PthFormatError,
     "offset 4 reaches beyond"),
]


@pytest.mark.parametrize("label, data, error, message", HOSTILE_FILES,
                         ids=[case[0] for case in HOSTILE_FILES])
def test_hostile_files_are_refused_with_a_reason(tmp_path, label, data, error, message):
    path = _write(tmp_path, data)
    with pytest.raises(error, match=message) as refused:
        pth.load_state_dict(path)
    assert str(refused.value).startswith(f"cannot read {str(path)!r}: ")  # names the file


def test_a_record_of_more_opcodes_than_any_state_dict_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pth, "MAX_PICKLE_OPCODES", 1000)  # the real limit costs a second to reach
    with pytest.raises(pth.PthFormatError,
                       match="cannot read '.*weights.pth': the state dict has more than 1,000 pickle"):
        pth.load_state_dict(_write(tmp_path, _state_dict_pickle(b"N" * 1001)))


def test_a_refused_file_cannot_change_later_loads(tmp_path):
    evil = {label: data for label, data, _, _ in HOSTILE_FILES}[
        "BUILD setting attributes on the shared FloatStorage type"]
    with pytest.raises(pth.PthFormatError,
                       match="cannot read '.*evil.pth': .*adds items to a value that cannot hold any"):
        pth.load_state_dict(_write(tmp_path, evil, "evil.pth"))
    state = pth.load_state_dict(_write(tmp_path, SMALL_FILE))
    assert state["conv.weight"].dtype == np.float32


def test_strided_copies_cannot_exceed_the_storages(tmp_path):
    storage = _StorageBytes("0", "FloatStorage", np.zeros(1000, np.float32))
    one = {"w0": _Tensor(storage, 0, (10, 100), (1, 10))}  # a transposed view: copied once
    assert pth.load_state_dict(_write(tmp_path, _legacy_file(one)))["w0"].shape == (10, 100)
    many = {f"w{i}": _Tensor(storage, 0, (10, 100), (1, 10)) for i in range(3)}
    with pytest.raises(pth.PthFormatError,
                       match="cannot read '.*weights.pth': .*need more memory than the file's storages"):
        pth.load_state_dict(_write(tmp_path, _legacy_file(many)))


def test_a_large_file_that_is_not_a_state_dict_is_refused_at_once(tmp_path):
    path = tmp_path / "video.pth"
    with path.open("wb") as f:
        f.write(b"S")  # a protocol-0 string with no newline in the next 64 MiB
        f.truncate(64 * 2 ** 20)
    started = time.perf_counter()
    with pytest.raises(pth.PthFormatError,
                       match="cannot read '.*video.pth': the magic number is larger than 16 MiB"):
        pth.load_state_dict(path)
    assert time.perf_counter() - started < 5


def test_errors_share_a_base_class_and_keep_their_old_ones():
    assert issubclass(pth.UnsafePickleError, pth.PthError)
    assert issubclass(pth.UnsafePickleError, pickle.UnpicklingError)
    assert issubclass(pth.PthFormatError, pth.PthError)
    assert issubclass(pth.PthFormatError, ValueError)


# ---------------------------------------------------------------------------
# Fuzz: seeded, bounded mutations of a small legacy file and of the real
# file's pickle region. Each must load as a dict of arrays or raise PthError.
# ---------------------------------------------------------------------------

FUZZ_SEED = 20261201
_LENGTH_ARGS = {  # pickletools argument name -> (width, extreme values to write there)
    "uint1": (1, [0, 0xFF]), "uint2": (2, [0, 0xFFFF]), "int4": (4, [0, 2 ** 31 - 1, 2 ** 32 - 1]),
    "uint4": (4, [0, 2 ** 31 - 1, 2 ** 32 - 1]), "uint8": (8, [2 ** 62, 2 ** 64 - 1]),
    "unicodestring4": (4, [0, 2 ** 31 - 1, 2 ** 32 - 1]), "bytes4": (4, [2 ** 32 - 1]),
    "unicodestring1": (1, [0, 0xFF]), "long1": (1, [0, 0xFF]), "long4": (4, [2 ** 31 - 1]),
}
_HUGE_OPCODES = [b"\x8e" + struct.pack("<Q", 2 ** 62), b"\x95" + struct.pack("<Q", 2 ** 62),
                 b"\x96" + struct.pack("<Q", 2 ** 62), b"\x8d" + struct.pack("<Q", 2 ** 62),
                 b"r\xff\xff\xff\xff", b"j\xff\xff\xff\xff", b"\x85" * 200, b"(" * 200,
                 b"X\xff\xff\xff\x7f", b"B\xff\xff\xff\xff"]


def _opcodes(data: bytes):
    """(opcode, argument, position) of the five pickle records, and where they end."""
    found = []
    f = io.BytesIO(data)
    for _ in range(5):
        for opcode, arg, position in pickletools.genops(f):
            found.append((opcode, arg, position))
            if opcode.name == "STOP":
                break
    return found, f.tell()


def _mutations(data: bytes, rng, count: int, region: int):
    """``count`` seeded mutations of ``data`` (each touches only its first ``region`` bytes).

    Only those bytes are copied to be mutated; the rest is appended once per case.
    """
    opcodes, pickle_end = _opcodes(data)
    fields = [(position + 1, *_LENGTH_ARGS[opcode.arg.name]) for opcode, _, position in opcodes
              if opcode.arg is not None and opcode.arg.name in _LENGTH_ARGS]
    kinds = ["bit flips", "truncation", "splice", "insertion", "length field", "huge opcode",
             "opcode swap", "storage count"]
    rest = data[region:]
    for case in range(count):
        kind = kinds[case % len(kinds)]
        mutated, tail = bytearray(data[:region]), rest
        if kind == "bit flips":
            for _ in range(int(rng.integers(1, 9))):
                at = int(rng.integers(region))
                mutated[at] ^= 1 << int(rng.integers(8))
        elif kind == "truncation":
            del mutated[int(rng.integers(region)):]
            tail = b""
        elif kind == "splice":  # a run of the file copied over another place in it
            start, at = int(rng.integers(region)), int(rng.integers(region))
            mutated[at:at] = data[start:start + int(rng.integers(1, 64))]
        elif kind == "insertion":
            at = int(rng.integers(region))
            mutated[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif kind == "length field":
            at, width, extremes = fields[int(rng.integers(len(fields)))]
            value = extremes[int(rng.integers(len(extremes)))]
            mutated[at:at + width] = value.to_bytes(width, "little")
        elif kind == "huge opcode":
            _, _, at = opcodes[int(rng.integers(len(opcodes)))]
            mutated[at:at] = _HUGE_OPCODES[int(rng.integers(len(_HUGE_OPCODES)))]
        elif kind == "opcode swap":
            _, _, at = opcodes[int(rng.integers(len(opcodes)))]
            opcode = pickletools.opcodes[int(rng.integers(len(pickletools.opcodes)))]
            mutated[at] = ord(opcode.code)
        else:  # the int64 element count in front of the first storage's bytes
            value = [-1, 0, 2 ** 62, 2 ** 63 - 1][int(rng.integers(4))]
            mutated[pickle_end:pickle_end + 8] = struct.pack("<q", value)
        yield f"{kind} #{case}", bytes(mutated) + tail


def _load_or_refuse(label: str, data: bytes) -> str:
    try:
        state = pth._read(io.BytesIO(data))
    except pth.PthError as error:
        assert len(str(error)) > 20, f"{label}: the message says too little: {error}"
        return "refused"
    except Exception as error:  # noqa: BLE001 - any other exception is the bug being hunted
        raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
    assert isinstance(state, collections.OrderedDict), label
    assert all(isinstance(name, str) and isinstance(value, np.ndarray)
               for name, value in state.items()), label
    return "loaded"


def test_fuzzed_files_load_or_raise_the_readers_own_errors():
    rng = np.random.default_rng(FUZZ_SEED)
    cases = [(f"random bytes #{i}", rng.integers(0, 256, int(rng.integers(0, 400)),
                                                 dtype=np.uint8).tobytes()) for i in range(40)]
    cases += [(f"header, then random bytes #{i}", _legacy_header() + rng.integers(
        0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()) for i in range(40)]
    cases += list(_mutations(SMALL_FILE, rng, 400, region=len(SMALL_FILE)))
    outcomes = collections.Counter()
    tracemalloc.start()
    try:
        for label, data in cases:
            tracemalloc.reset_peak()
            outcomes[_load_or_refuse(label, data)] += 1
            # Nothing beyond what a kilobyte file can back (pickle's own tables included).
            assert tracemalloc.get_traced_memory()[1] < 4 * 2 ** 20, label
    finally:
        tracemalloc.stop()
    assert sum(outcomes.values()) == 480
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= 300, outcomes


def test_fuzzed_headers_of_the_real_file_load_or_raise_the_readers_own_errors():
    data = _lite_weights_file("efficientnet_lite0").read_bytes()
    _, pickle_end = _opcodes(data)  # 47 kB of pickle, then 18 MB of storages
    rng = np.random.default_rng(FUZZ_SEED + 1)
    outcomes = collections.Counter(
        _load_or_refuse(label, mutated)
        for label, mutated in _mutations(data, rng, 48, region=pickle_end + 8))
    assert sum(outcomes.values()) == 48 and outcomes["refused"] >= 24, outcomes
