"""A Keras-style training loop for any Module: ``fit``, ``evaluate``, ``predict``.

    history = fit(model, "binary_crossentropy", Adam(model.parameters()), x, y,
                  epochs=10, batch_size=32, validation_split=0.2, metrics=("accuracy",))
    history["loss"], history["val_loss"], history["accuracy"], history["val_accuracy"]  # per epoch

One training step is the PyTorch recipe, spelled out:

    optimizer.zero_grad();  y_hat = model(*x_batch);  l = loss(y_batch, y_hat)
    l.backward();  optimizer.step()

Conventions (Keras's where Keras has one):

* ``x`` is an array (B, ...) or a tuple/list of arrays for a multi-input model, called as
  ``model(x1, x2, ...)``; floating inputs are cast to the model's parameter dtype, integer inputs
  (token ids) are kept. ``y`` is one array (B, ...).
* ``validation_split=s`` holds out the *last* samples, like Keras: the first ⌊B (1 − s)⌋ samples
  train, the remaining ones validate (split before shuffling, so the same ones every epoch).
* The epoch's ``loss`` is the mean of the batch losses weighted by batch size (Keras's tracker).
* ``"accuracy"`` follows the loss, as Keras resolves it: binary (threshold 0.5 on probabilities, 0
  on logits), categorical (argmax vs argmax) or sparse categorical (argmax vs integer label); for a
  plain callable loss it is inferred from the shapes and label dtype.
* Shuffling draws from fit's OWN generator, ``numpy.random.default_rng(seed)``; without ``seed=``
  its seed is drawn once from tinyattn's generator (``tinyattn.manual_seed``). So seeded runs repeat
  exactly, and two models trained at once in two threads (with ``seed=``) shuffle exactly as they
  would one after the other. (Dropout layers still draw from tinyattn's global generator.)
* A loss that becomes NaN or ±inf stops training at once with a FloatingPointError naming the epoch
  and the batch, before that batch's update reaches the weights (Keras's TerminateOnNaN, on by
  default; ``terminate_on_nan=False`` keeps training).
"""
import math
import sys
import time
import warnings

import numpy as np

from . import backend
from .autograd import Tensor, no_grad
from . import losses as _losses
from .optim import clip_grad_norm

try:  # tqdm is optional: a progress bar when installed, one plain line per epoch otherwise
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

__all__ = ["fit", "evaluate", "predict", "History"]


class History(dict):
    """``{"loss": [...], "val_loss": [...], ...}``, one entry per epoch; ``.history`` is itself
    (so Keras code reading ``history.history["loss"]`` works) and ``.epoch`` the epoch indices."""

    @property
    def history(self):
        return self

    @property
    def epoch(self):
        return list(range(len(self.get("loss", []))))


# -- data plumbing -----------------------------------------------------------------------------------
def _inputs(x, name, what="x"):
    """The list of input arrays (one per model input); an empty dataset is an error."""
    multi = isinstance(x, (tuple, list)) and len(x) > 0 and hasattr(x[0], "shape")
    xs = list(x) if multi else [x]
    xs = [a.data if isinstance(a, Tensor) else (a if hasattr(a, "shape") else np.asarray(a)) for a in xs]
    if any(a.ndim == 0 for a in xs):
        raise ValueError(f"{name}: {what} must have a leading sample axis, got a scalar")
    n = {int(a.shape[0]) for a in xs}
    if len(n) != 1:
        raise ValueError(f"{name}: the inputs have different numbers of samples {[a.shape for a in xs]}")
    if n == {0}:
        raise ValueError(f"{name}: {what} is empty (0 samples, shapes {[tuple(a.shape) for a in xs]}); "
                         f"pass at least one sample")
    return xs


def _check_batch_size(batch_size, name):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name}: batch_size must be a positive integer, got {batch_size!r}")


def _param_info(model):
    ps = model.parameters()
    dtype = next((p.dtype for p in ps if p.dtype.kind == "f"), None)
    device = ps[0].device if ps else ("gpu" if backend.get_backend() == "cupy" else "cpu")
    return dtype, device


def _take(a, idx, dtype, device):
    """a[idx] as a Tensor on ``device``; floating data cast to the model dtype (if known)."""
    if backend.is_gpu_array(a):
        idx = backend.to_device(idx, "gpu")
    b = a[idx]
    if dtype is not None and b.dtype.kind == "f" and b.dtype != dtype:
        b = b.astype(dtype)
    return Tensor(backend.to_device(b, device))


