"""Small argument checks and progress bars shared by the method modules."""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []


def positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError that names ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def logit_count(model) -> int:
    """The number of classes of a Keras model with one (batch, classes) output."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a Keras model (e.g. h.load_model()), not "
                        f"{type(model).__name__}")
    shape = model.outputs[0].shape
    if len(model.outputs) != 1 or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"model {model.name!r} must have one output of shape (batch, classes) (the logits); "
            f"its outputs have shapes {[tuple(o.shape) for o in model.outputs]}")
    return int(shape[-1])


def progress_bar(total: int, enabled: bool, description: str, unit: str = "it"):
    """A tqdm.auto bar that disappears when done; ``enabled=False`` hides it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, unit=unit, leave=False)
