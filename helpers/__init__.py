"""helpers: the small library the Unmasking CNNs notebooks call.

    import helpers as h
    h.setup()
    model = h.load_model()                 # EfficientNet-Lite0, offline
    h.top_k(model, "chelsea")              # top-5 table

One module per idea, each short enough to read in a lesson. Every
explanation returns a raw float32 map of the image's size; ``h.show`` draws.
"""

from .environment import *  # noqa: F401,F403  (imports TensorFlow quietly, first)
from .pipeline import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from .photos import *  # noqa: F401,F403
from .labels import *  # noqa: F401,F403
from .plot import *  # noqa: F401,F403
from .masks import *  # noqa: F401,F403
from .occlusion import *  # noqa: F401,F403
from .incremental import *  # noqa: F401,F403
from .saliency import *  # noqa: F401,F403
from .cam import *  # noqa: F401,F403
from .architecture import *  # noqa: F401,F403
from .feature_vis import *  # noqa: F401,F403
from .adversarial import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .noise import *  # noqa: F401,F403
from .shap_explain import *  # noqa: F401,F403
from .integrated_gradients import *  # noqa: F401,F403
from .surrogate import *  # noqa: F401,F403
from .concepts import *  # noqa: F401,F403  (also h.concepts.cav, .tcav_score, ...)
from .exercises import *  # noqa: F401,F403
from .widgets import *  # noqa: F401,F403

__version__ = "0.1.0"

# helpers.attention is imported on first use: ``python -m helpers.attention`` then runs
# the module once, as the command, instead of a second copy of an imported module.
_LAZY = ("attention",)


def __getattr__(name):
    import importlib

    for module_name in _LAZY:
        module = importlib.import_module(f".{module_name}", __name__)
        if name == module_name:
            return module
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    import importlib

    names = set(globals())
    for module_name in _LAZY:
        names.update(importlib.import_module(f".{module_name}", __name__).__all__)
    return sorted(names)
