"""Adversarial examples: FGSM, iterative FGSM, success rates and transfer.

**Epsilon is in pixel levels of the 0..255 range.** ``epsilon=4`` lets
every pixel of every channel move by at most 4 of 255 levels, i.e. 4/255
(about 1.6 %) of the range: the "epsilon = 4/255" of papers that scale images
to 0..1, and the "epsilon = 4" of Kurakin et al., who work in 0..255.

The perturbation is applied to the 0..255 pixels the models take (their
preprocessing is inside them), and the result is clipped to 0..255, so an
adversarial image is a real image. It stays float32: rounding it to uint8
(as saving it to a PNG file would) moves pixels by up to half a level more,
which matters for budgets of a few levels; lesson 08 has the student test
whether an attack survives it.

Methods, all written by hand because they are the lesson (a few lines each):

* FGSM, Goodfellow, Shlens & Szegedy 2014, *Explaining and Harnessing
  Adversarial Examples*: one step along the sign of the loss gradient,
  ``x_adv = clip_0..255(x + epsilon * sign(grad_x L(x, y)))`` (untargeted:
  move away from class y), or ``x_adv = clip_0..255(x - epsilon * sign(grad_x
  L(x, t)))`` (targeted: move towards class t). L is the cross-entropy of
  the softmax of the logits.
* Iterative FGSM (the basic iterative method, BIM), Kurakin, Goodfellow &
  Bengio 2016, *Adversarial Examples in the Physical World*: small steps
  ``x_{n+1} = clip_{x, epsilon}(x_n + alpha * sign(grad_x L(x_n, y)))``,
  each projected back into the epsilon box around x and into 0..255, with
  ``alpha = 1`` level and ``min(epsilon + 4, 1.25 * epsilon)`` steps.

:func:`success_rates` attacks a set of images at several epsilons in
batches; :func:`transfer_rates` crafts on one model and tests on others
(black-box transfer, as in Szegedy et al. 2013 and Papernot et al. 2016).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from .environment import tf  # noqa: F401  (quiet TF import first)
import keras

from .models import input_size
from .pipeline import (cached, check_bool, check_choice, check_model, check_number, check_seed,
                       explanation_call, holder, model_batch, model_spec, positive_int,
                       predict_logits, progress_bar, resolve_for_model)

__all__ = [
    "ATTACK_METHODS",
    "fgsm",
    "iterative_fgsm",
    "attack",
    "kurakin_steps",
    "cross_entropy",
    "loss_gradient",
    "predict_classes",
    "success_rates",
    "transfer_rates",
]

ATTACK_METHODS = ("fgsm", "iterative_fgsm")
DEFAULT_EPSILONS = (1, 2, 4, 8, 16)

# ---------------------------------------------------------------------------
# Compiled loss/gradient and forward passes, one pair per model
# ---------------------------------------------------------------------------

def _check_model(model, name="model"):
    return check_model(model, name)


def _compiled_loss_gradient(model):
    """The loss-and-gradient tf.function for ``model``, traced once per model.

    A None batch dimension in the signature means one trace serves every
    chunk size; eager calls would cost several times more on a CPU.
    """
    spec = model_spec(model)

    def build():
        logits_of = holder(spec.logits, model)
        image_spec = tf.TensorSpec((None,) + spec.input_shape, tf.float32)

        @tf.function(input_signature=[image_spec, tf.TensorSpec([None], tf.int64)])
        def loss_and_gradient(images, labels):
            with tf.GradientTape() as tape:
                tape.watch(images)
                logits = logits_of()(images, training=False)
                if spec.probability == "sigmoid":  # -log sigmoid(z_y): multi-label or binary
                    loss = tf.nn.softplus(-tf.gather(logits, labels, axis=1, batch_dims=1))
                else:
                    loss = keras.ops.sparse_categorical_crossentropy(labels, logits,
                                                                     from_logits=True)
            # Images do not interact (inference mode), so the gradient of the
            # summed loss holds each image's own gradient.
            return loss, tape.gradient(loss, images), logits
        return loss_and_gradient
    return cached(model, "loss_and_gradient", build)


def loss_and_gradient(model, images, labels):
    """Per-image losses (N,) and input gradients (N, H, W, C) as numpy arrays."""
    loss, gradient, _ = _compiled_loss_gradient(model)(
        tf.constant(np.asarray(images, dtype=np.float32)),
        tf.constant(np.asarray(labels, dtype=np.int64)))
    return loss.numpy(), gradient.numpy()


def _num_classes(model) -> int:
    return model_spec(model).num_classes


def predict_classes(model, images, *, fit: str = "crop", batch_size: int = 32) -> np.ndarray:
    """Top-1 class indices (N,) of a batch, with the compiled forward pass used by the attacks.

    Float images at the model's size are classified as they are (unrounded).
    """
    check_batch_size(batch_size)
    batch, single = model_batch(model, images, fit=fit)
    classes = np.argmax(predict_logits(model, batch, batch_size), axis=-1).astype(np.int64)
    return classes[0] if single else classes


def _losses_and_gradients(model, images, class_index, fit, batch_size):
    """Per-image cross-entropy (N,) and its input gradient (N, H, W, C), chunked."""
    check_batch_size(batch_size)
    call = explanation_call(model, images, class_index, fit=fit)
    batch, single, labels = call.batch, call.single, call.classes
    chunks = [loss_and_gradient(model, batch[i:i + batch_size], labels[i:i + batch_size])
              for i in range(0, len(batch), batch_size)]
    losses = np.concatenate([loss for loss, _ in chunks]).astype(np.float32)
    gradients = np.concatenate([gradient for _, gradient in chunks]).astype(np.float32)
    return losses, gradients, single


def cross_entropy(model, images, class_index=None, *, fit: str = "crop",
                  batch_size: int = 32):
    """The loss an attack climbs: ``L(x, y) = -log softmax(logits(x))[y]``
    (``-log sigmoid(logit_y(x))`` for a model with a sigmoid or single-output head).

    ``class_index`` None = each image's predicted class. Returns a float for
    one image, a float32 array (N,) for a batch.
    """
    losses, _, single = _losses_and_gradients(model, images, class_index, fit, batch_size)
    return float(losses[0]) if single else losses


def loss_gradient(model, images, class_index=None, *, fit: str = "crop",
                  batch_size: int = 16) -> np.ndarray:
    """``grad_x L(x, y)``: the gradient of the cross-entropy with respect to the pixels.

    The direction every attack here follows (FGSM steps along its sign).
    ``class_index`` None = each image's predicted class. Units: loss per
    pixel level. Returns float32 (H, W, C) for one image or (N, H, W, C).
    """
    _, gradients, single = _losses_and_gradients(model, images, class_index, fit, batch_size)
    return gradients[0] if single else gradients


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------

def check_batch_size(batch_size):
    return positive_int(batch_size, "batch_size")


def check_epsilon(epsilon, name="epsilon") -> float:
    epsilon = check_number(epsilon, name, minimum=0, maximum=255,
                           accepted="a number of pixel levels of the 0..255 range")
    levels = epsilon * 255
    if 0 < epsilon < 1 and round(levels) >= 1 and abs(levels - round(levels)) < 1e-4:
        # 4/255 looks like the 0..1 convention; a fraction like 0.5 is a real sub-level step.
        warnings.warn(
            f"{name}={epsilon:g} is less than one pixel level: epsilon counts levels of the "
            f"0..255 range (epsilon=4 means 4/255). Did you mean {name}={round(levels)}?",
            stacklevel=3)
    return epsilon


def _check_epsilons(epsilons) -> np.ndarray:
    if isinstance(epsilons, numbers.Real) and not isinstance(epsilons, bool):
        epsilons = [epsilons]
    if isinstance(epsilons, (str, bytes)) or not hasattr(epsilons, "__iter__"):
        raise TypeError(f"epsilons must be a list of pixel levels such as (1, 2, 4, 8, 16), "
                        f"not {type(epsilons).__name__}")
    values = [check_epsilon(e, "each epsilon") for e in epsilons]
    if not values:
        raise ValueError("epsilons is empty; give pixel levels such as (1, 2, 4, 8, 16)")
    return np.asarray(values, dtype=np.float32)


def _check_method(method) -> str:
    return check_choice(method, "method", ATTACK_METHODS)


def kurakin_steps(epsilon: float) -> int:
    """Kurakin et al.'s step count ``min(epsilon + 4, 1.25 epsilon)``, rounded up, at least 1."""
    return max(1, int(math.ceil(min(epsilon + 4.0, 1.25 * epsilon))))


