"""Setup, fast mode, cache folder."""
import os

import pytest

import helpers as h
from helpers.environment import CACHE_ENV, FAST_ENV, cache_dir, quiet_stderr


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("0", False), ("", False),
                                         ("off", False)])
def test_fast_mode_reads_the_variable(monkeypatch, value, fast):
    monkeypatch.setenv(FAST_ENV, value)
    assert h.fast_mode() is fast
    assert h.choose(100, 5) == (5 if fast else 100)


def test_fast_mode_rejects_nonsense(monkeypatch):
    monkeypatch.setenv(FAST_ENV, "maybe")
    with pytest.raises(ValueError, match="use 1 .* or 0"):
        h.fast_mode()


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "models"))
    assert cache_dir() == tmp_path / "models" and (tmp_path / "models").is_dir()


def test_setup_seeds_and_reports(capsys):
    import numpy as np

    info = h.setup(seed=3)
    first = np.random.rand()
    h.setup(seed=3)
    assert np.random.rand() == first
    assert info["seed"] == 3 and "seed 3" in capsys.readouterr().out


def test_quiet_stderr_silences_the_file_descriptor(capfd):
    with quiet_stderr():
        os.write(2, b"noise from C++\n")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
