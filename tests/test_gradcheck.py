"""The checker itself (it must catch wrong backwards) and double backward (gradgradcheck)."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import functions as F
from tinyattn.functions.arith import Add, MatMul
from tinyattn.functions.nn import Softmax
from tinyattn.gradcheck import GradcheckError


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
    ("astype", lambda x: F.astype(x, np.float64) * x, [(2, 3)]),
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
