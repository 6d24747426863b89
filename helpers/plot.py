"""Figures: photos, heatmaps overlaid on photos, grids; always with titles and colour bars.

Explanations return raw float maps; this module is the only place that
turns them into pictures.

One colour convention for the whole course: a map that is never negative
(occlusion drops, gradient magnitudes, Grad-CAM) is drawn with
``UNSIGNED_CMAP``, perceptually uniform (equal steps in value look like
equal steps in colour, and it reads in grey too); a map with both signs
(attributions for and against a class) with ``SIGNED_CMAP``, diverging and
centred on zero with symmetric limits (-m..m, m the largest magnitude), so
white means zero, red for the class and blue against it. ``show``,
``overlay`` and ``show_grid`` choose by the map's sign unless ``cmap=`` is
given.

``show_figure`` puts a finished figure into an ipywidgets ``Output``: the
way for an explorer that redraws from a callback the kernel runs later.
"""

from __future__ import annotations

import numpy as np

from .checks import check_bool, check_number, positive_int
from .environment import panel_layout

__all__ = ["show", "show_grid", "show_figure", "overlay", "UNSIGNED_CMAP", "SIGNED_CMAP",
           "map_cmap"]

UNSIGNED_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"


def _is_signed(heatmap) -> bool:
    return bool(np.nanmin(heatmap) < 0) if np.size(heatmap) else False


def map_cmap(heatmap, *, symmetric=None, cmap=None) -> tuple[str, bool]:
    """``(colour map, symmetric)`` for a map by the course's convention.

    ``symmetric`` None decides by the sign (any negative value: signed);
    True or False forces it. ``cmap`` replaces the colour map only.
    """
    if symmetric is not None and not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True, False or None, not {type(symmetric).__name__}")
    if cmap is not None and not isinstance(cmap, str) and not hasattr(cmap, "N"):
        raise TypeError(f"cmap must be a colour map name or a matplotlib colour map, not "
                        f"{type(cmap).__name__}")
    signed = _is_signed(heatmap) if symmetric is None else bool(symmetric)
    return cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP), signed


def _display_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"show takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    if np.issubdtype(image.dtype, np.floating):
        high = float(np.nanmax(image)) if image.size else 0.0
        image = image / 255.0 if high > 1.0 else image
        return np.clip(image, 0.0, 1.0)
    return image


def normalise_map(heatmap, *, symmetric: bool = False) -> np.ndarray:
    """Scale a map to 0..1 (or -1..1 when ``symmetric``) for display only."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if symmetric:
        scale = float(np.max(np.abs(heatmap))) or 1.0
        return heatmap / scale
    low, high = float(heatmap.min()), float(heatmap.max())
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def _check_map(heatmap, image):
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim == 3 and heatmap.shape[0] == 1:
        heatmap = heatmap[0]
    if heatmap.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D (H, W); got shape {heatmap.shape}")
    if image is not None and heatmap.shape != image.shape[:2]:
        raise ValueError(
            f"heatmap shape {heatmap.shape} does not match the image's {image.shape[:2]}")
    return heatmap


def overlay(image, heatmap, *, alpha: float = 0.5, cmap=None, symmetric=None) -> np.ndarray:
    """An RGB float image: the photo with the heatmap's colours blended on top.

    An unsigned map is scaled min..max to the colour map; a signed one
    (or ``symmetric=True``) -m..m, so zero is the colour map's middle.
    """
    import matplotlib

    check_number(alpha, "alpha", minimum=0, maximum=1, accepted="an opacity in 0..1")
    photo = _display_image(image).astype(np.float32)
    if photo.dtype != np.float32 or photo.max() > 1.0:
        photo = photo / 255.0
    heat = _check_map(heatmap, photo)
    cmap, signed = map_cmap(heat, symmetric=symmetric, cmap=cmap)
    heat = (normalise_map(heat, symmetric=True) + 1) / 2 if signed else normalise_map(heat)
    colours = (matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap)(heat)[..., :3]
    return np.clip((1 - alpha) * photo + alpha * colours, 0.0, 1.0)


def show(image=None, heatmap=None, *, title: str | None = None, ax=None, alpha: float = 0.5,
         cmap=None, symmetric=None, colorbar: bool = True,
         colorbar_label: str | None = None, vmin=None, vmax=None):
    """Show a photo, a heatmap, or a heatmap over a photo, with a title and colour bar.

    The colour map follows the map's sign (``UNSIGNED_CMAP`` for maps >= 0;
    ``SIGNED_CMAP`` centred on zero with symmetric limits for maps with
    negative values); ``symmetric=True``/``False`` forces either, ``cmap=``
    replaces the colour map. Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt

    check_number(alpha, "alpha", minimum=0, maximum=1, accepted="an opacity in 0..1")
    check_bool(colorbar, "colorbar")
    if image is None and heatmap is None:
        raise ValueError("show needs an image, a heatmap, or both")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    photo = _display_image(image) if image is not None else None
    if photo is not None:
        ax.imshow(photo, interpolation="bilinear")
    if heatmap is not None:
        heat = _check_map(heatmap, photo)
        cmap, symmetric = map_cmap(heat, symmetric=symmetric, cmap=cmap)
        if symmetric and vmin is None and vmax is None:
            limit = float(np.max(np.abs(heat))) or 1.0
            vmin, vmax = -limit, limit
        shown = ax.imshow(heat, cmap=cmap, alpha=alpha if photo is not None else 1.0,
                          vmin=vmin, vmax=vmax, interpolation="bilinear")
        if colorbar:
            bar = ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            bar.solids.set_alpha(1.0)
            if colorbar_label:
                bar.set_label(colorbar_label)
    if title:
        ax.set_title(title)
    ax.set_axis_off()
    return ax


