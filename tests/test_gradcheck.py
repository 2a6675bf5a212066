"""The checker itself (it must catch wrong backwards) and double backward (gradgradcheck)."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import functions as F
from tinyattn.functions.arith import Add, MatMul, Mul
from tinyattn.functions.nn import Softmax
from tinyattn.gradcheck import GradcheckError
from tinyattn.functions.attention import AdditiveScore, ScaledDotProductAttention
from tinyattn.kernels import SplitHeads
from tinyattn.functions.nn import MaskedSoftmax
from tinyattn.nn.layers import Im2Col1D, LayerNormFn
from tinyattn.attention.flash import flash_attention

_MASK = np.ones((2, 3, 5), bool)
_MASK[0, 1, 3:] = False
_MASK[1, 2] = False                       # a fully masked query row: zero weights, zero output


def _dev(mask, like):
    """A raw Function takes its mask on the data's device (layers and functions use as_mask)."""
    return ta.backend.to_device(mask, like.device)


def _reseeded(x):
    """Reseed before a random op, so every evaluation gradcheck makes draws the same mask."""
    ta.manual_seed(0)
    return x


def leaf(rng, *shape, positive=False):
    a = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return ta.tensor(a, requires_grad=True)


# --- deliberately wrong backwards: the checker must reject every one --------------------------

class SoftmaxIdentityGrad(Softmax):
    def backward(self, gy):
        return gy                                   # forgets the Jacobian entirely


class SoftmaxZeroGrad(Softmax):
    def backward(self, gy):
        return gy * 0.0                             # rows of softmax sum to 1: invisible to gy = 1


class MatMulTransposedGrad(MatMul):
    def backward(self, gy):
        a, b = self.inputs
        return gy @ b, a.swapaxes(-1, -2) @ gy     # ga should be gy @ bᵀ


class MatMulMissingTerm(MatMul):
    def backward(self, gy):
        a, b = self.inputs
        return gy @ b.swapaxes(-1, -2), None       # forgets gb


class AddDoubleGrad(Add):
    def backward(self, gy):
        return gy, gy * 2                           # b's gradient twice too big (b is broadcast)


class AddWrongSign(Add):
    def backward(self, gy):
        return gy, -gy


def test_wrong_softmax_backward_caught():
    rng = np.random.default_rng(0)
    x = leaf(rng, 3, 5)
    with pytest.raises(GradcheckError, match=r"input inputs\[0\] of shape \(3, 5\)"):
        ta.gradcheck(lambda x: SoftmaxIdentityGrad(-1)(x), [x])
    with pytest.raises(GradcheckError):
        ta.gradcheck(lambda x: SoftmaxZeroGrad(-1)(x), [x])


def test_zero_softmax_grad_passes_a_sum_check_but_not_a_random_one():
    """Why gradcheck draws a random upstream gradient: with gy = 1 the zero backward looks right."""
    rng = np.random.default_rng(1)
    x = leaf(rng, 3, 5)
    fn = lambda x: SoftmaxZeroGrad(-1)(x)               # noqa: E731
    assert ta.gradcheck(fn, [x], grad_outputs=np.ones((3, 5)))
    with pytest.raises(GradcheckError):
        ta.gradcheck(fn, [x])


def test_wrong_matmul_backward_caught():
    rng = np.random.default_rng(2)
    a, b = leaf(rng, 4, 4), leaf(rng, 4, 4)            # square, so the wrong transpose still fits
    with pytest.raises(GradcheckError, match=r"input inputs\[0\]"):
        ta.gradcheck(lambda a, b: MatMulTransposedGrad()(a, b), [a, b])
    with pytest.raises(GradcheckError, match=r"input inputs\[1\] of shape \(4, 4\)"):
        ta.gradcheck(lambda a, b: MatMulMissingTerm()(a, b), [a, b])


