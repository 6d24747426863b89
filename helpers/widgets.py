"""Widgets the explorers share: the photo picker.

:func:`photo_picker` is one widget for choosing the photo an explorer shows:
the bundled samples and the collection in a drop-down, an upload button
(the bytes go through :func:`helpers.load_image`'s checks: file size,
pixel count, EXIF orientation, 16-bit data), and the path or array that the
lesson's parameters cell was given. Its ``value`` is a photo source every
helper accepts (a name, or an RGB uint8 array), so it goes wherever a
widget goes::

    picker = h.photo_picker(IMAGE)
    widgets.interactive_output(draw, {"image": picker, "k": slider})
    picker.observe(lambda change: print(picker.label), names="value")
"""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import traitlets

from .images import SAMPLES, from_bytes, load_image
from .photos import photo_collection, photo_title

__all__ = ["photo_picker", "PhotoPicker"]


def photo_picker(value=None, *, description: str = "Photo") -> "PhotoPicker":
    """A photo chooser for an explorer: samples, collection, an upload, and ``value``.

    ``value``: None (the first sample, ``chelsea``), a photo name, a file
    path, a PIL image or an array: a path or array gets its own entry at the
    top of the drop-down. ``.value`` is the chosen photo (a name string, or
    an RGB uint8 array), ``.label`` a short name for titles.
    """
    return PhotoPicker(value, description=description)


class PhotoPicker(widgets.VBox, widgets.ValueWidget):
    """See :func:`photo_picker`. ``value`` and ``label`` are traits (observe them)."""

    label = traitlets.Unicode("", help="a short name of the chosen photo, for titles")

    def __init__(self, value=None, *, description: str = "Photo"):
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, not {type(description).__name__}")
        self._photos = {}  # drop-down key -> value (a name or an array)
        options = []
        for name, (text, _) in SAMPLES.items():
            options.append((f"{name}: {text}", name))
            self._photos[name] = name
        for name in photo_collection():
            options.append((f"{name}: {photo_title(name)}", name))
            self._photos[name] = name
        self._labels = {key: key for key in self._photos}
        first = "chelsea"
        if value is None:
            pass
        elif isinstance(value, str) and value in self._photos:
            first = value
        elif isinstance(value, (str, os.PathLike, np.ndarray)) or hasattr(value, "__array__") \
                or type(value).__module__.startswith("PIL"):
            image = load_image(value)  # a bad path or array fails here, with its own message
            label = (Path(os.fspath(value)).stem if isinstance(value, (str, os.PathLike))
                     else "your photo")
            first = "given"
            options.insert(0, (f"{label} (from the parameters cell)", first))
            self._photos[first], self._labels[first] = image, label
        else:
            raise TypeError(
                f"value must be None, a photo name, a file path, a PIL image or an array, "
                f"not {type(value).__name__}")
        self._dropdown = widgets.Dropdown(options=options, value=first, description=description,
                                          layout=widgets.Layout(width="420px"))
        self._upload = widgets.FileUpload(accept="image/*", multiple=False,
                                          description="Upload a photo",
                                          layout=widgets.Layout(width="auto"))
        self._status = widgets.HTML("")
        super().__init__([widgets.HBox([self._dropdown, self._upload]), self._status])
        self._dropdown.observe(self._chosen, names="value")
        self._upload.observe(self._uploaded, names="value")
        self._uploads = 0
        self._set(first)

    @property
    def dropdown(self):
        return self._dropdown

    @property
    def upload(self):
        return self._upload

    def _set(self, key):
        self.label = self._labels[key]
        self.value = self._photos[key]

    def _chosen(self, change):
        self._status.value = ""
        self._set(change["new"])

    def _uploaded(self, change):
        files = change["new"]
        if not files:
            return
        if isinstance(files, dict):  # ipywidgets 7: {name: {"metadata": ..., "content": ...}}
            (name, entry), = files.items()
            content = entry["content"]
        else:  # ipywidgets 8: a tuple of {"name", "content", ...}
            name, content = files[0]["name"], files[0]["content"]
        try:
            self.add_upload(content, name)
        except ValueError as error:
            self._status.value = f"<span style='color:#b00'>Upload refused: {error}</span>"

    def add_upload(self, content, name: str = "upload") -> None:
        """Add and select an uploaded photo: ``content`` the file's bytes, ``name`` its file name.

        The bytes go through :func:`helpers.load_image` (size, pixel count,
        EXIF orientation, 16-bit); a refused file raises ValueError and
        leaves the current photo chosen.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {type(name).__name__}")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"content must be the file's bytes, not {type(content).__name__}")
        image = from_bytes(content, f"the uploaded file '{name}'")
        self._uploads += 1
        key = f"upload-{self._uploads}"
        label = Path(name).stem or "upload"
        self._photos[key], self._labels[key] = image, label
        self._dropdown.options = ((f"{label} (uploaded)", key), *self._dropdown.options)
        self._status.value = ""
        self._dropdown.value = key  # fires _chosen, which sets value and label