def _split_validation(xs, y, validation_split, name):
    n = int(xs[0].shape[0])
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"{name}: validation_split must lie in [0, 1), got {validation_split}")
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at in (0, n):
        raise ValueError(f"{name}: {n} samples cannot be split into training and validation sets with "
                         f"validation_split={validation_split}")
    return [a[:split_at] for a in xs], y[:split_at], [a[split_at:] for a in xs], y[split_at:]


# -- accuracy ------------------------------------------------------------------------------------------
def _accuracy_rule(loss):
    """('binary', threshold) / ('categorical', None) / ('sparse', None) / (None, None) = infer."""
    name = getattr(loss, "name", None) or getattr(loss, "__name__", "") or ""
    if "sparse" in name:
        return "sparse", None
    if "binary" in name:
        return "binary", 0.0 if getattr(loss, "from_logits", False) else 0.5
    if "categorical" in name:
        return "categorical", None
    return None, None


def _count_correct(rule, y, pred):
    """(number correct, number of predictions) for one batch; y, pred are arrays on one device. The
    count stays there (a 0-d array): the callers sum it and read it once, not once per batch."""
    kind, threshold = rule
    if kind is None:                                   # infer like Keras's "accuracy" string
        if y.dtype.kind in "iu" and (y.ndim == pred.ndim - 1 or (y.ndim == pred.ndim and y.shape[-1] == 1
                                                                 and pred.shape[-1] > 1)):
            kind = "sparse"
        elif pred.shape[-1] == 1:
            kind, threshold = "binary", 0.5
        elif y.shape == pred.shape:
            kind = "categorical"
        else:
            kind = "sparse"
    if kind == "binary":
        t = y.reshape(pred.shape) if y.size == pred.size else y
        hit = (pred > (0.5 if threshold is None else threshold)) == (t > 0.5)
    elif kind == "categorical":
        hit = pred.argmax(axis=-1) == y.argmax(axis=-1)
    else:
        labels = y.reshape(pred.shape[:-1]) if y.size == int(np.prod(pred.shape[:-1])) else y
        hit = pred.argmax(axis=-1) == labels
    return hit.sum(), int(hit.size)


def _check_metrics(metrics, name):
    metrics = tuple(metrics or ())
    for m in metrics:
        if m not in ("accuracy", "acc"):
            raise ValueError(f"{name}: unknown metric {m!r}; supported: 'accuracy'")
    return bool(metrics)


# -- evaluation --------------------------------------------------------------------------------------
def _eval_batches(model, xs, batch_size):
    """Yield (indices, output) batch by batch, in order, in eval mode under ``no_grad``; the model's
    train/eval mode is restored afterwards."""
    dtype, device = _param_info(model)
    n = int(xs[0].shape[0])
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for start in range(0, n, batch_size):
                idx = np.arange(start, min(start + batch_size, n))
                yield idx, model(*[_take(a, idx, dtype, device) for a in xs])
    finally:
        model.train(was_training)


def _penalties(model):
    """The layers' regularization losses (weight penalties, and activity penalties of the last call),
    which Keras adds to the loss in ``fit``, ``evaluate`` and ``val_loss`` alike."""
    return model.regularization_losses() if hasattr(model, "regularization_losses") else ()


def _run_eval(model, loss_fn, xs, y, batch_size, want_acc):
    """(mean loss weighted by batch size, accuracy or None) in eval mode, without a graph."""
    dtype, device = _param_info(model)
    rule = _accuracy_rule(loss_fn)
    total, correct, count = 0.0, 0, 0
    for idx, pred in _eval_batches(model, xs, batch_size):
        yb = _take(y, idx, dtype, device)
        value = loss_fn(yb, pred)
        for r in _penalties(model):             # Keras: evaluate's loss includes the layers' losses
            value = value + r
        total += float(value.item()) * len(idx)
        if want_acc:
            c, k = _count_correct(rule, yb.data, pred.data)
            correct, count = correct + c, count + k
    return total / int(xs[0].shape[0]), (int(correct) / count if want_acc and count else None)