def test_wrong_broadcasting_add_backward_caught():
    rng = np.random.default_rng(3)
    a, b = leaf(rng, 3, 4), leaf(rng, 4)
    with pytest.raises(GradcheckError, match=r"input inputs\[1\] of shape \(4,\)"):
        ta.gradcheck(lambda a, b: AddDoubleGrad()(a, b), [a, b])
    with pytest.raises(GradcheckError, match=r"inputs\[1\]"):
        ta.gradcheck(lambda a, b: AddWrongSign()(a, b), [a, b])
    assert ta.gradcheck(lambda a, b: Add()(a, b), [a, b])        # the real one passes


def test_error_message_has_both_values():
    rng = np.random.default_rng(4)
    a, b = leaf(rng, 3, 4), leaf(rng, 4)
    with pytest.raises(GradcheckError) as err:
        ta.gradcheck(lambda a, b: AddWrongSign()(a, b), [a, b])
    msg = str(err.value)
    analytic = float(msg.split("analytic directional derivative")[1].split()[0])
    numerical = float(msg.split("numerical (central difference)")[1].split()[0])
    assert analytic == pytest.approx(-numerical, rel=1e-4)        # the wrong sign, visible in the message


def test_checks_every_input_and_restores_dtype():
    rng = np.random.default_rng(5)
    a = ta.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    b = ta.tensor(rng.standard_normal((3,)).astype(np.float32), requires_grad=True)
    c = ta.tensor(rng.standard_normal((3,)))                                   # constant: not checked
    w = ta.tensor(rng.standard_normal((3,)), requires_grad=True)              # used via closure
    w.name = "w"
    before = a.numpy().copy()
    assert ta.gradcheck(lambda a, b, c: (a * b + c) * w, [a, b, c], params=[w])
    assert a.dtype == np.float32 and b.dtype == np.float32 and w.dtype == np.float64
    np.testing.assert_array_equal(a.numpy(), before)
    with pytest.raises(GradcheckError, match=r"input params\[0\] 'w'"):              # w's wrong gradient
        ta.gradcheck(lambda a, b, c: AddWrongSign()(a * b + c, w), [a, b, c], params=[w])
    with pytest.raises(GradcheckError, match=r"input inputs\[3\]"):                # listed as an input too
        ta.gradcheck(lambda a, b, c, w: AddWrongSign()(a * b + c, w), [a, b, c, w])


def test_checker_input_errors():
    x = ta.tensor(np.ones(3))
    with pytest.raises(ValueError, match="no input requires grad"):
        ta.gradcheck(lambda x: x * 2.0, [x])
    y = ta.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(GradcheckError, match="not float64"):       # fn itself computes in float32
        ta.gradcheck(lambda y: y.astype(np.float32), [y])


def test_multiple_outputs_and_unused_output():
    rng = np.random.default_rng(6)
    x = leaf(rng, 2, 6)
    assert ta.gradcheck(lambda x: F.split(x, 3, axis=1), [x])
    assert ta.gradcheck(lambda x: (x.tanh(), x.sum()), [x])


# --- double backward -------------------------------------------------------------------------

