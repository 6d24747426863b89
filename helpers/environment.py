"""Course-wide setup: quiet TensorFlow, seeds, fast mode, cache folder.

Every notebook starts with ``import helpers as h`` and ``h.setup()``.

Environment variables (all optional):

``UNMASKING_CNNS_FAST``
    ``1`` turns on fast mode: methods use fewer samples, masks and steps so
    the whole course executes in minutes (CI and nbval use it). The default
    is full quality.
``UNMASKING_CNNS_CACHE``
    Where converted models are cached (default ``~/.cache/unmasking-cnns``).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

import numpy as np

__all__ = ["setup", "fast_mode", "choose", "seed_everything"]

FAST_ENV = "UNMASKING_CNNS_FAST"
CACHE_ENV = "UNMASKING_CNNS_CACHE"
DEFAULT_SEED = 0

# oneDNN stays on (turning it off costs ~1.5x on CPU); only logs are silenced.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def quiet_stderr():
    """Point file descriptor 2 at /dev/null for the duration of the block.

    TensorFlow's C++ runtime writes log lines at import and at the first op
    that ``TF_CPP_MIN_LOG_LEVEL`` does not silence; only the file descriptor
    itself can be muted. Python-level ``sys.stderr`` keeps working.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded consoles)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_tensorflow_quietly():
    with quiet_stderr():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        tf.constant(0.0) + 1.0  # the first op prints CPU-feature lines
    import absl.logging

    absl.logging.set_verbosity("error")
    return tf


tf = _import_tensorflow_quietly()


def fast_mode() -> bool:
    """True when ``UNMASKING_CNNS_FAST`` is set to 1/true/yes/on."""
    value = os.environ.get(FAST_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{FAST_ENV}={value!r} is not understood; use 1 (fast) or 0 (full quality)")


def choose(full, fast):
    """``full`` normally, ``fast`` in fast mode: ``steps = h.choose(200, 20)``."""
    return fast if fast_mode() else full


def cache_dir() -> Path:
    """The folder for converted models: ``$UNMASKING_CNNS_CACHE`` or ~/.cache/unmasking-cnns."""
    folder = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "unmasking-cnns")
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, numpy, TensorFlow and Keras so results repeat."""
    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # seeds tf.random as well


def _inline_figures_as_jpeg(quality: int = 88) -> None:
    """Photo-heavy figures are several times smaller as JPEG than PNG: notebooks stay light."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.run_line_magic("config", "InlineBackend.figure_formats = ['jpeg']")
    shell.run_line_magic(
        "config", "InlineBackend.print_figure_kwargs = "
        f"{{'bbox_inches': 'tight', 'pil_kwargs': {{'quality': {quality}}}}}")


def setup(seed: int = DEFAULT_SEED, *, figure_dpi: int = 80) -> dict:
    """Prepare a notebook: quiet logs, seeds, readable figures; report the mode.

    Returns a small dict (``seed``, ``fast``, ``cache``) and prints one line,
    so a reader sees which mode produced the outputs below.
    """
    import keras
    import matplotlib as mpl

    seed_everything(seed)
    mpl.rcParams.update({
        "figure.dpi": figure_dpi,
        "savefig.dpi": figure_dpi,
        "image.interpolation": "nearest",
        "axes.titlesize": "medium",
    })
    _inline_figures_as_jpeg()
    info = {"seed": seed, "fast": fast_mode(), "cache": str(cache_dir())}
    mode = "fast mode (fewer samples and steps)" if info["fast"] else "full quality"
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {mode}; seed {seed}")
    return info