def evaluate(model, loss, x, y, batch_size=32, metrics=()):
    """The loss (and metrics) of ``model`` on (x, y), in eval mode, without building a graph.

    x: array (B, ...) or tuple of arrays; y: array (B, ...); loss: a name or callable
    (y_true, y_pred) -> scalar Tensor. Returns the loss as a float (the batch losses' mean weighted
    by batch size), or, with ``metrics=("accuracy",)``, a dict ``{"loss": ..., "accuracy": ...}``.
    """
    _check_batch_size(batch_size, "evaluate")
    loss_fn = _losses.get(loss)
    want_acc = _check_metrics(metrics, "evaluate")
    xs = _inputs(x, "evaluate")
    y = y.data if isinstance(y, Tensor) else np.asarray(y) if not hasattr(y, "shape") else y
    if int(y.shape[0]) != int(xs[0].shape[0]):
        raise ValueError(f"evaluate: x has {xs[0].shape[0]} samples but y has {y.shape[0]}")
    val, acc = _run_eval(model, loss_fn, xs, y, batch_size, want_acc)
    return {"loss": val, "accuracy": acc} if want_acc else val


def predict(model, x, batch_size=32):
    """``model``'s outputs on x, batch by batch, in eval mode under ``no_grad``, as NumPy.

    x: array (B, ...) or tuple of arrays. Returns an array (B, ...) (a tuple of arrays for a model
    that returns a tuple or list, e.g. an LSTM with ``return_state``). The model's train/eval mode
    is restored afterwards.
    """
    _check_batch_size(batch_size, "predict")
    outs = [tuple(backend.as_numpy(o.data) for o in out) if isinstance(out, (tuple, list))
            else backend.as_numpy(out.data)
            for _, out in _eval_batches(model, _inputs(x, "predict"), batch_size)]
    if outs and isinstance(outs[0], tuple):
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*outs))
    return np.concatenate(outs, axis=0)


def _check_coverage(model, optimizer):
    """Warn when trainable parameters of the model are not in the optimizer: typically an optimizer
    made before a lazily built model had created its weights (they would silently never train)."""
    owned = {id(p) for p in optimizer.params()}
    left = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owned]
    if left:
        warnings.warn(f"fit: {len(left)} trainable parameter(s) of the model are not in the optimizer, "
                      f"so they will not train: {left[:5]}{' ...' if len(left) > 5 else ''}. Was the "
                      f"optimizer created before the model was built? Call the model once on a sample "
                      f"input, then create the optimizer from model.parameters().", stacklevel=3)


