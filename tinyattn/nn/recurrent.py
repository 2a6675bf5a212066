"""Recurrent layers with Keras's names, arguments and weight layouts: LSTMCell, LSTM, GRUCell, GRU,
SimpleRNNCell, SimpleRNN, Bidirectional.

Two implementations of every LSTM / GRU step, chosen by ``fused`` (a constructor argument):

* ``fused=False`` — the TEXTBOOK form: :func:`lstm_step`, :func:`gru_step`, :func:`simple_rnn_step`
  below, the paper's equations written with plain differentiable ops (matmul, sigmoid, tanh, ⊙) and a
  Python loop over time; autograd derives the backward (BPTT) and double backward works. Read these
  to learn the cells.
* ``fused=True`` (the default for LSTM / GRU) — the fast kernels of :mod:`tinyattn.kernels.rnn`: one
  graph node for the whole sequence, a hand-written backward, pre-scaled weights, pooled buffers.
  They are tested equal to the textbook form (outputs and gradients, float64, masks, initial states,
  go_backwards: tests/test_kernels.py). SimpleRNN is textbook only.

Shapes: B batch, T time steps, d input features, u units. Inputs are batch-major (B, T, d) like
Keras; internally the sequence runs time-major:

    x (B, T, d) ──transpose──▶ (T, B, d) ──one matmul: x·K + b──▶ xk (T, B, n·u)
        ──fused loop (tinyattn.kernels.rnn)──▶ out (T, B, u), final states (B, u)

so the whole sequence costs one big input matmul, T small recurrent matmuls, and a single graph node
for the loop (see ``LSTMSequenceFn`` for the math and the backward pass).

Floating inputs and initial states are cast to the layer's dtype on entry (as Keras layers do);
masks go through ``as_mask`` (bool or 0/1, lists, NumPy/CuPy, Tensors).

Masks (B, T), True = a real step, follow Keras 3: a masked step keeps the state, and its output
repeats the previous output (zeros before the first real step). ``go_backwards=True`` reads the
sequence from the end and returns outputs in that (reversed) processing order, like Keras.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor
from .. import functions as F
from ..functions.masks import as_mask
from ..kernels.rnn import LSTMCellFn, LSTMSequenceFn, BiLSTMSequenceFn, GRUCellFn, GRUSequenceFn
from . import init, regularizers, constraints
from .layers import get_activation
from .module import Module, Parameter, cast_input

__all__ = ["LSTMCell", "LSTM", "GRUCell", "GRU", "SimpleRNNCell", "SimpleRNN", "Bidirectional",
           "lstm_step", "gru_step", "simple_rnn_step"]


def _check_activations(name, activation, recurrent_activation, fused=True):
    if not fused:
        get_activation(activation or "tanh", name)
        get_activation(recurrent_activation or "sigmoid", name, "recurrent_activation")
        return
    if activation not in ("tanh", None) or recurrent_activation not in ("sigmoid", None):
        raise ValueError(f"{name}: only activation='tanh' and recurrent_activation='sigmoid' are "
                         f"implemented by the fused kernel, got {activation!r} and {recurrent_activation!r}; "
                         f"pass fused=False for the textbook cell, which takes any activation")


# ------------------------------------------------------------------------------------------------
# The textbook cells: the equations, on plain differentiable ops (autograd does the backward)
# ------------------------------------------------------------------------------------------------
def lstm_step(x, h, c, K, R, b=None, activation=F.tanh, recurrent_activation=F.sigmoid):
    """One LSTM step, as in Hochreiter & Schmidhuber 1997 / Gers et al. 2000 (Keras's gate order i, f, c, o).

        z = x·K + h·R + b                        (B, 4u)   K (d, 4u), R (u, 4u), b (4u,)
        i = σ(z[:, 0:u])                         input gate
        f = σ(z[:, u:2u])                        forget gate
        g = tanh(z[:, 2u:3u])                    candidate cell ("c" block in Keras)
        o = σ(z[:, 3u:4u])                       output gate
        c' = f⊙c + i⊙g,    h' = o⊙tanh(c')       (B, u) each
    x (B, d), h, c (B, u). Returns (h', c'). σ and tanh are ``recurrent_activation`` / ``activation``.
    """
    u = h.shape[-1]
    z = x @ K + h @ R
    if b is not None:
        z = z + b
    i = recurrent_activation(z[:, 0:u])
    f = recurrent_activation(z[:, u:2 * u])
    g = activation(z[:, 2 * u:3 * u])
    o = recurrent_activation(z[:, 3 * u:4 * u])
    c_new = f * c + i * g
    h_new = o * activation(c_new)
    return h_new, c_new


def gru_step(x, h, K, R, b=None, reset_after=True, activation=F.tanh, recurrent_activation=F.sigmoid):
    """One GRU step, Cho et al. 2014 (Keras's gate order z, r, h; ``reset_after`` both ways).

        K (d, 3u), R (u, 3u);  b (2, 3u) with reset_after (row 0 input bias b⁰, row 1 recurrent b¹), else (3u,)
        reset_after (Keras's default, cuDNN's):
            xk = x·K + b⁰,  rk = h·R + b¹                                    (B, 3u)
            z = σ(xk_z + rk_z),  r = σ(xk_r + rk_r),  ĥ = tanh(xk_h + r⊙rk_h)
        reset before (the paper's original):
            z = σ(x·K_z + h·R_z + b_z),  r = σ(x·K_r + h·R_r + b_r),  ĥ = tanh(x·K_h + (r⊙h)·R_h + b_h)
        h' = z⊙h + (1 − z)⊙ĥ                                                  (B, u)
    x (B, d), h (B, u). Returns h'.
    """
    u = h.shape[-1]
    b_in = b_rec = None
    if b is not None:
        b_in, b_rec = (b[0], b[1]) if reset_after else (b, None)
    xk = x @ K
    if b_in is not None:
        xk = xk + b_in
    if reset_after:
        rk = h @ R
        if b_rec is not None:
            rk = rk + b_rec
        z = recurrent_activation(xk[:, 0:u] + rk[:, 0:u])
        r = recurrent_activation(xk[:, u:2 * u] + rk[:, u:2 * u])
        hh = activation(xk[:, 2 * u:] + r * rk[:, 2 * u:])
    else:
        z = recurrent_activation(xk[:, 0:u] + h @ R[:, 0:u])
        r = recurrent_activation(xk[:, u:2 * u] + h @ R[:, u:2 * u])
        hh = activation(xk[:, 2 * u:] + (r * h) @ R[:, 2 * u:])
    return z * h + (1 - z) * hh


def simple_rnn_step(x, h, K, R, b=None, activation=F.tanh):
    """One Elman / Keras ``SimpleRNN`` step:  h' = act(x·K + h·R + b),  K (d, u), R (u, u), b (u,);
    x (B, d), h (B, u) -> h' (B, u)."""
    z = x @ K + h @ R
    if b is not None:
        z = z + b
    return activation(z)


def _textbook_sequence(step, xt, states, mask_t, zero_output):
    """Run ``step(x_t, *states) -> new states`` (the first is the output h) over time-major xt (T, B, d).

    Keras 3's mask rule, written out: with m (B, 1) the step's mask,
        states_t = where(m, new, states_{t−1}),   out_t = where(m, h_new, out_{t−1})  (out_{−1} = 0)
    or out_t = where(m, h_new, 0) with ``zero_output``. Returns (out (T, B, u), final states).
    """
    outs = []
    prev = None
    for t in range(xt.shape[0]):
        new = step(xt[t], *states)
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        if mask_t is None:
            out = new[0]
            states = new
        else:
            keep = mask_t[t][:, None]                          # (B, 1), True = a real step
            zero = new[0] * 0.0
            out = F.where(keep, new[0], zero if (prev is None or zero_output) else prev)
            states = [F.where(keep, n, s) for n, s in zip(new, states)]
        outs.append(out)
        prev = out
    return F.stack(outs, axis=0), states


def _check_units(name, units):
    if isinstance(units, (bool, np.bool_)) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError(f"{name}: units must be a positive integer, got {units!r}")


def _as_tensor(v, dtype, like):
    """A state given as an array or list becomes a constant Tensor on ``like``'s device."""
    if isinstance(v, Tensor):
        return v
    return Tensor(backend.get_array_module(like.data).asarray(v, dtype=dtype))


class _Cell(Module):
    """Shared parts of LSTMCell / GRUCell: the kernel (d, n·u), recurrent kernel (u, n·u) and bias."""
    n_gates = 4

    def __init__(self, units, use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", input_dim=None,
                 dtype="float32"):
        super().__init__()
        _check_units(type(self).__name__, units)
        self.units, self.use_bias = int(units), use_bias
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dtype = np.dtype(dtype)

    def _set_activations(self, fused, activation, recurrent_activation):
        self.fused = bool(fused)
        self._act = get_activation(activation or "tanh", type(self).__name__)
        self._rec_act = get_activation(recurrent_activation or "sigmoid", type(self).__name__,
                                       "recurrent_activation")

    def _maybe_build(self, input_dim):
        if input_dim is not None:
            self.build((None, input_dim))

    def _bias_shape(self):
        return (self.n_gates * self.units,)

    def _init_bias(self):
        return init.get(self.bias_initializer)(self._bias_shape(), dtype=self.dtype)

    def build(self, input_shape):
        d, n = input_shape[-1], self.n_gates * self.units
        self.input_dim = d
        self.kernel = Parameter(init.get(self.kernel_initializer)((d, n), dtype=self.dtype), name="kernel")
        self.recurrent_kernel = Parameter(init.get(self.recurrent_initializer)((self.units, n), dtype=self.dtype),
                                          name="recurrent_kernel")
        if self.use_bias:
            self.bias = Parameter(self._init_bias(), name="bias")
        object.__setattr__(self, "built", True)

    def weights(self):
        return [self.kernel, self.recurrent_kernel] + ([self.bias] if self.use_bias else [])

    def _check_input(self, x, ndim):
        if x.ndim != ndim or x.shape[-1] != self.input_dim:
            want = "(B, d)" if ndim == 2 else "(B, T, d)"
            raise ValueError(f"{type(self).__name__}: expected input {want} with d = {self.input_dim}, "
                             f"got shape {x.shape}")

    def _state(self, s, x, B, what):
        if s is None:
            xp = backend.get_array_module(x.data)
            return Tensor(xp.zeros((B, self.units), dtype=x.dtype))
        s = _as_tensor(s, x.dtype, x)
        if s.shape != (B, self.units):
            raise ValueError(f"{type(self).__name__}: {what} must have shape (B, units) = "
                             f"{(B, self.units)}, got {s.shape}")
        return s


class LSTMCell(_Cell):
    """One LSTM step (Keras ``LSTMCell``): weights ``kernel`` (d, 4u), ``recurrent_kernel`` (u, 4u),
    ``bias`` (4u,), gate blocks i, f, c, o.

        z = x·K + h·R + b,  i, f, o = σ(zᵢ, z_f, z_o),  g = tanh(z_g)
        c' = f⊙c + i⊙g,  h' = o⊙tanh(c')

    Call: ``cell(x, states=[h, c])`` with x (B, d), h and c (B, u) (zeros when None) returns
    ``(h', [h', c'])`` like Keras. ``unit_forget_bias=True`` starts the f block of the bias at 1.
    ``fused=False``: the textbook step :func:`lstm_step` (plain ops; any ``activation`` /
    ``recurrent_activation``); ``fused=True`` (default): the kernel ``tinyattn.kernels.LSTMCellFn``.
    """
    n_gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, input_dim=None, dtype="float32",
                 fused=True):
        _check_activations("LSTMCell", activation, recurrent_activation, fused)
        super().__init__(units, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
                         input_dim, dtype)
        self._set_activations(fused, activation, recurrent_activation)
        self.unit_forget_bias = unit_forget_bias
        self._maybe_build(input_dim)

    def _init_bias(self):
        b = super()._init_bias()
        if self.unit_forget_bias:
            b[self.units:2 * self.units] = 1
        return b

    def forward(self, x, states=None, training=False):
        x = cast_input(self, x)
        self._check_input(x, 2)
        h, c = (None, None) if states is None else states
        h, c = cast_input(self, h, "states"), cast_input(self, c, "states")
        h, c = self._state(h, x, x.shape[0], "h"), self._state(c, x, x.shape[0], "c")
        if not self.fused:
            h, c = self.step(x, h, c)
            return h, [h, c]
        xk = x @ self.kernel
        if self.use_bias:
            xk = xk + self.bias
        h, c = LSTMCellFn()(xk, h, c, self.recurrent_kernel)
        return h, [h, c]

    def step(self, x, h, c):
        """The textbook step (:func:`lstm_step`) with this cell's weights: (h', c')."""
        return lstm_step(x, h, c, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else None,
                         self._act, self._rec_act)


class GRUCell(_Cell):
    """One GRU step (Keras ``GRUCell``): ``kernel`` (d, 3u), ``recurrent_kernel`` (u, 3u), gate blocks
    z, r, h; ``bias`` (2, 3u) with ``reset_after=True`` (row 0 input, row 1 recurrent), else (3u,).

        reset_after:  z = σ(x K_z + b0_z + h R_z + b1_z),  r alike,  ĥ = tanh(x K_h + b0_h + r⊙(h R_h + b1_h))
        otherwise:    z = σ(x K_z + h R_z + b_z),  r alike,     ĥ = tanh(x K_h + (r⊙h) R_h + b_h)
        h' = z⊙h + (1 − z)⊙ĥ

    Call: ``cell(x, states=h)`` (or ``[h]``), x (B, d), h (B, u) → ``(h', [h'])``.
    ``fused=False``: the textbook step :func:`gru_step`; ``fused=True`` (default): ``tinyattn.kernels.GRUCellFn``.
    """
    n_gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", reset_after=True, input_dim=None, dtype="float32", fused=True):
        _check_activations("GRUCell", activation, recurrent_activation, fused)
        super().__init__(units, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
                         input_dim, dtype)
        self._set_activations(fused, activation, recurrent_activation)
        self.reset_after = reset_after
        self._maybe_build(input_dim)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _split_bias(self):
        """(input bias (3u,) or None, recurrent bias (3u,) or None)."""
        if not self.use_bias:
            return None, None
        if self.reset_after:
            return self.bias[0], self.bias[1]
        return self.bias, None

    def forward(self, x, states=None, training=False):
        x = cast_input(self, x)
        self._check_input(x, 2)
        h = states[0] if isinstance(states, (list, tuple)) else states
        h = cast_input(self, h, "states")
        h = self._state(h, x, x.shape[0], "h")
        if not self.fused:
            h = self.step(x, h)
            return h, [h]
        b_in, b_rec = self._split_bias()
        xk = x @ self.kernel
        if b_in is not None:
            xk = xk + b_in
        args = (xk, h, self.recurrent_kernel) + ((b_rec,) if b_rec is not None else ())
        h = GRUCellFn(self.reset_after)(*args)
        return h, [h]

    def step(self, x, h):
        """The textbook step (:func:`gru_step`) with this cell's weights: h'."""
        return gru_step(x, h, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else None,
                        self.reset_after, self._act, self._rec_act)


class SimpleRNNCell(_Cell):
    """One Elman RNN step (Keras ``SimpleRNNCell``), textbook only (:func:`simple_rnn_step`):

        h' = act(x·K + h·R + b)       ``kernel`` K (d, u), ``recurrent_kernel`` R (u, u), ``bias`` b (u,)

    Call: ``cell(x, states=h)`` (or ``[h]``), x (B, d), h (B, u) (zeros when None) → ``(h', [h'])``.
    """
    n_gates = 1

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", input_dim=None,
                 dtype="float32", fused=False):
        if fused:
            raise ValueError("SimpleRNNCell: there is no fused kernel for the simple RNN; it is textbook "
                             "only (fused=False)")
        super().__init__(units, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
                         input_dim, dtype)
        self._set_activations(False, activation if activation is not None else "linear", None)
        self._maybe_build(input_dim)

    def forward(self, x, states=None, training=False):
        x = cast_input(self, x)
        self._check_input(x, 2)
        h = states[0] if isinstance(states, (list, tuple)) else states
        h = self._state(cast_input(self, h, "states"), x, x.shape[0], "h")
        h = self.step(x, h)
        return h, [h]

    def step(self, x, h):
        """The textbook step (:func:`simple_rnn_step`) with this cell's weights: h'."""
        return simple_rnn_step(x, h, self.kernel, self.recurrent_kernel, self.bias if self.use_bias else None,
                               self._act)


class _RNN(Module):
    """Shared sequence plumbing of LSTM and GRU: masks, go_backwards, time-major layout, outputs."""

    def __init__(self, cell, return_sequences, return_state, go_backwards, zero_output_for_mask, config):
        super().__init__()
        self.cell = cell
        for w in ("kernel", "recurrent", "bias"):       # Keras: the cell's weights are regularized
            name = "recurrent_kernel" if w == "recurrent" else w
            cell.add_weight_regularizer(name, regularizers.get(config.get(f"{w}_regularizer")),
                                        constraints.get(config.get(f"{w}_constraint")))
        self.activity_regularizer = regularizers.get(config.get("activity_regularizer"))
        self.units = cell.units
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.zero_output_for_mask = zero_output_for_mask
        self.dtype = cell.dtype
        object.__setattr__(self, "_config", config)
        from ..kernels.rnn import register_user
        register_user(self)               # the shared LSTM/GRU buffer pool is emptied when the last layer goes

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        """Keras's RNN.compute_mask: the (first) input mask with ``return_sequences``, else None;
        with ``return_state`` a list [output mask, None per state]."""
        while isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * (2 if isinstance(self, LSTM) else 1)
        return out

    def get_config(self):
        """The constructor arguments (used by Bidirectional to build the backward copy)."""
        return dict(self._config, return_sequences=self.return_sequences, return_state=self.return_state,
                    go_backwards=self.go_backwards, zero_output_for_mask=self.zero_output_for_mask,
                    dtype=str(self.cell.dtype))

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__}: expected input (B, T, d), got shape {input_shape}")
        if not self.cell.built:
            self.cell.build(input_shape)
        object.__setattr__(self, "built", True)

    def weights(self):
        return self.cell.weights()

    def _prepare(self, x, mask, initial_state, n_states, reverse=None):
        """Check the call's arguments; return x time-major (T, B, d) (reversed in time with
        ``go_backwards``, or when ``reverse`` says so if given), the mask time-major (T, B) (reversed
        alike) or None, and the initial states (zeros if none)."""
        x = cast_input(self, x)
        name = type(self).__name__
        if x.ndim != 3 or x.shape[-1] != self.cell.input_dim:
            raise ValueError(f"{name}: expected input (B, T, d) with d = {self.cell.input_dim}, got shape {x.shape}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {x.shape})")
        xp = backend.get_array_module(x.data)
        mask = as_mask(mask, x, shape=(B, T), where=name)
        if mask is not None:
            mask = xp.broadcast_to(mask, (B, T))
        if initial_state is None:
            states = [None] * n_states
        else:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            if len(states) != n_states:
                raise ValueError(f"{name}: initial_state needs {n_states} tensor(s), got {len(states)}")
        states = [self.cell._state(cast_input(self, s, "initial_state"), x, B, "initial_state")
                  for s in states]
        xt = x.transpose(1, 0, 2)                       # (T, B, d), time-major
        if self.go_backwards if reverse is None else reverse:
            xt = F.flip(xt, 0)
            mask = None if mask is None else mask[:, ::-1]
        mask_t = None if mask is None else xp.ascontiguousarray(mask.T)
        return xt, mask_t, states

    def _finish(self, out, states):
        output = out.transpose(1, 0, 2) if self.return_sequences else out[out.shape[0] - 1]
        return [output] + states if self.return_state else output


class LSTM(_RNN):
    """Long short-term memory over a sequence (Keras ``LSTM``), fused: one Function for all T steps.

    Weights (``get_weights()`` order, Keras's): ``kernel`` (d, 4u) glorot-uniform,
    ``recurrent_kernel`` (u, 4u) orthogonal, ``bias`` (4u,) zeros with the forget block at 1
    (``unit_forget_bias``). Gate blocks i, f, c, o:

        zₜ = xₜ·K + hₜ₋₁·R + b;  cₜ = σ(f)⊙cₜ₋₁ + σ(i)⊙tanh(g);  hₜ = σ(o)⊙tanh(cₜ)

    Call: ``layer(x, mask=None, initial_state=None, training=False)`` with x (B, T, d), mask (B, T)
    boolean, initial_state [h0, c0] each (B, u). Returns hₜ of the last step (B, u), or all of them
    (B, T, u) with ``return_sequences``; with ``return_state`` the list [output, h_T, c_T].
    Masked steps keep the state; their output repeats the previous output (zeros before the first
    real step), or is zero with ``zero_output_for_mask``.
    ``fused=True`` (default): one kernel node (``tinyattn.kernels.LSTMSequenceFn``); ``fused=False``: the
    textbook loop of :func:`lstm_step` over time (autograd does BPTT; double backward works; any
    activations). The two are tested equal.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, zero_output_for_mask=False, dtype="float32",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, fused=True):
        _check_units("LSTM", units)
        _check_activations("LSTM", activation, recurrent_activation, fused)
        cfg = dict(units=units, activation=activation, recurrent_activation=recurrent_activation,
                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                   recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                   unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
                   recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                   activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                   recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, fused=fused)
        cell = LSTMCell(units, activation, recurrent_activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, unit_forget_bias, dtype=dtype, fused=fused)
        super().__init__(cell, return_sequences, return_state, go_backwards, zero_output_for_mask, cfg)

    def forward(self, x, mask=None, initial_state=None, training=False):
        xt, mask_t, (h0, c0) = self._prepare(x, mask, initial_state, 2)
        cell = self.cell
        if not cell.fused:                                   # the textbook loop: lstm_step per time step
            out, (h, c) = _textbook_sequence(cell.step, xt, [h0, c0], mask_t, self.zero_output_for_mask)
            return self._finish(out, [h, c])
        args = (xt, h0, c0, cell.kernel, cell.recurrent_kernel) + ((cell.bias,) if cell.use_bias else ())
        out, h, c = LSTMSequenceFn(mask_t, self.zero_output_for_mask)(*args)
        return self._finish(out, [h, c])


class GRU(_RNN):
    """Gated recurrent unit over a sequence (Keras ``GRU``), fused: one Function for all T steps.

    Weights: ``kernel`` (d, 3u), ``recurrent_kernel`` (u, 3u), ``bias`` (2, 3u) when ``reset_after``
    (Keras's default; row 0 input bias, row 1 recurrent bias) or (3u,). Gate blocks z, r, h:

        reset_after:  ĥ = tanh(x K_h + b0_h + r⊙(h R_h + b1_h));   otherwise ĥ = tanh(x K_h + (r⊙h) R_h + b_h)
        z, r = σ(x K + h R + b) blocks;   hₜ = z⊙hₜ₋₁ + (1 − z)⊙ĥ

    Call: ``layer(x, mask=None, initial_state=None, training=False)``, x (B, T, d), mask (B, T),
    initial_state h0 (B, u) (or [h0]). Returns (B, u) or (B, T, u); with ``return_state`` [output, h_T].
    ``fused=True`` (default): one kernel node (``tinyattn.kernels.GRUSequenceFn``); ``fused=False``: the
    textbook loop of :func:`gru_step` (tested equal).
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", return_sequences=False, return_state=False,
                 go_backwards=False, reset_after=True, zero_output_for_mask=False, dtype="float32",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, fused=True):
        _check_units("GRU", units)
        _check_activations("GRU", activation, recurrent_activation, fused)
        cfg = dict(units=units, activation=activation, recurrent_activation=recurrent_activation,
                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                   recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                   reset_after=reset_after, kernel_regularizer=kernel_regularizer,
                   recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                   activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                   recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint, fused=fused)
        cell = GRUCell(units, activation, recurrent_activation, use_bias, kernel_initializer,
                       recurrent_initializer, bias_initializer, reset_after, dtype=dtype, fused=fused)
        super().__init__(cell, return_sequences, return_state, go_backwards, zero_output_for_mask, cfg)
        self.reset_after = reset_after

    def forward(self, x, mask=None, initial_state=None, training=False):
        xt, mask_t, (h0,) = self._prepare(x, mask, initial_state, 1)
        cell = self.cell
        if not cell.fused:                                   # the textbook loop: gru_step per time step
            out, (h,) = _textbook_sequence(cell.step, xt, [h0], mask_t, self.zero_output_for_mask)
            return self._finish(out, [h])
        args = (xt, h0, cell.kernel, cell.recurrent_kernel) + ((cell.bias,) if cell.use_bias else ())
        out, h = GRUSequenceFn(self.reset_after, mask_t, self.zero_output_for_mask)(*args)
        return self._finish(out, [h])


class SimpleRNN(_RNN):
    """Fully-connected (Elman) RNN over a sequence (Keras ``SimpleRNN``), textbook only:

        hₜ = act(xₜ·K + hₜ₋₁·R + b)           K (d, u) glorot-uniform, R (u, u) orthogonal, b (u,) zeros

    Weights (``get_weights()``, Keras's order): ``kernel``, ``recurrent_kernel``, ``bias``. Call:
    ``layer(x, mask=None, initial_state=None, training=False)``, x (B, T, d), mask (B, T), initial_state
    h0 (B, u) (or [h0]). Returns (B, u) or (B, T, u) (``return_sequences``); with ``return_state``
    [output, h_T]. Masks, ``go_backwards`` and ``zero_output_for_mask`` as in LSTM / GRU.
    ``fused`` must stay False (there is no kernel: the loop of :func:`simple_rnn_step` is all there is).
    """

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", return_sequences=False,
                 return_state=False, go_backwards=False, zero_output_for_mask=False, dtype="float32",
                 fused=False):
        _check_units("SimpleRNN", units)
        if fused:
            raise ValueError("SimpleRNN: there is no fused kernel for the simple RNN; it is textbook only "
                             "(fused=False)")
        cfg = dict(units=units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                   recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer)
        cell = SimpleRNNCell(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                             bias_initializer, dtype=dtype)
        super().__init__(cell, return_sequences, return_state, go_backwards, zero_output_for_mask, cfg)

    def forward(self, x, mask=None, initial_state=None, training=False):
        xt, mask_t, (h0,) = self._prepare(x, mask, initial_state, 1)
        out, (h,) = _textbook_sequence(self.cell.step, xt, [h0], mask_t, self.zero_output_for_mask)
        return self._finish(out, [h])


