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


def test_presentation_mode_sets_and_restores_rcparams(monkeypatch):
    import matplotlib as mpl

    from helpers.environment import PRESENTATION_ENV, PRESENTATION_RC

    monkeypatch.delenv(PRESENTATION_ENV, raising=False)
    h.setup()
    before = {key: mpl.rcParams[key] for key in PRESENTATION_RC}
    info = h.setup(presentation=True)
    assert info["presentation"] and h.presentation_mode()
    assert mpl.rcParams["font.size"] == PRESENTATION_RC["font.size"] > before["font.size"]
    assert mpl.rcParams["lines.linewidth"] > before["lines.linewidth"]
    h.setup(presentation=True)  # twice on: the settings to restore are still the originals
    h.setup()  # the variable is unset: off again
    assert not h.presentation_mode()
    assert {key: mpl.rcParams[key] for key in PRESENTATION_RC} == before


def test_presentation_mode_follows_the_variable(monkeypatch, capsys):
    from helpers.environment import PRESENTATION_ENV

    monkeypatch.setenv(PRESENTATION_ENV, "1")
    try:
        assert h.setup()["presentation"] and "presentation mode" in capsys.readouterr().out
        assert not h.setup(presentation=False)["presentation"]  # the argument wins
        monkeypatch.setenv(PRESENTATION_ENV, "loud")
        with pytest.raises(ValueError, match="UNMASKING_CNNS_PRESENTATION='loud'"):
            h.setup()
    finally:
        h.setup(presentation=False)
    with pytest.raises(TypeError, match="presentation must be True, False or None"):
        h.setup(presentation="yes")


def test_panel_layout_wraps_long_rows_only_in_presentation_mode():
    from helpers.environment import PRESENTATION_COLUMNS, PRESENTATION_WIDTH

    assert h.panel_layout(29, 29, 2.0) == (1, 29, 2.0)
    assert h.panel_layout(3, 8, 2.0) == (1, 3, 2.0)
    try:
        h.setup(presentation=True)
        rows, columns, size = h.panel_layout(29, 29, 2.0)
        assert columns == PRESENTATION_COLUMNS == 4 and rows == 8 and rows * columns >= 29
        assert columns * size <= PRESENTATION_WIDTH
        rows, columns, size = h.panel_layout(3, 8, 5.0, aspect=1.15)
        assert (rows, columns) == (1, 3) and columns * size * 1.15 <= PRESENTATION_WIDTH + 1e-9
    finally:
        h.setup(presentation=False)
    with pytest.raises(ValueError, match="ncols must be a positive integer"):
        h.panel_layout(3, 0, 2.0)


def test_show_grid_of_29_panels_wraps_on_a_projector():
    import matplotlib.pyplot as plt
    import numpy as np

    maps = [np.random.rand(8, 8).astype(np.float32) for _ in range(29)]
    try:
        h.setup(presentation=True)
        fig = h.show_grid(heatmaps=maps, ncols=29, colorbar=False)
        shown = [ax for ax in fig.axes if ax.images]
        rows = {round(ax.get_position().y0, 3) for ax in shown}
        width = fig.get_size_inches()[0]
        plt.close(fig)
    finally:
        h.setup(presentation=False)
    assert len(shown) == 29 and len(rows) == 8 and width <= 12.0 + 1e-6
    fig = h.show_grid(heatmaps=maps, ncols=29, colorbar=False)
    assert len({round(ax.get_position().y0, 3) for ax in fig.axes if ax.images}) == 1
    plt.close(fig)


def test_show_figure_replaces_the_output_with_the_rendered_figure():
    """One display_data output holding the figure's pixels; a second call replaces it."""
    import base64
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    output = widgets.Output()
    for colour in ("red", "blue"):
        fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
        fig.patch.set_facecolor(colour)
        ax.set_axis_off()
        h.show_figure(output, fig)
        assert not plt.fignum_exists(fig.number), "the figure is closed once shown"
        assert len(output.outputs) == 1 and output.outputs[0]["output_type"] == "display_data"
        png = base64.b64decode(output.outputs[0]["data"]["image/png"])
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
        expected = {"red": (255, 0, 0), "blue": (0, 0, 255)}[colour]
        assert (np.abs(pixels.astype(int) - expected).max(axis=1) < 8).mean() > 0.9
    fig = plt.figure()
    h.show_figure(output, fig, close=False)
    assert plt.fignum_exists(fig.number)
    plt.close(fig)


@pytest.mark.parametrize("output, fig, close, match", [
    ("not a widget", None, True, "output must be an ipywidgets.Output, not str"),
    (None, "figure", True, "fig must be a matplotlib Figure or None, not str"),
    (None, None, "yes", "close must be True or False, not str"),
])
def test_show_figure_rejects_what_it_cannot_show(output, fig, close, match):
    import ipywidgets as widgets

    with pytest.raises(TypeError, match=match):
        h.show_figure(widgets.Output() if output is None else output, fig, close=close)


def test_setup_reports_the_cpu_where_tensorflow_sees_no_gpu(monkeypatch, capsys):
    from helpers import environment

    monkeypatch.setattr(environment.tf.config, "list_physical_devices", lambda kind=None: [])
    assert h.device_name() == "CPU"
    info = h.setup()
    line = capsys.readouterr().out.strip()
    assert info["device"] == "CPU" and " on CPU; " in line and line.count("\n") == 0


def test_setup_names_the_gpu_tensorflow_sees(monkeypatch, capsys):
    from helpers import environment

    gpus = [environment.tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
            environment.tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU")]
    config = environment.tf.config
    monkeypatch.setattr(config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(config.experimental, "get_device_details",
                        lambda device: {"device_name": "NVIDIA H100 80GB HBM3",
                                        "compute_capability": (9, 0)})
    assert h.device_name() == "GPU NVIDIA H100 80GB HBM3 (+1 more)"
    info = h.setup()
    assert info["device"] == "GPU NVIDIA H100 80GB HBM3 (+1 more)"
    assert " on GPU NVIDIA H100 80GB HBM3 (+1 more); " in capsys.readouterr().out
    # A GPU whose driver gives no name is called by TensorFlow's device name.
    monkeypatch.setattr(config, "list_physical_devices",
                        lambda kind=None: gpus[:1] if kind == "GPU" else [])
    monkeypatch.setattr(config.experimental, "get_device_details", lambda device: {})
    assert h.device_name() == "GPU /physical_device:GPU:0"