# ---------------------------------------------------------------------------
# The attack loop: a chunk of images, one epsilon per image
# ---------------------------------------------------------------------------

def _attack_chunk(model, clean, labels, epsilons, *, targeted, steps, step_size):
    """Sign-gradient steps projected into the epsilon box and 0..255.

    ``epsilons``, ``steps`` and ``step_size`` hold one value per image, so a
    chunk can mix epsilons; an image stops moving after its own step count.
    """
    box = epsilons[:, None, None, None]
    low, high = np.maximum(clean - box, 0.0), np.minimum(clean + box, 255.0)
    adversarial = clean.astype(np.float32, copy=True)
    direction = -1.0 if targeted else 1.0
    for step in range(int(steps.max())):
        active = np.flatnonzero(step < steps)
        _, gradient = loss_and_gradient(model, adversarial[active], labels[active])
        move = direction * step_size[active, None, None, None] * np.sign(gradient)
        adversarial[active] = np.clip(adversarial[active] + move, low[active], high[active])
    return adversarial


def _method_schedule(method, epsilons, steps, step_size):
    """Per-image step counts and step sizes of a method."""
    # Checked for every method, so a wrong value is caught even where FGSM ignores it.
    step_size = check_number(step_size, "step_size", minimum=0, inclusive=(False, True),
                             accepted="a positive number of pixel levels")
    if method == "fgsm":
        return np.ones(len(epsilons), np.int64), epsilons.astype(np.float32)
    if steps is None:
        step_counts = np.array([kurakin_steps(e) for e in epsilons], dtype=np.int64)
    else:
        steps = positive_int(steps, "steps")  # None: Kurakin's min(epsilon + 4, 1.25 epsilon)
        step_counts = np.full(len(epsilons), steps, dtype=np.int64)
    return step_counts, np.full(len(epsilons), step_size, dtype=np.float32)