GG = [
    ("tanh", F.tanh, [(3, 4)]),
    ("sigmoid", F.sigmoid, [(3, 4)]),
    ("softmax", lambda x: F.softmax(x, axis=-1), [(3, 4)]),
    ("softmax-axis0", lambda x: F.softmax(x, axis=0), [(3, 4)]),
    ("log_softmax", lambda x: F.log_softmax(x, axis=-1), [(3, 4)]),
    ("matmul", F.matmul, [(2, 3, 4), (4, 2)]),
    ("matmul-1d", F.matmul, [(4,), (3, 4, 2)]),
    ("matmul-nd-1d", F.matmul, [(3, 4), (4,)]),
    ("linear", F.linear, [(2, 3, 4), (4, 2), (2,)]),
    ("exp", F.exp, [(3, 4)]),
    ("log", F.log, [("p", 3, 4)]),
    ("sqrt", F.sqrt, [("p", 3, 4)]),
    ("mul", F.mul, [(3, 4), (4,)]),
    ("div", F.div, [(3, 4), ("p", 3, 1)]),
    ("pow-scalar", lambda x: x ** 3, [(3, 4)]),
    ("pow-tensor", F.pow, [("p", 3, 4), (4,)]),
    ("sum", lambda x: (x * x).sum(axis=1), [(3, 4)]),
    ("mean", lambda x: (x * x).mean(axis=(0, 1)), [(2, 3, 4)]),
    ("var", lambda x: x.var(axis=0), [(5, 3)]),
    ("max", lambda x: (x * x).max(axis=1), [(3, 4)]),
    ("logsumexp", lambda x: F.logsumexp(x, axis=-1), [(3, 4)]),
    ("getitem", lambda x: (x * x)[np.array([0, 2, 2]), 1:], [(3, 4)]),
    ("getitem-mask", lambda x: (x * x)[np.array([True, False, True])], [(3, 4)]),
    ("gelu", F.gelu, [(3, 4)]),
    ("erf", F.erf, [(3, 4)]),
    ("softplus", F.softplus, [(3, 4)]),
    ("relu-times-x", lambda x: F.relu(x) * x, [(3, 4)]),
    ("broadcast-add-sq", lambda a, b: (a + b) ** 2, [(3, 4), (4,)]),
    ("concat-stack", lambda a, b: F.stack([F.concat([a, b], 0) ** 2] * 2, 1), [(2, 3), (1, 3)]),
    ("reshape-transpose", lambda x: (x.reshape(4, 3).T * x.reshape(3, 4)).tanh(), [(2, 6)]),
    ("split", lambda x: F.split(x * x, 2, axis=1)[1], [(2, 4)]),
    ("embedding", lambda w: F.embedding(np.array([0, 2, 2]), w) ** 2, [(3, 2)]),
    ("where", lambda a, b: F.where(np.array([True, False, True]), a * a, b * a), [(2, 3), (3,)]),
    ("maximum", lambda a, b: F.maximum(a * a, b), [(2, 3), (3,)]),
    ("astype", lambda x: F.astype(F.astype(x, np.longdouble) ** 2, np.float64) * x, [(2, 3)]),
    # issue 7: every op and fused Function with double backward is called here (checked below)
    ("sub-neg", lambda a, b: (-(a - b)) ** 2, [(3, 4), (4,)]),
    ("abs", lambda x: F.abs(x) * x, [(3, 4)]),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.2) * x, [(3, 4)]),
    ("clip", lambda x: F.clip(x, -0.5, 0.5) * x, [(3, 4)]),
    ("minimum", lambda a, b: F.minimum(a * a, b), [(2, 3), (3,)]),
    ("min", lambda x: (x * x).min(axis=0), [(3, 4)]),
    ("swap-expand-squeeze", lambda x: F.squeeze(F.expand_dims(x.swapaxes(0, 1) ** 2, 1), 1), [(2, 3)]),
    ("permute", lambda x: x.permute(2, 0, 1) ** 2, [(2, 3, 2)]),
    ("flip-pad", lambda x: F.pad(F.flip(x, 1) ** 2, ((1, 0), (0, 2))), [(2, 3)]),
    ("flatten", lambda x: F.flatten(x) ** 2, [(2, 3, 2)]),
    ("broadcast_to-sum_to", lambda x: F.sum_to(F.broadcast_to(x, (2, 3)) ** 2, (1, 3)), [(1, 3)]),
    ("dropout", lambda x: F.dropout(_reseeded(x), 0.3) ** 2, [(3, 4)]),
    ("masked-softmax", lambda x: MaskedSoftmax(_dev(np.array([[True, False, True, True]] * 2 + [[False] * 4]), x))(x),
     [(3, 4)]),
    ("fused-attention", lambda q, k, v: ScaledDotProductAttention(0.7, _dev(_MASK, q))(q, k, v),
     [(2, 3, 4), (2, 5, 4), (2, 5, 3)]),
    ("fused-attention-dropout", lambda q, k, v: ScaledDotProductAttention(0.7, None, dropout=0.3)(
        _reseeded(q), k, v), [(3, 4), (5, 4), (5, 2)]),
    ("additive-score", lambda q, k, v: AdditiveScore()(q, k, v), [(2, 3, 4), (2, 5, 4), (4,)]),
    ("layernorm", lambda x, g, b: LayerNormFn((1,), 1e-3)(x, g, b), [(3, 4), (1, 4), (1, 4)]),
    ("split-heads", lambda y: [a * a for a in SplitHeads(2, 3, 2, (2, 1))(y)], [(6, 6)]),
    ("im2col-col2im", lambda x: Im2Col1D(3, 2, 1, 1, 1)(x) ** 2, [(2, 5, 3)]),
    ("flash-attention", lambda q, k, v, b: flash_attention(q, k, v, mask=_MASK, causal=True, bias=b,
                                                           block_size=2),
     [(2, 3, 4), (2, 5, 4), (2, 5, 3), (3, 5)]),
]


