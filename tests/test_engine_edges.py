"""Edge cases of the engine that once went wrong: dtype promotion, empty batches, infinities,
wrong-shaped gradients from a user's Function, gradient aliasing, detached double backward."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.autograd import Function
from tinyattn.functions.arith import Mul


def test_float32_survives_numpy_scalars_and_integer_tensors():
    x = ta.tensor(np.ones(3, np.float32), requires_grad=True)
    assert (x ** np.float64(2)).dtype == np.float32
    assert (x ** np.int64(3)).dtype == np.float32
    y = x + ta.tensor([1, 2, 3])                       # int64 tensor beside a float32 one
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_relu_of_minus_infinity_is_zero():
    x = ta.tensor(np.array([-np.inf, -1.0, 2.0, np.inf]))
    np.testing.assert_array_equal(ta.relu(x).numpy(), [0, 0, 2, np.inf])


def test_mean_over_an_empty_axis_backpropagates():
    x = ta.tensor(np.zeros((0, 3)), requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ta.mean(x, axis=0).sum().backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("layer", [lambda: ta.nn.LSTM(4, return_sequences=True),
                                   lambda: ta.nn.GRU(4, return_sequences=True)])
def test_recurrent_layers_accept_an_empty_batch(layer):
    x = ta.tensor(np.zeros((0, 5, 3), np.float32), requires_grad=True)
    lay = layer()
    y = lay(x)
    assert y.shape == (0, 5, 4)
    y.sum().backward()
    assert x.grad.shape == (0, 5, 3)


class _TransposedGrad(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy.T                                   # wrong shape on purpose


def test_a_wrong_shaped_gradient_is_an_error_naming_the_function():
    x = ta.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_TransposedGrad.backward returned a gradient of shape \(3, 2\)"):
        _TransposedGrad()(x).sum().backward()


def test_retained_gradients_own_their_arrays_and_accumulate():
    a = ta.tensor(np.ones(3), requires_grad=True)
    b = ta.tensor(np.ones(3), requires_grad=True)
    y = a + b
    y.retain_grad()
    z = (y * 3).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(y.grad.numpy(), [6, 6, 6])       # summed like a leaf's, as PyTorch
    assert not np.shares_memory(a.grad.data, y.grad.data)
    assert not np.shares_memory(a.grad.data, b.grad.data)


def test_the_callers_gradient_array_is_never_kept():
    x = ta.tensor(np.ones(3), requires_grad=True)
    g = np.full(3, 2.0)
    (x * 1.0).backward(g)
    g[:] = 100
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])


class _DetachedMul(Mul):
    """Right first derivative, but its gradient is cut from the graph under create_graph."""

    def backward(self, gy):
        a, b = self.inputs
        ga, gb = gy * b, gy * a
        return ga, (gb.detach() if isinstance(gb, ta.Tensor) else gb)


def test_gradgradcheck_catches_a_detached_gradient(rng):
    a = ta.tensor(rng.standard_normal(4), requires_grad=True)
    b = ta.tensor(rng.standard_normal(4), requires_grad=True)
    ta.gradcheck(lambda a, b: _DetachedMul()(a, b), [a, b])          # first order is right
    with pytest.raises(ta.GradcheckError):
        ta.gradgradcheck(lambda a, b: _DetachedMul()(a, b), [a, b])


def test_forward_errors_name_the_op():
    with pytest.raises(ValueError, match=r"^reshape: .*\(input shapes \(2, 3\)\)"):
        ta.tensor(np.ones((2, 3))).reshape(4, 4)