def _progress(total, progress, desc):
    """The shared progress bar, hidden when there is a single step to show."""
    return progress_bar(total, check_bool(progress, "progress") and total > 1, desc)


def attack(model, images, class_index=None, *, method: str = "fgsm", epsilon: float = 4.0,
           target_class=None, steps: int | None = None, step_size: float = 1.0,
           fit: str = "crop", batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Adversarial images by ``method`` ("fgsm" or "iterative_fgsm"); see :func:`fgsm`."""
    _check_method(method)
    check_batch_size(batch_size)
    epsilon = check_epsilon(epsilon)
    if target_class is not None and class_index is not None:
        raise ValueError("give class_index (the class to move away from, untargeted) or "
                         "target_class (the class to move towards, targeted), not both")
    call = explanation_call(model, images, class_index, fit=fit, resolve=target_class is None)
    batch, single = call.batch, call.single
    labels = call.classes if target_class is None else \
        resolve_for_model(model, target_class, batch, name="target_class")
    epsilons = np.full(len(batch), epsilon, dtype=np.float32)
    step_counts, step_sizes = _method_schedule(method, epsilons, steps, step_size)
    adversarial = np.empty_like(batch)
    chunks = range(0, len(batch), batch_size)
    with _progress(len(chunks), progress, method) as bar:
        for start in chunks:
            part = slice(start, start + batch_size)
            adversarial[part] = _attack_chunk(
                model, batch[part], labels[part], epsilons[part],
                targeted=target_class is not None, steps=step_counts[part],
                step_size=step_sizes[part])
            bar.update()
    return adversarial[0] if single else adversarial


def fgsm(model, images, class_index=None, *, epsilon: float = 4.0, target_class=None,
         fit: str = "crop", batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy 2014, *Explaining and
    Harnessing Adversarial Examples*).

    Untargeted: ``x_adv = clip_0..255(x + epsilon * sign(grad_x L(x, y)))``
    with y = ``class_index`` (None = the model's prediction on x): one step
    that raises the loss of y. Targeted: ``x_adv = clip_0..255(x - epsilon *
    sign(grad_x L(x, t)))`` with t = ``target_class``: one step that lowers
    the loss of t, i.e. raises its probability.

    ``epsilon`` is in **pixel levels of the 0..255 range**: ``epsilon=4``
    moves each pixel by at most 4/255 of the range. Returns float32 0..255
    adversarial images, (H, W, 3) for one image or (N, H, W, 3), at the
    model's input size and unrounded. ``max |x_adv - x| = epsilon`` except
    where clipping to 0..255 shortens a step.
    """
    return attack(model, images, class_index, method="fgsm", epsilon=epsilon,
                  target_class=target_class, fit=fit, batch_size=batch_size, progress=progress)


def iterative_fgsm(model, images, class_index=None, *, epsilon: float = 4.0, target_class=None,
                   steps: int | None = None, step_size: float = 1.0, fit: str = "crop",
                   batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Iterative FGSM / basic iterative method (Kurakin, Goodfellow & Bengio 2016,
    *Adversarial Examples in the Physical World*).

    ``x_0 = x``, ``x_{n+1} = clip_{x, epsilon}(x_n + alpha * sign(grad_x L(x_n, y)))``
    where ``clip_{x, epsilon}`` keeps every pixel within ``epsilon`` of x and
    inside 0..255 (targeted: ``- alpha * sign(grad_x L(x_n, t))``).
    ``step_size`` alpha and ``epsilon`` are in pixel levels of 0..255;
    ``steps`` None = Kurakin's ``min(epsilon + 4, 1.25 epsilon)`` (5 steps at
    epsilon 4, 20 at epsilon 16). Stronger than FGSM at the same epsilon,
    because it follows the loss surface instead of its linear approximation.
    Returns float32 0..255 images like :func:`fgsm`.
    """
    return attack(model, images, class_index, method="iterative_fgsm", epsilon=epsilon,
                  target_class=target_class, steps=steps, step_size=step_size, fit=fit,
                  batch_size=batch_size, progress=progress)


# ---------------------------------------------------------------------------
# Success rate over images x epsilons
# ---------------------------------------------------------------------------

def _table_text(title, row_names, epsilons, rates):
    width = max(len(name) for name in row_names) + 2
    header = f"{'':<{width}}" + "".join(f"{f'eps={e:g}':>9}" for e in epsilons)
    lines = ([title] if title else []) + [header]
    lines += [f"{name:<{width}}" + "".join(f"{r:>9.3f}" for r in row)
              for name, row in zip(row_names, rates)]
    return "\n".join(lines)


def _table_html(title, row_names, epsilons, rates):
    head = "".join(f"<th>&epsilon;={e:g}/255</th>" for e in epsilons)
    body = "".join(
        f"<tr><td style='text-align:left'>{name}</td>"
        + "".join(f"<td>{r:.3f}</td>" for r in row) + "</tr>"
        for name, row in zip(row_names, rates))
    caption = f"<caption>{title}</caption>" if title else ""
    return f"<table>{caption}<tr><th></th>{head}</tr>{body}</table>"


@dataclass
class SuccessRates:
    """How often an attack succeeds, per image and epsilon.

    ``clean_classes`` (N,): top-1 on the clean images; ``adversarial_classes``
    (N, E): top-1 on each adversarial image; ``success`` (N, E): the top-1
    changed (untargeted) or equals the target (targeted); ``rates`` (E,):
    the fraction of images where the attack succeeded, per epsilon.
    """

    epsilons: np.ndarray
    clean_classes: np.ndarray
    adversarial_classes: np.ndarray
    method: str
    target_class: int | None = None
    success: np.ndarray = field(init=False)

    def __post_init__(self):
        if self.target_class is None:
            self.success = self.adversarial_classes != self.clean_classes[:, None]
        else:
            self.success = self.adversarial_classes == self.target_class

    @property
    def rates(self) -> np.ndarray:
        return self.success.mean(axis=0)

    @property
    def title(self) -> str:
        goal = "untargeted" if self.target_class is None else f"targeted at class {self.target_class}"
        return (f"{self.method} success rate ({goal}) over {len(self.clean_classes)} images; "
                "epsilon in levels of 0..255")

    def __str__(self):
        return _table_text(self.title, [self.method], self.epsilons, [self.rates])

    __repr__ = __str__

    def _repr_html_(self):
        return _table_html(self.title, [self.method], self.epsilons, [self.rates])


def success_rates(model, images, class_index=None, *, epsilons=DEFAULT_EPSILONS,
                  method: str = "fgsm", target_class=None, steps: int | None = None,
                  step_size: float = 1.0, fit: str = "crop", batch_size: int = 16,
                  progress: bool = True) -> SuccessRates:
    """Attack every image at every epsilon (pixel levels of 0..255), in batches.

    An untargeted attack succeeds when the top-1 class changes from the
    model's prediction on the clean image (the fooling rate); a targeted one
    when the top-1 becomes ``target_class``. The (image, epsilon) grid is
    streamed in chunks of ``batch_size`` rows, so memory stays bounded. For
    FGSM the gradient sign does not depend on epsilon, so it is computed
    once per image and reused for every epsilon.
    """
    _check_method(method)
    check_number(step_size, "step_size", minimum=0, inclusive=(False, True),
                 accepted="a positive number of pixel levels")
    check_batch_size(batch_size)
    epsilon_values = _check_epsilons(epsilons)
    batch, _ = model_batch(model, images, fit=fit)
    clean_classes = np.argmax(predict_logits(model, batch, batch_size), axis=-1).astype(np.int64)
    if target_class is not None:
        if class_index is not None:
            raise ValueError("give class_index (untargeted) or target_class (targeted), not both")
        labels = resolve_for_model(model, target_class, batch, name="target_class")
    elif class_index is None:
        labels = clean_classes
    else:
        labels = resolve_for_model(model, class_index, batch)
    targeted = target_class is not None
    n_images, n_eps = len(batch), len(epsilon_values)
    adversarial_classes = np.empty((n_images, n_eps), dtype=np.int64)
    if method == "fgsm":
        chunks = range(0, n_images, batch_size)
        with _progress(len(chunks), progress, "fgsm success rate") as bar:
            for start in chunks:
                clean = batch[start:start + batch_size]
                _, gradient = loss_and_gradient(model, clean, labels[start:start + batch_size])
                sign = np.sign(gradient) * (-1.0 if targeted else 1.0)
                for column, epsilon in enumerate(epsilon_values):
                    adversarial = np.clip(clean + epsilon * sign, 0.0, 255.0).astype(np.float32)
                    adversarial_classes[start:start + batch_size, column] = np.argmax(
                        predict_logits(model, adversarial, batch_size), axis=-1)
                bar.update()
    else:
        # One row per (epsilon, image) pair, epsilon-major so that a chunk's rows
        # mostly share a step count; rows are attacked batch_size at a time.
        image_of_row = np.tile(np.arange(n_images), n_eps)
        epsilon_of_row = np.repeat(epsilon_values, n_images)
        step_counts, step_sizes = _method_schedule(method, epsilon_of_row, steps, step_size)
        flat = np.empty(len(image_of_row), dtype=np.int64)
        chunks = range(0, len(image_of_row), batch_size)
        with _progress(len(chunks), progress, f"{method} success rate") as bar:
            for start in chunks:
                rows = slice(start, start + batch_size)
                adversarial = _attack_chunk(
                    model, batch[image_of_row[rows]], labels[image_of_row[rows]],
                    epsilon_of_row[rows], targeted=targeted, steps=step_counts[rows],
                    step_size=step_sizes[rows])
                flat[rows] = np.argmax(predict_logits(model, adversarial, batch_size), axis=-1)
                bar.update()
        adversarial_classes[:] = flat.reshape(n_eps, n_images).T
    target = int(labels[0]) if targeted else None
    if targeted and len(set(labels.tolist())) > 1:
        raise ValueError("success_rates takes one target_class for all images")
    return SuccessRates(epsilon_values, clean_classes, adversarial_classes, method, target)


# ---------------------------------------------------------------------------
# Transfer: craft on one model, test on others
# ---------------------------------------------------------------------------

def resize_batch(batch, size) -> np.ndarray:
    """Bilinear resize of a float32 (N, H, W, 3) 0..255 batch to ``size`` = S or (H, W).

    Used to show an adversarial image to a model with another input size.
    Interpolation averages neighbouring pixels, a low-pass filter that
    partly cancels the pixel-level sign pattern: resizing alone weakens an
    attack (measure it with the round trip in :func:`transfer_rates`).
    """
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"resize_batch takes a (N, H, W, 3) batch; got shape {batch.shape}")
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {(height, width)}")
    if batch.shape[1:3] == (height, width):
        return batch.copy()
    resized = tf.image.resize(batch, (height, width), method="bilinear").numpy()
    return np.clip(resized, 0.0, 255.0).astype(np.float32)


@dataclass
class TransferTable:
    """Untargeted success rates of adversarial images crafted on ``source``.

    ``rows``: what was measured. "(white-box)": the source model on its own
    adversarial images; "(transfer)": another model on them; "via S px and
    back": the source model on its adversarial images resized to S and back
    (the damage resizing alone does); "(random sign noise)": a model on
    ``clip(x + epsilon * random signs)``, the chance level of "top-1 changed".
    ``success``: (rows, images, epsilons) bool, the top-1 changed from the
    same view of the clean image; ``rates``: (rows, epsilons), its mean.
    """

    source: str
    method: str
    epsilons: np.ndarray
    rows: list
    success: np.ndarray

    @property
    def rates(self) -> np.ndarray:
        return self.success.mean(axis=1)

    @property
    def title(self) -> str:
        return (f"{self.method} crafted on {self.source}: share of {self.success.shape[1]} "
                "images whose top-1 changed; epsilon in levels of 0..255")

    def as_dict(self) -> dict:
        return {row: dict(zip(self.epsilons.tolist(), rates.tolist()))
                for row, rates in zip(self.rows, self.rates)}

    def __str__(self):
        return _table_text(self.title, self.rows, self.epsilons, self.rates)

    __repr__ = __str__

    def _repr_html_(self):
        return _table_html(self.title, self.rows, self.epsilons, self.rates)


def _named_models(target_models):
    if isinstance(target_models, keras.Model):
        target_models = [target_models]
    if isinstance(target_models, dict):
        items = list(target_models.items())
    elif isinstance(target_models, (list, tuple)):
        items = [(getattr(m, "name", str(i)), m) for i, m in enumerate(target_models)]
    else:
        raise TypeError("target_models must be a keras.Model, a list of them, or a dict "
                        f"name -> model; got {type(target_models).__name__}")
    if not items:
        raise ValueError("target_models is empty")
    for name, model in items:
        if not isinstance(model, keras.Model):
            raise TypeError(f"target model {name!r} is a {type(model).__name__}, not a keras.Model")
    return items


def _random_signs(shape, seed, image_index):
    """A fixed +-1 pattern per image, independent of how images are chunked."""
    rng = np.random.default_rng([seed, image_index])
    return (rng.integers(0, 2, shape) * 2 - 1).astype(np.float32)


def transfer_rates(source_model, target_models, images, class_index=None, *,
                   epsilons=DEFAULT_EPSILONS, method: str = "fgsm", steps: int | None = None,
                   step_size: float = 1.0, resize_control: bool = True,
                   noise_control: bool = True, seed: int = 0, fit: str = "crop",
                   batch_size: int = 16, progress: bool = True) -> TransferTable:
    """Craft untargeted attacks on ``source_model``, test them on ``target_models``.

    Each image is prepared at the source model's size and attacked there
    (epsilon in pixel levels of 0..255). For a target model with another
    input size, the clean and the adversarial image are both resized
    bilinearly (:func:`resize_batch`) to its size, so the only difference
    between them is the (resized) perturbation; success = the target's
    top-1 on the adversarial image differs from its top-1 on the clean one.

    Two controls keep the table honest. Resizing blurs the perturbation and
    weakens transfer by itself: ``resize_control`` adds a row per target
    size where the *source* model sees its own adversarial image resized to
    that size and back. A doubtful top-1 flips under any small change:
    ``noise_control`` adds a row per model for random +-epsilon sign noise
    (the same max-norm; pattern fixed by ``seed`` and the image's position).
    """
    _check_model(source_model, "source_model")
    _check_method(method)
    check_batch_size(batch_size)
    seed = check_seed(seed, allow_none=False)
    epsilon_values = _check_epsilons(epsilons)
    targets = _named_models(target_models)
    source_size = input_size(source_model)
    batch, _ = model_batch(source_model, images, fit=fit)
    source_name = source_model.name

    def resized_to(size):
        return lambda images: resize_batch(images, size)

    def round_trip(size):
        return lambda images: resize_batch(resize_batch(images, size), source_size)

    # A view = (row name, model, what the model is shown of a source-size batch, perturbation).
    views = [(f"{source_name} (white-box)", source_model, resized_to(source_size), "attack")]
    views += [(f"{name} (transfer)", model, resized_to(input_size(model)), "attack")
              for name, model in targets]
    if resize_control:
        sizes = []
        for _, model in targets:
            if input_size(model) != source_size and input_size(model) not in sizes:
                sizes.append(input_size(model))
        views += [(f"{source_name} via {size[0]} px and back", source_model, round_trip(size),
                   "attack") for size in sizes]
    if noise_control:
        views += [(f"{name} (random sign noise)", model, resized_to(input_size(model)), "noise")
                  for name, model in [(source_name, source_model)] + targets]
    success = np.zeros((len(views), len(batch), len(epsilon_values)), dtype=bool)
    labels_all = (None if class_index is None else
                  resolve_for_model(source_model, class_index, batch))
    chunks = range(0, len(batch), batch_size)
    with _progress(len(chunks) * len(epsilon_values), progress, "transfer") as bar:
        for start in chunks:
            part = slice(start, start + batch_size)
            clean = batch[part]
            baselines = [np.argmax(predict_logits(model, show(clean), batch_size), axis=-1)
                         for _, model, show, _ in views]
            labels = baselines[0].astype(np.int64) if labels_all is None else labels_all[part]
            signs = np.stack([_random_signs(clean.shape[1:], seed, start + i)
                              for i in range(len(clean))]) if noise_control else None
            for column, epsilon in enumerate(epsilon_values):
                epsilons_here = np.full(len(clean), epsilon, dtype=np.float32)
                step_counts, step_sizes = _method_schedule(method, epsilons_here, steps,
                                                           step_size)
                perturbed = {"attack": _attack_chunk(
                    source_model, clean, labels, epsilons_here, targeted=False,
                    steps=step_counts, step_size=step_sizes)}
                if noise_control:
                    perturbed["noise"] = np.clip(clean + epsilon * signs, 0.0, 255.0)
                for row, ((_, model, show, kind), baseline) in enumerate(zip(views, baselines)):
                    predicted = np.argmax(predict_logits(model, show(perturbed[kind]), batch_size), -1)
                    success[row, part, column] = predicted != baseline
                bar.update()
    return TransferTable(source_name, method, epsilon_values, [v[0] for v in views], success)
