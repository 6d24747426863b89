"""Course-wide setup: quiet TensorFlow, seeds, fast mode, cache folder.

Every notebook starts with ``import helpers as h`` and ``h.setup()``.

Environment variables (all optional):

``UNMASKING_CNNS_FAST``
    ``1`` turns on fast mode: methods use fewer samples, masks and steps so
    the whole course executes in minutes (CI and nbval use it). The default
    is full quality.
``UNMASKING_CNNS_CACHE``
    Where converted models are cached (default ``~/.cache/unmasking-cnns``).
``UNMASKING_CNNS_PRESENTATION``
    ``1`` turns on presentation mode in every ``h.setup()`` (for a projector:
    large fonts and lines, at most :data:`PRESENTATION_COLUMNS` panels per
    row, figures no wider than :data:`PRESENTATION_WIDTH` inches), so a teacher
    can switch a whole course on without editing a lesson.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

import numpy as np

from .checks import check_number, check_seed

__all__ = ["setup", "fast_mode", "choose", "seed_everything", "presentation_mode",
           "panel_layout", "device_name"]

FAST_ENV = "UNMASKING_CNNS_FAST"
CACHE_ENV = "UNMASKING_CNNS_CACHE"
PRESENTATION_ENV = "UNMASKING_CNNS_PRESENTATION"
DEFAULT_SEED = 0

# Presentation mode: sizes read from the back of a room on a 1080p projector, where a figure
# shown at 100 dpi across ~12 inches fills the screen's width. A 12 pt label at 80 dpi is
# 13 px high; these make it ~22 px and lines twice as thick.
PRESENTATION_COLUMNS = 4
PRESENTATION_WIDTH = 12.0
PRESENTATION_RC = {
    "font.size": 16,
    "axes.titlesize": 17,
    "axes.labelsize": 16,
    "xtick.labelsize": 14,
    "ytick.labelsize": 14,
    "legend.fontsize": 14,
    "figure.titlesize": 19,
    "lines.linewidth": 2.8,
    "lines.markersize": 9,
    "axes.linewidth": 1.6,
    "grid.linewidth": 1.2,
    "xtick.major.width": 1.6,
    "ytick.major.width": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 100,
}
_saved_rc: dict | None = None  # the rcParams presentation mode replaced, restored when it ends

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


def _env_presentation() -> bool:
    value = os.environ.get(PRESENTATION_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{PRESENTATION_ENV}={value!r} is not understood; use 1 (presentation "
                     "mode) or 0 (normal figures)")


def presentation_mode() -> bool:
    """True while presentation mode is on (``h.setup(presentation=True)`` or the variable)."""
    return _saved_rc is not None


def _set_presentation(on: bool) -> None:
    global _saved_rc
    import matplotlib as mpl

    if on and _saved_rc is None:
        _saved_rc = {key: mpl.rcParams[key] for key in PRESENTATION_RC}
        mpl.rcParams.update(PRESENTATION_RC)
    elif not on and _saved_rc is not None:
        mpl.rcParams.update(_saved_rc)
        _saved_rc = None


def panel_layout(count: int, ncols: int, size: float, *, aspect: float = 1.0,
                 width: float | None = None) -> tuple[int, int, float]:
    """``(rows, columns, panel size)`` for ``count`` panels asked as ``ncols`` per row.

    Normally the request is kept (columns at most ``count``). In presentation
    mode a long row wraps into rows of at most :data:`PRESENTATION_COLUMNS`
    panels, and the panel size shrinks so that ``columns * size * aspect``
    (the figure's width; ``width`` overrides the limit) stays within
    :data:`PRESENTATION_WIDTH` inches. Figure functions call this so one
    switch lays out every grid of the course for a projector.
    """
    for name, value, what in (("count", count, "panels to lay out"),
                              ("ncols", ncols, "panels per row")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a positive integer ({what}), not "
                            f"{type(value).__name__} ({value!r})")
        if value < 1:
            raise ValueError(f"{name} must be a positive integer ({what}), got {value}")
    columns = min(int(ncols), int(count))
    if presentation_mode():
        columns = min(columns, PRESENTATION_COLUMNS)
        limit = PRESENTATION_WIDTH if width is None else float(width)
        size = min(float(size), limit / (columns * aspect))
    rows = -(-int(count) // columns)
    return rows, columns, float(size)


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


def device_name() -> str:
    """Where TensorFlow runs: ``"CPU"``, or ``"GPU <name>"`` for the first GPU it sees.

    The name is the driver's (e.g. ``"GPU NVIDIA H100 80GB HBM3"``), or TensorFlow's
    device name where the driver gives none; ``" (+N more)"`` counts further GPUs.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
    except (RuntimeError, ValueError):  # a device without details (some plugins)
        details = {}
    name = f"GPU {details.get('device_name') or gpus[0].name}"
    return name + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, numpy, TensorFlow and Keras so results repeat."""
    import keras

    seed = check_seed(seed, allow_none=False)
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


def setup(seed: int = DEFAULT_SEED, *, figure_dpi: int = 80,
          presentation: bool | None = None) -> dict:
    """Prepare a notebook: quiet logs, seeds, readable figures; report the mode.

    ``presentation=True`` switches on presentation mode for a projector
    (large fonts and lines, at most a few panels per row, see
    :func:`panel_layout`); ``False`` switches it off and restores the figure
    settings it replaced; ``None`` (the default) follows the environment
    variable ``UNMASKING_CNNS_PRESENTATION``.

    Returns a small dict (``seed``, ``fast``, ``presentation``, ``cache``, ``device``)
    and prints one line, so a reader sees which mode and device (CPU, or the GPU's name,
    see :func:`device_name`) produced the outputs below.
    """
    import keras
    import matplotlib as mpl

    check_number(figure_dpi, "figure_dpi", minimum=0, inclusive=(False, True),
                 accepted="a resolution in dots per inch")
    if presentation is None:
        presentation = _env_presentation()
    elif not isinstance(presentation, (bool, np.bool_)):
        raise TypeError(f"presentation must be True, False or None, not "
                        f"{type(presentation).__name__}")
    seed_everything(seed)
    _set_presentation(False)  # the base settings below, then presentation's on top of them
    mpl.rcParams.update({
        "figure.dpi": figure_dpi,
        "savefig.dpi": figure_dpi,
        "image.interpolation": "nearest",
        "axes.titlesize": "medium",
    })
    _set_presentation(bool(presentation))
    _inline_figures_as_jpeg()
    info = {"seed": seed, "fast": fast_mode(), "presentation": presentation_mode(),
            "cache": str(cache_dir()), "device": device_name()}
    mode = "fast mode (fewer samples and steps)" if info["fast"] else "full quality"
    if info["presentation"]:
        mode += ", presentation mode"
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__} on {info['device']}; {mode}; "
          f"seed {seed}")
    return info