def show_grid(images=None, heatmaps=None, *, titles=None, ncols: int = 4,
              size: float = 3.0, suptitle: str | None = None, **show_kwargs):
    """Several panels in a grid; ``images`` and ``heatmaps`` are lists (or one image for all)."""
    import matplotlib.pyplot as plt

    positive_int(ncols, "ncols")
    check_number(size, "size", minimum=0, inclusive=(False, True), accepted="a panel size in inches")
    if images is None and heatmaps is None:
        raise ValueError("show_grid needs images, heatmaps, or both")
    count = len(heatmaps) if heatmaps is not None else len(images)
    if count == 0:
        raise ValueError("show_grid needs at least one panel")
    if images is not None and not isinstance(images, (list, tuple)):
        images = [images] * count
    # Presentation mode wraps long rows and narrows panels to fit a projected screen.
    nrows, ncols, size = panel_layout(count, ncols, size, aspect=1.15)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.15, size * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= count:
            ax.set_axis_off()
            continue
        show(images[i] if images is not None else None,
             heatmaps[i] if heatmaps is not None else None,
             title=titles[i] if titles else None, ax=ax, **show_kwargs)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_figure(output, fig=None, *, close: bool = True) -> None:
    """Show a matplotlib figure in an ipywidgets ``Output``, replacing what it showed.

    The figure is rendered the way the notebook renders figures (the inline
    backend's format and settings: JPEG after :func:`setup`) and becomes the
    widget's only output in one state update, so the old figure is swapped
    for the new one with no blank frame in between.

    Unlike ``with output: plt.show()``, this also works from code the kernel
    runs after a widget event has been handled, such as a callback scheduled
    with ``IOLoop.current().add_callback`` (lesson 03's explorer refines its
    map that way, one pass per turn of the kernel's loop). JupyterLab routes
    what ``with output:`` captures through the request that was running, and
    once that request has finished it drops those outputs: the figure would
    never appear. ``fig`` defaults to the current figure; it is closed
    afterwards unless ``close=False``.
    """
    import base64
    import io

    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from ipywidgets import Output
    from matplotlib.figure import Figure

    if not isinstance(output, Output):
        raise TypeError(f"output must be an ipywidgets.Output, not {type(output).__name__}")
    if fig is None:
        fig = plt.gcf()
    elif not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure or None, not {type(fig).__name__}")
    if not isinstance(close, (bool, np.bool_)):
        raise TypeError(f"close must be True or False, not {type(close).__name__}")
    shell = get_ipython()
    data, metadata = shell.display_formatter.format(fig) if shell is not None else ({}, {})
    if not any(kind.startswith("image/") for kind in data):
        # Outside a notebook (or with no image formatter registered): a PNG, as savefig makes it.
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                "text/plain": repr(fig)}
        metadata = {}
    output.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
    if close:
        plt.close(fig)