# -- training ----------------------------------------------------------------------------------------
def fit(model, loss, optimizer, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None,
        shuffle=True, verbose=1, metrics=(), clipnorm=None, seed=None, terminate_on_nan=True):
    """Train ``model`` on (x, y) with ``optimizer`` for ``epochs`` passes; return a :class:`History`.

    model: a Module, called as ``model(*x_batch)``; loss: a name (``"mse"``, ``"mae"``,
    ``"binary_crossentropy"``, ``"categorical_crossentropy"``, ``"sparse_categorical_crossentropy"``),
    a ``tinyattn.losses.Loss`` or any callable (y_true Tensor, y_pred Tensor) -> scalar Tensor;
    optimizer: a ``tinyattn.optim`` optimizer over the model's parameters;
    x: array (B, ...) or tuple/list of arrays (multi-input); y: array (B, ...);
    validation_split: fraction s in [0, 1) held out from the *end* of the data (Keras);
    validation_data: (x_val, y_val) instead; shuffle: reshuffle the training part every epoch;
    verbose: 0 silent, 1 a tqdm progress bar (a plain line without tqdm), 2 one line per epoch;
    metrics: () or ("accuracy",); clipnorm: clip the global gradient norm to this before each step;
    seed: seeds fit's own shuffling generator (default: one draw from tinyattn's generator, which
    ``tinyattn.manual_seed`` seeds); terminate_on_nan: raise FloatingPointError naming the epoch and
    batch as soon as a batch loss is NaN or ±inf, before that batch updates the weights (default
    True, Keras's TerminateOnNaN); False trains on and records the non-finite loss.

    Returns ``History`` with per-epoch lists: ``loss`` (+ ``accuracy``), and ``val_loss``
    (+ ``val_accuracy``) when there is validation data.
    """
    if epochs < 0:
        raise ValueError(f"fit: need epochs >= 0, got {epochs}")
    _check_batch_size(batch_size, "fit")
    loss_fn = _losses.get(loss)
    want_acc = _check_metrics(metrics, "fit")
    rule = _accuracy_rule(loss_fn)
    xs = _inputs(x, "fit")
    y = y.data if isinstance(y, Tensor) else np.asarray(y) if not hasattr(y, "shape") else y
    if int(y.shape[0]) != int(xs[0].shape[0]):
        raise ValueError(f"fit: x has {xs[0].shape[0]} samples but y has {y.shape[0]}")
    val = None
    if validation_data is not None:
        vx, vy = validation_data
        val = (_inputs(vx, "fit", "validation_data x"), vy.data if isinstance(vy, Tensor) else np.asarray(vy)
               if not hasattr(vy, "shape") else vy)
    elif validation_split:
        xs, y, vxs, vy = _split_validation(xs, y, validation_split, "fit")
        val = (vxs, vy)
    n = int(xs[0].shape[0])
    n_batches = math.ceil(n / batch_size)
    history = History(loss=[])
    if want_acc:
        history["accuracy"] = []
    if val is not None:
        history["val_loss"] = []
        if want_acc:
            history["val_accuracy"] = []
    if seed is None:       # one draw from the global generator: manual_seed fixes it, and the
        seed = int(backend.rng(np).integers(2 ** 63))          # draw happens once, at the start
    shuffler = np.random.default_rng(seed)   # fit's own: other threads' draws cannot interleave
    was_training = model.training
    try:
        for epoch in range(epochs):
            model.train()
            t0 = time.perf_counter()
            order = shuffler.permutation(n) if shuffle else np.arange(n)
            bar = None
            if verbose == 1 and _tqdm is not None and sys.stdout.isatty():   # logs get plain lines
                bar = _tqdm(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}", leave=True,
                            file=sys.stdout, dynamic_ncols=True)
            total, correct, count = 0.0, 0, 0
            for b, start in enumerate(range(0, n, batch_size)):
                dtype, device = _param_info(model)
                idx = order[start:start + batch_size]
                xb = [_take(a, idx, dtype, device) for a in xs]
                yb = _take(y, idx, dtype, device)
                optimizer.zero_grad()
                pred = model(*xb)
                value = loss_fn(yb, pred)
                if not isinstance(value, Tensor) or value.size != 1:
                    raise TypeError(f"fit: the loss must return a scalar Tensor, got "
                                    f"{getattr(value, 'shape', type(value).__name__)}")
                for r in _penalties(model):
                    value = value + r                   # Keras: the layers' losses join the loss
                loss_value = float(value.item())
                if terminate_on_nan and not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"fit: the loss is {loss_value} at epoch {epoch + 1}/{epochs}, batch {b + 1}/"
                        f"{n_batches} (samples {start}..{start + len(idx) - 1} of the shuffled epoch); "
                        f"training stopped before this batch updated the weights. Look for NaN/inf in "
                        f"x or y (np.isfinite(x).all()), a too-high learning rate, or log(0) in a custom "
                        f"loss; pass terminate_on_nan=False to train on regardless")
                value.backward()
                if epoch == 0 and b == 0:
                    _check_coverage(model, optimizer)
                if clipnorm is not None:
                    clip_grad_norm(optimizer.params(), clipnorm)
                optimizer.step()
                if hasattr(model, "apply_constraints"):
                    model.apply_constraints()           # Keras: constraints after each update
                total += loss_value * len(idx)
                if want_acc:
                    c, k = _count_correct(rule, yb.data, pred.data)     # summed on the device
                    correct, count = correct + c, count + k
                if bar is not None:
                    seen = min(start + batch_size, n)
                    post = {"loss": f"{total / seen:.4f}"}
                    if want_acc:
                        post["acc"] = f"{int(correct) / max(count, 1):.4f}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
            history["loss"].append(total / n)
            if want_acc:
                history["accuracy"].append(int(correct) / max(count, 1))     # one read per epoch
            if val is not None:
                vl, va = _run_eval(model, loss_fn, val[0], val[1], batch_size, want_acc)
                history["val_loss"].append(vl)
                if want_acc:
                    history["val_accuracy"].append(va)
            line = " - ".join(f"{k}: {v[-1]:.4f}" for k, v in history.items())
            if bar is not None:
                bar.set_postfix_str(line, refresh=True)
                bar.close()
            elif verbose:
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - t0:.1f}s - {line}", flush=True)
    finally:
        model.train(was_training)
    return history