@pytest.mark.parametrize("name,fn,shapes", GG, ids=[g[0] for g in GG])
def test_gradgradcheck(name, fn, shapes):
    rng = np.random.default_rng(len(name))
    xs = [leaf(rng, *s[1:], positive=True) if s and s[0] == "p" else leaf(rng, *s) for s in shapes]
    assert ta.gradgradcheck(fn, xs)


def test_gradgradcheck_catches_first_order_only_backward():
    """A backward that is right to first order but detaches its result has no second derivative:
    gradgradcheck must notice."""
    from tinyattn.functions.elementwise import Tanh

    class TanhDetached(Tanh):
        def backward(self, gy):
            y = self.output_values[0]
            y = y.data if isinstance(y, ta.Tensor) else y          # treats y as a constant
            return gy * (1 - y * y)
    x = leaf(np.random.default_rng(7), 3, 4)
    assert ta.gradcheck(lambda x: TanhDetached()(x), [x])
    with pytest.raises(GradcheckError):
        ta.gradgradcheck(lambda x: TanhDetached()(x), [x])


# --- issue 7: the first-order gradient through the Tensor path must match the array path ----------

def test_gradgradcheck_catches_a_sign_error_in_the_double_backward_branch(monkeypatch):
    """Softmax's backward has two branches: in-place on arrays, and on Tensors under create_graph.
    A sign error in the Tensor branch alone is self-consistent (its derivative is the derivative of
    the wrong gradient), so only comparing the two first-order gradients catches it."""
    def backward(self, gy):
        y = self.output_values[0]
        gx = gy * y
        s = gx.sum(axis=self.axis, keepdims=True)
        if isinstance(gx, ta.Tensor):
            return y * s - gx                                 # sabotaged: the sign flipped
        gx -= y * s
        return gx
    x = leaf(np.random.default_rng(11), 3, 4)
    assert ta.gradgradcheck(lambda x: F.softmax(x), [x])
    monkeypatch.setattr(Softmax, "backward", backward)
    assert ta.gradcheck(lambda x: F.softmax(x), [x])          # the array path is still right
    with pytest.raises(GradcheckError, match=r"first-order gradient of input inputs\[0\] of shape "
                                             r"\(3, 4\) computed through the Tensor path"):
        ta.gradgradcheck(lambda x: F.softmax(x), [x])


def test_gradgradcheck_catches_a_missing_input_gradient_in_the_tensor_branch():
    class MulForgetsB(Mul):
        def backward(self, gy):
            a, b = self.inputs
            return gy * b, (None if isinstance(gy, ta.Tensor) else gy * a)
    rng = np.random.default_rng(12)
    a, b = leaf(rng, 3), leaf(rng, 3)
    with pytest.raises(GradcheckError, match=r"input inputs\[1\] .* gets no gradient through the Tensor path"):
        ta.gradgradcheck(lambda a, b: MulForgetsB()(a, b) ** 2, [a, b])