class Bidirectional(Module):
    """Run a recurrent layer forwards and a copy of it backwards, and merge (Keras ``Bidirectional``).

    ``backward_layer`` defaults to a fresh layer with the same configuration and ``go_backwards``
    flipped. Weights: the forward layer's, then the backward layer's. With ``return_sequences`` the
    backward output (B, T, u) is flipped back in time so step t of both lines up, then
    ``merge_mode``: "concat" → (…, 2u), "sum" → y_f + y_b, "ave" → (y_f + y_b)/2, "mul" → y_f⊙y_b,
    None → [y_f, y_b]. With ``return_state``: [merged (or y_f, y_b), *forward states, *backward states].
    ``initial_state``: the forward layer's states followed by the backward layer's. As in Keras,
    both layers get ``zero_output_for_mask = return_sequences`` (masked steps output zeros).

    ``fused=True`` (default): when both layers are fused LSTMs with the same settings (units, bias,
    dtype, mask rule; no activity regularizer), both directions run in ONE time loop
    (``tinyattn.kernels.BiLSTMSequenceFn``: one batched matmul and one pass of each gate operation
    per step for the two directions); otherwise, or with ``fused=False``, the two layers run one after
    the other. The two are tested equal.
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, dtype=None, fused=True):
        super().__init__()
        self.fused = bool(fused)
        if merge_mode not in ("concat", "sum", "ave", "mul", None):
            raise ValueError(f"Bidirectional: merge_mode must be 'concat', 'sum', 'ave', 'mul' or None, "
                             f"got {merge_mode!r}")
        if not isinstance(layer, _RNN):
            raise TypeError(f"Bidirectional: expected an LSTM, GRU or SimpleRNN layer, got {type(layer).__name__}")
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["go_backwards"] = not layer.go_backwards
            if dtype is not None:
                cfg["dtype"] = dtype
            backward_layer = type(layer)(**cfg)
        if backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Bidirectional: backward_layer must run the other way: its go_backwards "
                             f"is {backward_layer.go_backwards}, the same as the forward layer's")
        if (backward_layer.return_sequences != layer.return_sequences
                or backward_layer.return_state != layer.return_state):
            raise ValueError("Bidirectional: forward and backward layers must agree on return_sequences "
                             "and return_state")
        for lay in (layer, backward_layer):          # as in Keras: masked steps output zeros
            lay.zero_output_for_mask = lay.return_sequences
        self.forward_layer, self.backward_layer = layer, backward_layer
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        """Keras's Bidirectional.compute_mask: the input mask on the (merged) sequence output(s)
        with ``return_sequences``, None otherwise; None for the states."""
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else [mask]
        else:
            out = [None, None] if self.merge_mode is None else [None]
        if self.return_state:
            n = 2 if isinstance(self.forward_layer, LSTM) else 1
            return out + [None] * (2 * n)
        return out if len(out) > 1 else out[0]

    def weights(self):
        return self.forward_layer.weights() + self.backward_layer.weights()

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        object.__setattr__(self, "built", True)

    def _fusable(self):
        """Whether both directions can run in one loop (:class:`BiLSTMSequenceFn`): two fused LSTMs
        that agree on everything the kernel shares; an activity regularizer needs the layers' own calls."""
        fl, bl = self.forward_layer, self.backward_layer
        if not self.fused or type(fl) is not LSTM or type(bl) is not LSTM:
            return False
        cf, cb = fl.cell, bl.cell
        return (cf.fused and cb.fused and cf.built and cb.built and cf.units == cb.units
                and cf.use_bias == cb.use_bias and cf.dtype == cb.dtype and cf.input_dim == cb.input_dim
                and fl.zero_output_for_mask == bl.zero_output_for_mask
                and fl.__dict__.get("activity_regularizer") is None
                and bl.__dict__.get("activity_regularizer") is None)

    def _fused_lstm(self, x, mask, fs, bs):
        """Both LSTM directions in one :class:`BiLSTMSequenceFn`; returns what the two layers' calls
        return (the backward layer's sequence in its own, reversed, step order)."""
        fl, bl = self.forward_layer, self.backward_layer
        xt, mask_t, (h0f, c0f) = fl._prepare(x, mask, fs, 2, reverse=False)
        h0b, c0b = bl._prepare(x, mask, bs, 2, reverse=False)[2]
        cf, cb = fl.cell, bl.cell
        args = (xt, h0f, c0f, h0b, c0b, cf.kernel, cf.recurrent_kernel, cb.kernel, cb.recurrent_kernel)
        if cf.use_bias:
            args += (cf.bias, cb.bias)
        of, hf, cf_, ob, hb, cb_ = BiLSTMSequenceFn(mask_t, fl.zero_output_for_mask,
                                                    (fl.go_backwards, bl.go_backwards))(*args)
        return fl._finish(of, [hf, cf_]), bl._finish(ob, [hb, cb_])

    def forward(self, x, mask=None, initial_state=None, training=False):
        fs = bs = None
        if initial_state is not None:
            n = len(initial_state)
            if n % 2:
                raise ValueError(f"Bidirectional: initial_state must hold the forward layer's states and "
                                 f"then the backward layer's (an even count), got {n}")
            fs, bs = list(initial_state[:n // 2]), list(initial_state[n // 2:])
        if self._fusable():
            yf, yb = self._fused_lstm(x, mask, fs, bs)
        else:
            yf = self.forward_layer(x, mask=mask, initial_state=fs, training=training)
            yb = self.backward_layer(x, mask=mask, initial_state=bs, training=training)
        sf = sb = []
        if self.return_state:
            (yf, *sf), (yb, *sb) = yf, yb
        if self.return_sequences:
            yb = F.flip(yb, 1)
        if self.merge_mode == "concat":
            out = [F.concat([yf, yb], axis=-1)]
        elif self.merge_mode == "sum":
            out = [yf + yb]
        elif self.merge_mode == "ave":
            out = [(yf + yb) * 0.5]
        elif self.merge_mode == "mul":
            out = [yf * yb]
        else:
            out = [yf, yb]
        if self.return_state:
            return out + sf + sb
        return out[0] if len(out) == 1 else out
