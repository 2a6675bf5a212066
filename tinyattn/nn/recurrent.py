"""Recurrent layers with Keras's names, arguments and weight layouts: LSTMCell, LSTM, GRUCell, GRU,
Bidirectional.

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
from ..kernels.rnn import LSTMCellFn, LSTMSequenceFn, GRUCellFn, GRUSequenceFn
from . import init
from .module import Module, Parameter, cast_input

__all__ = ["LSTMCell", "LSTM", "GRUCell", "GRU", "Bidirectional"]


def _check_activations(name, activation, recurrent_activation):
    if activation not in ("tanh", None) or recurrent_activation not in ("sigmoid", None):
        raise ValueError(f"{name}: only activation='tanh' and recurrent_activation='sigmoid' are "
                         f"implemented (the fused cell), got {activation!r} and {recurrent_activation!r}")


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
    """
    n_gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, input_dim=None, dtype="float32"):
        _check_activations("LSTMCell", activation, recurrent_activation)
        super().__init__(units, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
                         input_dim, dtype)
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
        xk = x @ self.kernel
        if self.use_bias:
            xk = xk + self.bias
        h, c = LSTMCellFn()(xk, h, c, self.recurrent_kernel)
        return h, [h, c]


class GRUCell(_Cell):
    """One GRU step (Keras ``GRUCell``): ``kernel`` (d, 3u), ``recurrent_kernel`` (u, 3u), gate blocks
    z, r, h; ``bias`` (2, 3u) with ``reset_after=True`` (row 0 input, row 1 recurrent), else (3u,).

        reset_after:  z = σ(x K_z + b0_z + h R_z + b1_z),  r alike,  ĥ = tanh(x K_h + b0_h + r⊙(h R_h + b1_h))
        otherwise:    z = σ(x K_z + h R_z + b_z),  r alike,     ĥ = tanh(x K_h + (r⊙h) R_h + b_h)
        h' = z⊙h + (1 − z)⊙ĥ

    Call: ``cell(x, states=h)`` (or ``[h]``), x (B, d), h (B, u) → ``(h', [h'])``.
    """
    n_gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", reset_after=True, input_dim=None, dtype="float32"):
        _check_activations("GRUCell", activation, recurrent_activation)
        super().__init__(units, use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
                         input_dim, dtype)
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
        b_in, b_rec = self._split_bias()
        xk = x @ self.kernel
        if b_in is not None:
            xk = xk + b_in
        args = (xk, h, self.recurrent_kernel) + ((b_rec,) if b_rec is not None else ())
        h = GRUCellFn(self.reset_after)(*args)
        return h, [h]


class _RNN(Module):
    """Shared sequence plumbing of LSTM and GRU: masks, go_backwards, time-major layout, outputs."""

    def __init__(self, cell, return_sequences, return_state, go_backwards, zero_output_for_mask, config):
        super().__init__()
        self.cell = cell
        self.units = cell.units
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.zero_output_for_mask = zero_output_for_mask
        self.dtype = cell.dtype
        object.__setattr__(self, "_config", config)
        from ..kernels.rnn import register_user
        register_user(self)               # the shared LSTM/GRU buffer pool is emptied when the last layer goes

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

    def _prepare(self, x, mask, initial_state, n_states):
        """Check the call's arguments; return x time-major (T, B, d) (reversed in time with
        ``go_backwards``), the mask time-major (T, B) or None, and the initial states (zeros if none)."""
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
        if self.go_backwards:
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
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, zero_output_for_mask=False, dtype="float32"):
        _check_units("LSTM", units)
        _check_activations("LSTM", activation, recurrent_activation)
        cfg = dict(units=units, activation=activation, recurrent_activation=recurrent_activation,
                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                   recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                   unit_forget_bias=unit_forget_bias)
        cell = LSTMCell(units, activation, recurrent_activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, unit_forget_bias, dtype=dtype)
        super().__init__(cell, return_sequences, return_state, go_backwards, zero_output_for_mask, cfg)

    def forward(self, x, mask=None, initial_state=None, training=False):
        xt, mask_t, (h0, c0) = self._prepare(x, mask, initial_state, 2)
        cell = self.cell
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
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", return_sequences=False, return_state=False,
                 go_backwards=False, reset_after=True, zero_output_for_mask=False, dtype="float32"):
        _check_units("GRU", units)
        _check_activations("GRU", activation, recurrent_activation)
        cfg = dict(units=units, activation=activation, recurrent_activation=recurrent_activation,
                   use_bias=use_bias, kernel_initializer=kernel_initializer,
                   recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                   reset_after=reset_after)
        cell = GRUCell(units, activation, recurrent_activation, use_bias, kernel_initializer,
                       recurrent_initializer, bias_initializer, reset_after, dtype=dtype)
        super().__init__(cell, return_sequences, return_state, go_backwards, zero_output_for_mask, cfg)
        self.reset_after = reset_after

    def forward(self, x, mask=None, initial_state=None, training=False):
        xt, mask_t, (h0,) = self._prepare(x, mask, initial_state, 1)
        cell = self.cell
        args = (xt, h0, cell.kernel, cell.recurrent_kernel) + ((cell.bias,) if cell.use_bias else ())
        out, h = GRUSequenceFn(self.reset_after, mask_t, self.zero_output_for_mask)(*args)
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
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, dtype=None):
        super().__init__()
        if merge_mode not in ("concat", "sum", "ave", "mul", None):
            raise ValueError(f"Bidirectional: merge_mode must be 'concat', 'sum', 'ave', 'mul' or None, "
                             f"got {merge_mode!r}")
        if not isinstance(layer, _RNN):
            raise TypeError(f"Bidirectional: expected an LSTM or GRU layer, got {type(layer).__name__}")
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

    def weights(self):
        return self.forward_layer.weights() + self.backward_layer.weights()

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        object.__setattr__(self, "built", True)

    def forward(self, x, mask=None, initial_state=None, training=False):
        fs = bs = None
        if initial_state is not None:
            n = len(initial_state)
            if n % 2:
                raise ValueError(f"Bidirectional: initial_state must hold the forward layer's states and "
                                 f"then the backward layer's (an even count), got {n}")
            fs, bs = list(initial_state[:n // 2]), list(initial_state[n // 2:])
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