# Functions of the library that gradgradcheck cannot cover, and why.
NO_DOUBLE_BACKWARD = {
    "LSTMCellFn": "fused recurrent step, array-only backward (double backward raises NotImplementedError)",
    "LSTMSequenceFn": "fused recurrent sequence, array-only backward (raises NotImplementedError)",
    "BiLSTMSequenceFn": "both directions of a bidirectional LSTM in one loop, array-only backward "
                        "(raises NotImplementedError); tested equal to two LSTMSequenceFn",
    "GRUCellFn": "fused recurrent step, array-only backward (raises NotImplementedError)",
    "GRUSequenceFn": "fused recurrent sequence, array-only backward (raises NotImplementedError)",
    "AdditiveAttentionStep": "seq2seq's fused decoder attention step, array-only backward (raises "
                             "NotImplementedError); tested equal to the composed textbook ops",
    "StraightThroughOneHot": "straight-through estimator: its backward is deliberately not the "
                             "derivative of its forward, so no numerical check applies",
}


def _library_functions():
    seen, todo = set(), [ta.Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return {c.__name__: c for c in seen
            if c.__module__.startswith("tinyattn.") and c.forward is not ta.Function.forward}


def _functions_used(fn, xs):
    """Every Function class in fn's graph and in the graph of its create_graph gradient."""
    outs = [y for y in ([fn(*xs)] if isinstance(fn(*xs), ta.Tensor) else fn(*xs)) if y is not None]
    gys = [np.ones(y.shape) for y in outs]
    gs = ta.grad(outs, xs, gys, create_graph=True)
    found, stack, visited = set(), outs + [g for g in gs if g is not None], set()
    while stack:
        t = stack.pop()
        if id(t) in visited or t.creator is None:
            continue
        visited.add(id(t))
        found.add(type(t.creator).__name__)
        stack.extend(t.creator._inputs or ())
    return found


def test_gradgradcheck_table_covers_every_function_of_the_library():
    covered = set()
    for name, fn, shapes in GG:
        rng = np.random.default_rng(len(name))
        xs = [leaf(rng, *s[1:], positive=True) if s and s[0] == "p" else leaf(rng, *s) for s in shapes]
        covered |= _functions_used(fn, xs)
    if np.dtype(np.longdouble) == np.float64:     # no wider float here: "astype" is a no-op, and
        covered.add("Cast")                       # Cast is checked by test_ops' astype gradcheck
    missing = set(_library_functions()) - covered - set(NO_DOUBLE_BACKWARD)
    assert not missing, f"Functions without a gradgradcheck in GG: {sorted(missing)}"


@pytest.mark.parametrize("which", ["lstm", "gru", "bilstm"])
def test_fused_recurrent_functions_refuse_double_backward_clearly(which):
    from tinyattn.functions.rnn import gru_sequence, lstm_sequence
    rng = np.random.default_rng(13)
    T, B, d, u = 3, 2, 2, 2
    x = leaf(rng, T, B, d)
    h0 = ta.tensor(np.zeros((B, u)))
    if which == "lstm":
        K, R = leaf(rng, d, 4 * u), leaf(rng, u, 4 * u)
        fn = lambda x: lstm_sequence(x, h0, h0, K, R)[0]          # noqa: E731
        name = "LSTMSequenceFn"
    elif which == "bilstm":
        from tinyattn.kernels import BiLSTMSequenceFn
        K, R = leaf(rng, d, 4 * u), leaf(rng, u, 4 * u)
        fn = lambda x: BiLSTMSequenceFn()(x, h0, h0, h0, h0, K, R, K, R)[3]     # noqa: E731
        name = "BiLSTMSequenceFn"
    else:
        K, R = leaf(rng, d, 3 * u), leaf(rng, u, 3 * u)
        fn = lambda x: gru_sequence(x, h0, K, R, reset_after=False)[0]     # noqa: E731
        name = "GRUSequenceFn"
    assert ta.gradcheck(fn, [x], params=[K, R])
    with pytest.raises(NotImplementedError, match=rf"{name}: double backward \(create_graph=True\) is not supported"):
        ta.gradgradcheck(fn, [x], params=[K, R])
