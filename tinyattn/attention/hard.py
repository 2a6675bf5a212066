"""Hard attention (Xu et al. 2015): attend to ONE position instead of averaging all of them.

    hard_attention(scores, values, mask, sample)   out_i = v_{j*},  j* = argmax_j α_ij  (or j* ~ α_i)
    StraightThroughOneHot                          the pick, with a straight-through gradient

The pick is not differentiable; its gradient is estimated (straight-through, Bengio et al. 2013).
"""
from .. import backend
from ..autograd import Function
from .masks import masked_softmax

__all__ = ["hard_attention", "StraightThroughOneHot"]


class StraightThroughOneHot(Function):
    """y = one_hot(argmax p) (or of a sample i ~ p), along the last axis: (…, T) -> (…, T).

    The straight-through estimator (Bengio et al. 2013): the backward treats the pick as the identity,
    gp = gy, so the soft probabilities p still receive a useful gradient. (Xu et al.'s hard attention
    trains with REINFORCE instead; straight-through is the common low-variance substitute.)
    """

    def __init__(self, sample=False):
        self.sample = sample

    def forward(self, p):
        xp = backend.get_array_module(p)
        if self.sample:
            u = backend.rng(xp).random(p.shape[:-1] + (1,))
            idx = (p.cumsum(axis=-1) < u).sum(axis=-1)
            idx = xp.minimum(idx, p.shape[-1] - 1)
        else:
            idx = p.argmax(axis=-1)
        y = xp.zeros_like(p)
        xp.put_along_axis(y, idx[..., None], 1, axis=-1)
        empty = p.sum(axis=-1, keepdims=True) == 0      # a fully masked row picks nothing
        y *= ~empty
        return y

    def backward(self, gy):
        return gy


def hard_attention(scores, values, mask=None, sample=False):
    """Hard attention: out_i = v_{j*}, j* = argmax_j α_ij (or j* ~ α_i when ``sample``).

    scores (…, Tq, Tk), values (…, Tk, dv), mask True = attend  ->  (out (…, Tq, dv), weights (…, Tq, Tk)),
    where the weights are one-hot. Gradients reach the scores by the straight-through estimator.
    """
    p = masked_softmax(scores, mask)
    w = StraightThroughOneHot(sample)(p)
    return w @ values, w
