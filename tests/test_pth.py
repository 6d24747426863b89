"""The restricted .pth reader: real weights load, hostile or broken files are refused."""
import pickle
import struct

import numpy as np
import pytest

from helpers import pth
from helpers.models import _lite_weights_file


def _legacy_header():
    return b"".join(pickle.dumps(obj, protocol=2) for obj in (
        pth.LEGACY_MAGIC_NUMBER, pth.SUPPORTED_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}))


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
    with pytest.raises(pth.UnsafePickleError, match="refusing to load 'posix.system'|"
                                                    "refusing to load 'os.system'"):
        pth.load_state_dict(evil)
    assert not marker.exists()


def test_malicious_first_record_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(pth.UnsafePickleError):
        pth.load_state_dict(evil)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    evil = tmp_path / "eval.pth"
    # GLOBAL builtins.eval, then call it: the classic pickle exploit, hand-written.
    payload = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
    evil.write_bytes(_legacy_header() + payload)
    with pytest.raises(pth.UnsafePickleError, match="builtins.eval"):
        pth.load_state_dict(evil)


def test_not_a_torch_file(tmp_path):
    wrong = tmp_path / "numbers.pth"
    wrong.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(pth.PthFormatError, match="bad magic number"):
        pth.load_state_dict(wrong)


def test_zip_checkpoint_is_named(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(pth.PthFormatError, match="zip-format"):
        pth.load_state_dict(zipped)


def test_truncated_file_is_detected(tmp_path):
    source = _lite_weights_file("efficientnet_lite0").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(source[: len(source) // 2])
    with pytest.raises(pth.PthFormatError, match="ends early"):
        pth.load_state_dict(cut)


def test_wrong_storage_size_is_detected(tmp_path):
    source = bytearray(_lite_weights_file("efficientnet_lite0").read_bytes())
    # The first storage's element count follows the key list; corrupt it.
    header_end = _first_storage_offset(bytes(source))
    (count,) = struct.unpack("<q", source[header_end:header_end + 8])
    source[header_end:header_end + 8] = struct.pack("<q", count + 1)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(bytes(source))
    with pytest.raises(pth.PthFormatError, match="elements, expected"):
        pth.load_state_dict(broken)


def _first_storage_offset(data: bytes) -> int:
    import io
    import pickletools

    f = io.BytesIO(data)
    for _ in range(5):  # magic, protocol, sys info, state dict, storage keys
        for op, _, _ in pickletools.genops(f):
            if op.name == "STOP":
                break
    return f.tell()


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no weights file"):
        pth.load_state_dict("/nonexistent/weights.pth")
