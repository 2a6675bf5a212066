"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

Softmax attention weighs value j by exp(q_iᵀ k_j). Replacing the exponential by a kernel
φ(q_i)ᵀ φ(k_j) with a positive feature map φ(x) = elu(x) + 1 lets the sum over keys be factored:

    out_i = Σ_j φ(q_i)ᵀφ(k_j) v_j / Σ_j φ(q_i)ᵀφ(k_j)
          = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + ε),      S = Σ_j φ(k_j) v_jᵀ  (d, dv),   z = Σ_j φ(k_j)  (d,)

Non-causal: one S and z for all queries — O(T d dv) time instead of O(T² d).
Causal: S_i = Σ_{j≤i} φ(k_j) v_jᵀ, z_i = Σ_{j≤i} φ(k_j). Two forms, tested equal:

    parallel   (training):   A = (φ(Q) φ(K)ᵀ) ⊙ L  (L lower-triangular);  O = A V / (A 1 + ε)
    recurrent  (inference):  S_t = S_{t−1} + φ(k_t) v_tᵀ,  z_t = z_{t−1} + φ(k_t),
                             o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)      — an RNN with state (S, z)

Shapes: q (…, Tq, d), k (…, Tk, d), v (…, Tk, dv) → (…, Tq, dv); leading axes broadcast.
"""
from .. import backend
from ..autograd import Tensor
from ..functions import exp, minimum, relu, stack

__all__ = ["elu_feature_map", "linear_attention", "linear_attention_recurrent"]


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def elu_feature_map(x):
    """φ(x) = elu(x) + 1 = x + 1 for x > 0, eˣ for x ≤ 0 (positive, smooth at 0), computed as
    exp(min(x, 0)) + relu(x). Same shape as x."""
    x = _t(x)
    return exp(minimum(x, 0.0)) + relu(x)


def _check(name, q, k, v):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{name}: need q (…, Tq, d), k (…, Tk, d), v (…, Tk, dv), got {q.shape}, {k.shape}, {v.shape}")


def linear_attention(q, k, v, causal=False, eps=1e-6, feature_map=elu_feature_map):
    """Linear attention, parallel form. q (…, Tq, d), k (…, Tk, d), v (…, Tk, dv) → (…, Tq, dv).

    Non-causal: O = φ(Q) (φ(K)ᵀ V) / (φ(Q) (φ(K)ᵀ 1) + ε)  — never forms a (Tq, Tk) matrix.
    Causal (Tq = Tk, query i sees keys ≤ i): A = (φ(Q) φ(K)ᵀ) ⊙ L, O = A V / (A 1 + ε).
    """
    q, k, v = _t(q), _t(k), _t(v)
    _check("linear_attention", q, k, v)
    fq, fk = feature_map(q), feature_map(k)
    if not causal:
        S = fk.swapaxes(-1, -2) @ v                              # (…, d, dv)
        z = fk.sum(axis=-2, keepdims=True)                       # (…, 1, d)
        den = (fq * z).sum(axis=-1, keepdims=True)               # (…, Tq, 1)
        return (fq @ S) / (den + eps)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"linear_attention: causal needs Tq = Tk, got q {q.shape}, k {k.shape}")
    xp = backend.get_array_module(q.data)
    T = q.shape[-2]
    L = xp.tril(xp.ones((T, T), dtype=q.dtype))                 # on the data's device
    A = (fq @ fk.swapaxes(-1, -2)) * L                           # (…, T, T)
    return (A @ v) / (A.sum(axis=-1, keepdims=True) + eps)


def linear_attention_recurrent(q, k, v, state=None, eps=1e-6, feature_map=elu_feature_map):
    """Linear attention, recurrent (causal) form: one step per position.

        S_t = S_{t−1} + φ(k_t) v_tᵀ   (…, d, dv),    z_t = z_{t−1} + φ(k_t)   (…, d)
        o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)        (…, dv)

    q, k (…, T, d), v (…, T, dv) → (out (…, T, dv), state (S, z)). ``state`` continues a previous
    call (e.g. generation one token at a time): the memory is O(d dv), whatever T is.
    """
    q, k, v = _t(q), _t(k), _t(v)
    _check("linear_attention_recurrent", q, k, v)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"linear_attention_recurrent: q {q.shape} and k {k.shape} need the same length")
    fq, fk = feature_map(q), feature_map(k)
    S, z = (None, None) if state is None else state
    outs = []
    for t in range(q.shape[-2]):
        kt, vt, qt = fk[..., t, :], v[..., t, :], fq[..., t, :]
        dS = kt.expand_dims(-1) * vt.expand_dims(-2)            # φ(k_t) v_tᵀ  (…, d, dv)
        S = dS if S is None else S + dS
        z = kt if z is None else z + kt
        num = (qt.expand_dims(-2) @ S).squeeze(-2)               # φ(q_t)ᵀ S_t  (…, dv)
        den = (qt * z).sum(axis=-1, keepdims=True)               # (…, 1)
        outs.append(num / (den + eps))
    return stack(outs, axis=-2), (S, z)
