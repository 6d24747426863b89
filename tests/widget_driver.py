"""Drive every control of a lesson's explorers, in the lesson's own kernel.

notebooks/conftest.py runs this file's source in the kernel after the last cell of
a lesson and calls ``drive_widgets()``. Each live control is moved through its
values and restored:

* drop-downs, toggle buttons, radio buttons, selection sliders: every value of a
  list of up to ``MAX_OPTIONS`` (the methods, modes and layers a lesson offers); a
  longer list is data (a photo collection, the 1000 classes), driven at
  ``SPREAD_OPTIONS`` evenly spaced values including its first and last;
* combo boxes: their suggested options, the same way;
* sliders: their minimum, middle and maximum;
* check boxes and toggle buttons: both states; buttons: one click;
* file uploads: an RGBA PNG of an odd size, as a student's own photo would be.

A value the control already holds is skipped: the lesson drew it when it ran, and
setting it again sends no event.

A change fails when its callback raises (directly, or shown as a traceback by an
``interactive`` or an ``Output`` widget), or when it draws nothing: no figure, image
or output appears. The driver prints one line per control and raises AssertionError
listing every failure.
"""

import io
import traceback

MAX_OPTIONS = 10
SPREAD_OPTIONS = 4


def _spread(values):
    values = list(values)
    if len(values) <= MAX_OPTIONS:
        return values
    step = (len(values) - 1) / (SPREAD_OPTIONS - 1)
    return [values[round(i * step)] for i in range(SPREAD_OPTIONS)]


def _slider_values(control):
    import ipywidgets as widgets

    low, high = control.min, control.max
    middle = low + (high - low) / 2
    if isinstance(control, widgets.FloatLogSlider):  # its min and max are exponents
        return [control.base ** exponent for exponent in (low, middle, high)]
    if isinstance(control.value, int) and not isinstance(control.value, bool):
        step = control.step or 1
        middle = low + round((middle - low) / step) * step
    return [low, middle, high]


def _upload_value():
    import numpy as np
    from PIL import Image

    rows, cols = np.mgrid[0:173, 0:251]
    pixels = np.stack([rows * 255 // 172, cols * 255 // 250, (rows + cols) % 256,
                       np.full_like(rows, 200)], axis=-1).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    content = buffer.getvalue()
    # Deserialised as the browser's message would be, so the value has the real shape.
    from ipywidgets.widgets.widget_upload import _deserialize_value

    return _deserialize_value([{"name": "my_photo.png", "type": "image/png",
                                "size": len(content), "content": memoryview(content),
                                "last_modified": 1_700_000_000_000}], None)


def _same(first, second) -> bool:
    """Whether a control already holds a value (setting it again would change nothing)."""
    import numpy as np

    if isinstance(first, np.ndarray) or isinstance(second, np.ndarray):
        return isinstance(first, np.ndarray) and isinstance(second, np.ndarray) \
            and first.shape == second.shape and bool(np.array_equal(first, second))
    try:
        return bool(first == second)
    except Exception:  # values that cannot be compared are different
        return False


def _plan(control):
    """(label, list of values to set, or "click") for one control, None if not a control."""
    import ipywidgets as widgets

    if getattr(control, "disabled", False):
        return None
    if isinstance(control, widgets.Button):
        return "click", ["click"]
    if isinstance(control, widgets.FileUpload):
        return "upload", [_upload_value()]
    if isinstance(control, widgets.Combobox):
        return "options", [option for option in _spread(control.options)]
    if isinstance(control, (widgets.Dropdown, widgets.ToggleButtons, widgets.RadioButtons,
                            widgets.Select, widgets.SelectionSlider)):
        values = [value for _, value in control._options_full] \
            if hasattr(control, "_options_full") else list(control.options)
        return "options", _spread(values)
    if isinstance(control, (widgets.IntSlider, widgets.FloatSlider, widgets.FloatLogSlider,
                            widgets.BoundedIntText, widgets.BoundedFloatText)):
        return "slider", _slider_values(control)
    if isinstance(control, (widgets.Checkbox, widgets.ToggleButton)):
        return "toggle", [not control.value, control.value]
    return None


def drive_widgets():
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from ipywidgets.widgets.widget import _instances

    shell = get_ipython()
    errors, drawn = [], [0]

    original_traceback = shell.showtraceback
    original_publish = shell.display_pub.publish

    def recording_traceback(*args, **kwargs):
        errors.append(traceback.format_exc())
        return original_traceback(*args, **kwargs)

    def counting_publish(data, *args, **kwargs):
        drawn[0] += 1
        return original_publish(data, *args, **kwargs)

    def count_output(change):
        drawn[0] += 1

    # Lesson 03's explorer refines its map in callbacks on the kernel's loop; here
    # they run at once, so every pass is drawn (and checked) inside this cell.
    from tornado.ioloop import IOLoop

    loop = IOLoop.current()
    original_add_callback = loop.add_callback

    def run_now(callback, *args, **kwargs):
        callback(*args, **kwargs)

    controls = [w for w in list(_instances.values()) if _plan(w) is not None]
    outputs = [w for w in list(_instances.values()) if isinstance(w, widgets.Output)]
    for output in outputs:
        output.observe(count_output, names="outputs")
    shell.showtraceback = recording_traceback
    shell.display_pub.publish = counting_publish
    loop.add_callback = run_now
    failures, moves = [], 0
    try:
        for control in controls:
            kind, values = _plan(control)
            name = (f"{type(control).__name__} {control.description!r}"
                    if getattr(control, "description", "") else type(control).__name__)
            original = None if kind == "click" else control.value
            moved = False
            for value in values:
                if kind != "click" and _same(value, control.value):
                    continue  # the value it holds: drawn when the lesson ran, no event to send
                moved = True
                before_errors, before_drawn = len(errors), drawn[0]
                try:
                    if kind == "click":
                        control.click()
                    else:
                        control.value = value
                    plt.show()  # what the inline backend would draw at the end of a cell
                except Exception:  # a callback raised: the student would see it
                    errors.append(traceback.format_exc())
                moves += 1
                if len(errors) > before_errors:
                    failures.append(f"{name} = {value!r}: raised\n{errors[-1]}")
                elif drawn[0] == before_drawn and kind != "click":
                    failures.append(f"{name} = {value!r}: drew nothing")
            if original is not None and moved:
                try:
                    control.value = original
                    plt.show()
                except Exception:
                    failures.append(f"{name}: restoring {original!r} raised\n"
                                    f"{traceback.format_exc()}")
            print(f"{name}: {len(values)} values driven")
    finally:
        shell.showtraceback = original_traceback
        shell.display_pub.publish = original_publish
        loop.add_callback = original_add_callback
        for output in outputs:
            output.unobserve(count_output, names="outputs")
        plt.close("all")
    print(f"{len(controls)} controls, {moves} changes, {len(failures)} failures")
    assert controls, "the lesson has no explorer controls to drive"
    assert not failures, "\n\n".join(failures)
