"""Keras 3.15's own test cases for its attention layers, re-run against tinyattn.

Keras ships ``keras/src/layers/attention/{attention,additive_attention,multi_head_attention,
grouped_query_attention}_test.py``. Every case that concerns layer behaviour is re-written here as
our own test, with Keras's inputs and expected numbers (each test names the Keras case it mirrors:
``<file>::<case>``). Cases about Keras internals are left out, listed at the end of this module.
These tests do not import Keras; tests/reference/ runs Keras live.
"""
import warnings

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn
from tinyattn.attention import (Attention, AdditiveAttention, MultiHeadAttention, GroupedQueryAttention)
from tinyattn.nn import get_keras_mask, set_keras_mask


def _np(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def _n_weights(layer):
    return len(layer.weights())


# =================================================================================================
# attention_test.py
# =================================================================================================
@pytest.mark.parametrize("kwargs,n_weights", [(dict(score_mode="dot", dropout=0.5), 0),
                                              (dict(use_scale=True, score_mode="concat", dropout=0.5), 2)])
def test_attention_basics(kwargs, n_weights, rng):                    # attention_test::test_attention_basics
    layer = Attention(**kwargs)
    out = layer([rng.random((2, 3, 4)), rng.random((2, 4, 4))])
    assert out.shape == (2, 3, 4) and _n_weights(layer) == n_weights
    assert layer.supports_masking and layer.regularization_losses() == []


def test_attention_correctness():                                  # attention_test::test_attention_correctness
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    key = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    value = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out, scores = Attention(score_mode="dot")([query, value, key], return_attention_scores=True)
    np.testing.assert_allclose(_np(out), [[[2.462, 3.462], [1.538, 2.538]]], atol=1e-3)
    np.testing.assert_allclose(_np(scores), [[[0.269, 0.731], [0.731, 0.269]]], atol=1e-3)
    out, scores = Attention(score_mode="concat")([query, value, key], return_attention_scores=True)
    np.testing.assert_allclose(_np(out), [[[1.727, 2.727], [2.272, 3.272]]], atol=1e-3)
    np.testing.assert_allclose(_np(scores), [[[0.636, 0.363], [0.363, 0.636]]], atol=1e-3)


@pytest.mark.parametrize("cls", [Attention, lambda: AdditiveAttention(use_scale=False)])
def test_attention_with_mask(cls):            # attention_test / additive_attention_test ::test_attention_with_mask
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    value = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    out, scores = cls()([query, value], mask=[np.array([[True, False]]), np.array([[True, False]])],
                        return_attention_scores=True)
    np.testing.assert_allclose(_np(out), [[[1.0, 1.0], [0.0, 0.0]]])
    np.testing.assert_allclose(_np(scores), [[[1.0, 0.0], [1.0, 0.0]]])


def test_attention_2D_mask_shape_mismatch(rng):           # attention_test::test_attention_2D_mask_shape_mismatch
    B, tq, tv, dim = 2, 3, 4, 5
    out, scores = Attention()([rng.random((B, tq, dim)).astype(np.float32),
                               rng.random((B, tv, dim)).astype(np.float32)],
                              mask=[np.array([[True, False, True]] * 2), np.array([[True, False, True, True]] * 2)],
                              return_attention_scores=True)
    assert out.shape == (B, tq, dim) and scores.shape == (B, tq, tv)


@pytest.mark.parametrize("cls", [Attention, AdditiveAttention])
def test_attention_errors(cls):      # attention_test / additive_attention_test ::test_attention_errors
    layer = cls()
    tensor = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(ValueError, match="must be called on a list"):
        layer(tensor)
    with pytest.raises(ValueError, match="length 2 or 3"):
        layer([tensor, tensor, tensor, tensor])
    with pytest.raises(ValueError, match="layer mask must be a list"):
        layer([tensor, tensor], mask=tensor)
    with pytest.raises(ValueError, match="length 2 or 3"):
        layer([tensor, tensor], mask=[tensor])


def test_attention_with_dropout():                             # attention_test::test_attention_with_dropout
    ta.manual_seed(0)
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    value = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    o1, s1 = Attention(dropout=0.2)([query, value], return_attention_scores=True, training=True)
    o2, s2 = Attention()([query, value], return_attention_scores=True, training=True)
    assert not np.allclose(_np(o1), _np(o2)) and not np.allclose(_np(s1), _np(s2))


def test_attention_invalid_score_mode():                  # attention_test::test_attention_invalid_score_mode
    with pytest.raises(ValueError, match="Invalid value for argument score_mode. Expected one of "
                                         r"\{'dot', 'concat'\}"):
        Attention(score_mode="invalid_mode")


def test_attention_calculate_scores_with_scale(rng):  # attention_test::test_attention_calculate_scores_with_scale
    query, key = rng.random((2, 3, 4)), rng.random((2, 4, 4))
    layer = Attention(use_scale=True, score_mode="dot", dtype="float64")
    layer([query, key])
    layer.scale.data[...] = 1.7
    expected = np.matmul(query, key.transpose(0, 2, 1)) * 1.7
    np.testing.assert_allclose(_np(layer._calculate_scores(query, key)), expected, rtol=1e-12)


def test_attention_calculate_score_mask_cases(rng):   # attention_test::test_attention_calculate_score_mask_* (3)
    scores = rng.random((2, 3, 4))
    layer = Attention()
    assert layer._calculate_score_mask(scores, v_mask=None, use_causal_mask=False) is None
    causal = np.tril(np.ones((1, 3, 4)), k=0)
    np.testing.assert_array_equal(layer._calculate_score_mask(scores, v_mask=None, use_causal_mask=True), causal)
    v_mask = np.array([[True, False, True, False]])
    np.testing.assert_array_equal(layer._calculate_score_mask(scores, v_mask=v_mask, use_causal_mask=True),
                                  np.logical_and(causal, v_mask[:, None, :]))


DUMMY = [np.ones((2, 3, 4)), np.ones((2, 4, 4))]
COMPUTE_MASK_CASES = [       # attention_test::test_attention_compute_mask_* : (mask, expected)
    ("with_no_mask", None, None),
    ("with_first_element_none", [None, np.array([True, False, True])], None),
    ("returns_correct_tensor_with_valid_mask", [np.array([True, False, True]), np.array([False, True, False])],
     np.array([True, False, True])),
    ("all_true_mask", [np.array([True] * 3), np.array([True] * 3)], np.array([True] * 3)),
    ("all_false_mask", [np.array([False] * 3), np.array([False] * 3)], np.array([False] * 3)),
    ("tolerance (1e-3, 1e-5, 1e-7)", [np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])],
     np.array([1.0, 0.0, 1.0])),
    ("single_element_masks", [np.array([True]), np.array([False])], np.array([True])),
    ("non_boolean_masks", [np.array([1, 0, 1]), np.array([0, 1, 0])], np.array([1, 0, 1])),
]


@pytest.mark.parametrize("name,mask,expected", COMPUTE_MASK_CASES, ids=[c[0] for c in COMPUTE_MASK_CASES])
def test_attention_compute_mask(name, mask, expected):
    out = Attention().compute_mask(inputs=DUMMY, mask=mask)
    if expected is None:
        assert out is None
    else:
        assert out is not None
        out = np.asarray(out)
        assert out.shape == expected.shape and out.dtype == expected.dtype    # returned as given
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_allclose(out, expected, atol=1e-7)


def test_attention_compute_mask_edge_cases_and_input_shapes():
    # attention_test::test_attention_compute_mask_with_edge_case_masks / _with_different_input_shapes
    layer = Attention()
    for m in (np.array([True] * 3), np.array([False] * 3), np.array([True, False, True])):
        np.testing.assert_array_equal(layer.compute_mask(inputs=DUMMY, mask=[m, m]), m)
    valid = np.array([True, False, True])
    for shape in [(2, 3, 4), (3, 2, 5), (4, 1, 6)]:
        got = layer.compute_mask(inputs=[np.ones(shape), np.ones(shape)], mask=[valid, ~valid])
        np.testing.assert_array_equal(got, valid)


def test_attention_compute_output_shape(rng):                # attention_test::test_attention_compute_output_shape
    q, v, k = rng.random((2, 3, 4)), rng.random((2, 3, 5)), rng.random((2, 3, 4))
    layer = Attention()
    out = layer([q, v, k])
    assert out.shape == v.shape == layer.compute_output_shape([q.shape, v.shape, k.shape])
    assert layer.compute_output_shape([(None, 3, 5), (None, 4, 5)]) == (None, 3, 5)   # ::test_symbolic_call_...


def test_attention_nd_inputs(rng):                                  # attention_test::test_attention_nd_inputs
    layer = Attention()
    q, v = rng.random((2, 8, 6, 4)).astype(np.float32), rng.random((2, 8, 6, 4)).astype(np.float32)
    assert layer([q, v]).shape == (2, 8, 6, 4)
    out, scores = layer([q, v], return_attention_scores=True)
    assert out.shape == (2, 8, 6, 4) and scores.shape == (2, 8, 6, 6)


def test_return_attention_scores(rng):
    # attention_test::test_return_attention_scores_true / _true_and_tuple / _true_tuple_then_unpack (3)
    q, v = rng.random((2, 8, 16)).astype(np.float32), rng.random((2, 4, 16)).astype(np.float32)
    outputs = Attention()([q, v], return_attention_scores=True)
    assert isinstance(outputs, tuple)
    out, scores = outputs
    assert out.shape == (2, 8, 16) and scores.shape == (2, 8, 4)
    out = Attention()([q, v])                  # and a later call without it returns one tensor
    assert not isinstance(out, (tuple, list)) and out.shape == (2, 8, 16)


# =================================================================================================
# additive_attention_test.py
# =================================================================================================
@pytest.mark.parametrize("use_scale,n_weights", [(True, 1), (False, 0)])
def test_additive_attention_basics(use_scale, n_weights, rng):   # additive_attention_test::test_attention_basics
    layer = AdditiveAttention(use_scale=use_scale, dropout=0.5)
    assert layer([rng.random((2, 3, 4)), rng.random((2, 4, 4))]).shape == (2, 3, 4)
    assert _n_weights(layer) == n_weights and layer.supports_masking


def test_additive_attention_correctness():                 # additive_attention_test::test_attention_correctness
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    key = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    value = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out, scores = AdditiveAttention(use_scale=False)([query, value, key], return_attention_scores=True)
    np.testing.assert_allclose(_np(out), [[[1.727, 2.727], [2.272, 3.272]]], atol=1e-3)
    np.testing.assert_allclose(_np(scores), [[[0.636, 0.363], [0.363, 0.636]]], atol=1e-3)


# =================================================================================================
# multi_head_attention_test.py
# =================================================================================================
@pytest.mark.parametrize("kwargs,n_weights", [
    (dict(num_heads=2, key_dim=2), 8),
    (dict(num_heads=2, key_dim=2, value_dim=4, use_bias=False, dropout=0.5), 4),
    (dict(num_heads=2, key_dim=2, use_gate=True), 10),
    (dict(num_heads=2, key_dim=2, value_dim=4, use_bias=False, dropout=0.5, use_gate=True), 5)])
def test_mha_basics(kwargs, n_weights, rng):                    # multi_head_attention_test::test_basics
    layer = MultiHeadAttention(**kwargs)
    assert layer(rng.random((2, 8, 16)), rng.random((2, 4, 16))).shape == (2, 8, 16)
    assert _n_weights(layer) == n_weights and layer.supports_masking


HIGH_DIM = [   # multi_head_attention_test::test_high_dim_attention (q dims, v dims, mask dims, axes)
    ("4d_inputs_1freebatch_mask2", (3, 4), (3, 2), (4, 2), (2,)),
    ("4d_inputs_1freebatch_mask3", (3, 4), (3, 2), (3, 4, 2), (2,)),
    ("4d_inputs_1freebatch_mask4", (3, 4), (3, 2), (3, 2, 4, 2), (2,)),
    ("4d_inputs_2d_attention", (3, 4), (3, 2), (3, 4, 3, 2), (1, 2)),
    ("5d_inputs_2d_attention", (5, 3, 4), (5, 3, 2), (3, 4, 3, 2), (2, 3)),
    ("5d_inputs_2d_attention_fullmask", (5, 3, 4), (5, 3, 2), (5, 3, 4, 3, 2), (2, 3)),
]


@pytest.mark.parametrize("use_gate,n_weights", [(False, 8), (True, 10)])
@pytest.mark.parametrize("name,qd,vd,mask_dims,axes", HIGH_DIM, ids=[c[0] for c in HIGH_DIM])
def test_mha_high_dim_attention(name, qd, vd, mask_dims, axes, use_gate, n_weights, rng):
    # (Keras's case builds these masks but never passes them; its run_layer_test checks the shapes.)
    B, hidden = 3, 8
    layer = MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=axes, use_gate=use_gate)
    q, v = rng.random((B,) + qd + (hidden,)), rng.random((B,) + vd + (hidden,))
    out, scores = layer(q, v, return_attention_scores=True)
    assert out.shape == q.shape and _n_weights(layer) == n_weights
    batch = [s for i, s in enumerate(q.shape[:-1]) if i not in axes]
    assert scores.shape == tuple(batch) + (2,) + tuple(q.shape[a] for a in axes) + tuple(v.shape[a] for a in axes)
    np.testing.assert_allclose(_np(scores).sum(axis=tuple(range(-len(axes), 0))), 1.0, rtol=1e-5)


def test_mha_attention_axes_negative_indexing(rng):  # multi_head_attention_test::test_attention_axes_negative_indexing
    x = rng.normal(size=(2, 3, 8, 4))
    for use_gate in (False, True):
        pos = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=2, use_gate=use_gate)
        neg = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=-2, use_gate=use_gate)
        pos(x, x)
        neg(x, x)
        neg.set_weights(pos.get_weights())
        zp, ap = pos(x, x, return_attention_scores=True)
        zn, an = neg(x, x, return_attention_scores=True)
        assert zp.shape == zn.shape and ap.shape == an.shape == (2, 3, 2, 8, 8)
        np.testing.assert_allclose(_np(zp), _np(zn), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(ap), _np(an), rtol=1e-5, atol=1e-5)


OUT_SHAPES = [   # multi_head_attention_test::test_compute_output_shape
    ("without_key_same_proj", (4, 8), (2, 8), None, None),
    ("with_key_same_proj", (4, 8), (2, 8), (2, 3), None),
    ("without_key_different_proj", (4, 8), (2, 8), None, (3, 4)),
    ("with_key_different_proj", (4, 8), (2, 8), (2, 3), (1, 5)),
    ("high_dim_same_proj", (4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), None),
    ("high_dim_different_proj", (4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), (3, 2)),
    ("different_qv_last_dims", (4, 2, 3, 8), (4, 2, 3, 7), (4, 2, 3, 8), None),
]


@pytest.mark.parametrize("name,qd,vd,kd,output_shape", OUT_SHAPES, ids=[c[0] for c in OUT_SHAPES])
def test_mha_compute_output_shape(name, qd, vd, kd, output_shape):
    layer = MultiHeadAttention(num_heads=2, key_dim=2, value_dim=2, output_shape=output_shape)
    B = 7
    qs, vs = (B,) + qd, (B,) + vd
    ks = (B,) + kd if kd else None
    out = layer(query=np.ones(qs), value=np.ones(vs), key=np.ones(ks) if ks else None)
    assert out.shape == layer.compute_output_shape(qs, vs, ks)
    assert out.shape == layer.compute_output_shape(list(qs), list(vs), list(ks) if ks else None)


@pytest.mark.parametrize("qs,vs,ks", [((2, 4, 8), (2, 2, 7), (2,)), ((2, 4, 8), (2, 2, 8), (2, 1, 7)),
                                      ((2, 4, 2, 3, 8), (2, 1, 1, 5, 8), (2, 1, 15, 5, 2))])
def test_mha_shape_mismatch_error(qs, vs, ks):             # multi_head_attention_test::test_shape_mismatch_error
    layer = MultiHeadAttention(num_heads=4, key_dim=2, value_dim=2)
    with pytest.raises(ValueError, match="must be equal"):
        layer.compute_output_shape(qs, vs, ks)
    with pytest.raises(ValueError, match="must be equal"):
        layer(np.ones(qs), np.ones(vs), np.ones(ks))


def test_mha_invalid_scalar_args_rejected():         # multi_head_attention_test::test_invalid_scalar_args_rejected
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="argument `num_heads`"):
            MultiHeadAttention(num_heads=bad, key_dim=4)
        with pytest.raises(ValueError, match="argument `key_dim`"):
            MultiHeadAttention(num_heads=4, key_dim=bad)
        with pytest.raises(ValueError, match="argument `value_dim`"):
            MultiHeadAttention(num_heads=4, key_dim=4, value_dim=bad)
    MultiHeadAttention(num_heads=4, key_dim=4, value_dim=None)


@pytest.mark.parametrize("cls,kw", [(MultiHeadAttention, dict(num_heads=12, key_dim=64)),
                                    (GroupedQueryAttention, dict(num_query_heads=16, num_key_value_heads=16,
                                                                 head_dim=64))])
def test_initializer(cls, kw):       # multi_head_attention_test / grouped_query_attention_test ::test_initializer
    layer = cls(use_gate=True, kernel_initializer="normal", **kw)
    layer.build((2, 4, 8), (2, 4, 8))
    qk = _np(layer.query_kernel)
    for other in (layer.key_kernel, layer.value_kernel, layer.output_kernel, layer.gate_kernel):
        o = _np(other)
        assert o.shape != qk.shape or not np.allclose(qk, o)


@pytest.mark.parametrize("cls,kw", [(MultiHeadAttention, dict(num_heads=2, key_dim=2)),
                                    (GroupedQueryAttention, dict(num_query_heads=2, num_key_value_heads=2,
                                                                 head_dim=2)),
                                    (GroupedQueryAttention, dict(num_query_heads=2, num_key_value_heads=2,
                                                                 head_dim=2, use_gate=True))])
def test_query_mask_propagation(cls, kw, rng):
    # multi_head_attention_test / grouped_query_attention_test ::test_query_mask_propagation
    layer = cls(**kw)
    assert layer.supports_masking
    query = np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]])
    masked_query = nn.Embedding(4, 8, mask_zero=True)(query)
    out = layer(query=masked_query, value=rng.normal(size=(3, 3, 8)))
    got = ta.backend.as_numpy(get_keras_mask(out))
    np.testing.assert_array_equal(got, ta.backend.as_numpy(get_keras_mask(masked_query)))
    np.testing.assert_array_equal(got, query != 0)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("make", [lambda: MultiHeadAttention(num_heads=2, key_dim=2),
                                  lambda: GroupedQueryAttention(num_query_heads=2, num_key_value_heads=2, head_dim=2),
                                  lambda: GroupedQueryAttention(num_query_heads=2, num_key_value_heads=2,
                                                                head_dim=2, use_gate=True),
                                  lambda: MultiHeadAttention(num_heads=2, key_dim=2, use_gate=True)])
def test_masking(make, causal):        # multi_head_attention_test / grouped_query_attention_test ::test_masking
    layer = make()
    query = np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]])
    value = np.array([[5, 4, 0], [3, 0, 0], [2, 1, 1]])
    masked_query = nn.Embedding(4, 8, mask_zero=True)(query)
    masked_value = nn.Embedding(6, 8, mask_zero=True)(value)
    out = layer(query=masked_query, value=masked_value, use_causal_mask=causal)
    mask = np.array([[[1, 1, 0]] * 3 + [[0, 0, 0]] * 2] + [[[1, 0, 0]] * 5]
                    + [[[1, 1, 1]] + [[0, 0, 0]] * 4]).astype(bool)
    if causal:
        mask = mask & np.array([[[1, 0, 0], [1, 1, 0]] + [[1, 1, 1]] * 3]).astype(bool)
    set_keras_mask(masked_query, None)
    set_keras_mask(masked_value, None)
    manual = layer(query=masked_query, value=masked_value, attention_mask=mask)
    np.testing.assert_allclose(_np(out), _np(manual), rtol=1e-6, atol=1e-7)
    plain = layer(query=masked_query, value=masked_value, use_causal_mask=causal)
    assert not np.allclose(_np(out), _np(plain))           # the carried masks did change the result


def test_mha_masking_with_different_shapes(rng):     # multi_head_attention_test::test_masking_with_different_shapes
    x = rng.uniform(size=(2, 5, 8))
    mask = np.tril(np.ones((5, 5)))
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    o1 = layer(query=x, value=x, attention_mask=mask)
    mask = np.tile(mask[None], (2, 1, 1))
    o2 = layer(query=x, value=x, attention_mask=mask)
    mask = np.tile(mask[:, None], (1, 2, 1, 1))
    o3 = layer(query=x, value=x, attention_mask=mask)
    np.testing.assert_allclose(_np(o1), _np(o2), rtol=1e-6)
    np.testing.assert_allclose(_np(o1), _np(o3), rtol=1e-6)


def test_mha_no_warning_with_keras_mask():             # multi_head_attention_test::test_no_warning_with_keras_mask
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    mq = nn.Embedding(4, 8, mask_zero=True)(np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]]))
    mv = nn.Embedding(6, 8, mask_zero=True)(np.array([[5, 4, 0], [3, 0, 0], [2, 1, 1]]))
    with warnings.catch_warnings(record=True) as logs:
        warnings.simplefilter("always")
        layer(query=mq, value=mv)
    assert len(logs) == 0


@pytest.mark.parametrize("make", [lambda: MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=3),
                                  lambda: GroupedQueryAttention(head_dim=4, num_query_heads=4,
                                                                num_key_value_heads=2, sliding_window=3)])
def test_sliding_window(make):    # multi_head_attention_test / grouped_query_attention_test ::test_sliding_window
    x = np.random.RandomState(0).randn(1, 6, 8).astype("float32")
    layer = make()
    _, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    s = _np(scores)[0, 0]
    i, j = np.indices(s.shape)
    inside = (j <= i) & (i - j < 3)
    assert np.all(s[inside] > 0) and np.all(s[~inside] == 0)
    if isinstance(layer, MultiHeadAttention):          # the MHA case also checks the symmetric band
        _, scores = make()(x, x, return_attention_scores=True)
        s = _np(scores)[0, 0]
        inside = np.abs(i - j) < 3
        assert np.all(s[inside] > 0) and np.all(s[~inside] == 0)


@pytest.mark.parametrize("make,d", [(lambda **k: MultiHeadAttention(num_heads=2, key_dim=4, **k), 8),
                                    (lambda **k: GroupedQueryAttention(head_dim=4, num_query_heads=4,
                                                                       num_key_value_heads=2, **k), 16)])
def test_causal_paths(make, d):
    # ::test_causal_only_fast_path, ::test_causal_only_with_other_mask_falls_back and
    # ::test_causal_only_masks_when_fused_path_disabled (3 parameterisations), in both files
    x = np.random.RandomState(0).randn(2, 5, d).astype("float32")
    layer = make()
    fast = layer(x, x, use_causal_mask=True)
    slow = layer(x, x, attention_mask=np.tril(np.ones((1, 5, 5), dtype=bool)))
    np.testing.assert_allclose(_np(fast), _np(slow), atol=1e-5)
    extra = np.ones((2, 5, 5), dtype=bool)
    extra[:, 2, 3] = False
    merged = extra & np.tril(np.ones((5, 5), dtype=bool))
    o1 = layer(x, x, attention_mask=extra, use_causal_mask=True)
    o2 = layer(x, x, attention_mask=merged, use_causal_mask=False)
    assert o1.shape == (2, 5, d)
    np.testing.assert_allclose(_np(o1), _np(o2), atol=1e-5)
    t = 6
    future = np.triu(np.ones((t, t)), k=1).astype(bool)
    x = np.random.RandomState(0).randn(1, t, d).astype("float32")
    for dropout, scores_wanted in ((0.0, True), (0.1, False), (0.1, True)):
        layer = make(dropout=dropout)
        if scores_wanted:
            _, s = layer(x, x, use_causal_mask=True, return_attention_scores=True, training=False)
            assert _np(s)[..., future].sum() < 1e-6
        else:
            a = layer(x, x, use_causal_mask=True, training=False)
            b = layer(x, x, attention_mask=(~future)[None], training=False)
            np.testing.assert_allclose(_np(a), _np(b), atol=1e-5)


def test_mha_causal_only_masks_non_4d_inputs():       # multi_head_attention_test::test_causal_only_masks_non_4d_inputs
    t = 5
    future = np.triu(np.ones((t, t)), k=1).astype(bool)
    x = np.random.RandomState(0).randn(1, t, 3, 8).astype("float32")
    layer = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=1)
    _, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    assert scores.shape == (1, 3, 2, t, t)
    assert _np(scores)[..., future].sum() < 1e-6


@pytest.mark.parametrize("make", [lambda w: MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=w),
                                  lambda w: GroupedQueryAttention(head_dim=2, num_query_heads=2,
                                                                  num_key_value_heads=2, sliding_window=w)])
def test_sliding_window_validation(make):   # both files ::test_sliding_window_validation
    for bad in (0, -3):
        with pytest.raises(ValueError, match="sliding_window"):
            make(bad)


@pytest.mark.parametrize("make", [lambda: MultiHeadAttention(num_heads=8, key_dim=8, dtype="float64"),
                                  lambda: GroupedQueryAttention(head_dim=8, num_query_heads=8,
                                                                num_key_value_heads=8, dtype="float64")])
def test_correctness(make):   # multi_head_attention_test / grouped_query_attention_test ::test_correctness
    n = 8
    query = np.identity(n)[None]
    key = np.identity(n)[None]
    value = np.reshape(np.arange(n * n), (1, n, n)) / 100.0
    layer = make()
    layer.build(query.shape, key.shape, value.shape)
    kernel = np.repeat(np.identity(n)[:, None, :], n, axis=1)
    layer.set_weights([kernel, np.zeros((n, n))] * 3 + [kernel, np.zeros((n,))])
    out, scores = layer(query=query, value=value, key=key, return_attention_scores=True)
    expected_out = np.tile(np.array([2.406, 2.440, 2.473, 2.504, 2.535, 2.568, 2.602, 2.633])[None, :, None],
                           (1, 1, n))
    expected_scores = np.tile((np.full((n, n), 0.1187) + np.eye(n) * (0.1691 - 0.1187))[None, None], (1, n, 1, 1))
    np.testing.assert_allclose(_np(out), expected_out, atol=1e-2)
    np.testing.assert_allclose(_np(scores), expected_scores, atol=1e-2)


def test_mha_constraints():                                   # multi_head_attention_test::test_mha_constraints
    shapes = ((1, 2, 2), (1, 2, 2), (1, 2, 2))
    for arg, names in (("kernel_constraint", ("query_kernel", "key_kernel", "value_kernel", "gate_kernel")),
                       ("bias_constraint", ("query_bias", "key_bias", "value_bias", "gate_bias"))):
        layer = MultiHeadAttention(num_heads=2, key_dim=2, use_gate=True, **{arg: "non_neg"})
        layer.build(*shapes)
        for n in names:
            assert isinstance(layer._weight_constraints[n], nn.constraints.NonNeg)
        # and it acts: negative entries are projected to 0 by apply_constraints
        w = getattr(layer, names[0])
        w.data[...] = -1.0
        layer.apply_constraints()
        assert np.all(_np(w) == 0.0)


def test_mha_output_shape_int_tuple_error(rng):   # multi_head_attention_test::test_multi_head_attention_output_shape_*
    q, v = rng.uniform(size=(2, 4, 16)), rng.uniform(size=(2, 4, 16))
    assert MultiHeadAttention(num_heads=2, key_dim=16, output_shape=8)(query=q, value=v).shape == (2, 4, 8)
    assert MultiHeadAttention(num_heads=2, key_dim=16, output_shape=(8, 8))(query=q, value=v).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="invalid output_shape"):
        MultiHeadAttention(num_heads=2, key_dim=16, output_shape=8.0)


# =================================================================================================
# grouped_query_attention_test.py
# =================================================================================================
@pytest.mark.parametrize("kwargs,n_weights", [
    (dict(num_query_heads=2, num_key_value_heads=2, head_dim=2), 8),
    (dict(num_query_heads=2, num_key_value_heads=2, head_dim=2, use_bias=False, dropout=0.5), 4),
    (dict(num_query_heads=2, num_key_value_heads=2, head_dim=2, use_gate=True), 10),
    (dict(num_query_heads=2, num_key_value_heads=2, head_dim=2, use_bias=False, dropout=0.5, use_gate=True), 5)])
def test_gqa_basics(kwargs, n_weights, rng):                 # grouped_query_attention_test::test_basics
    layer = GroupedQueryAttention(**kwargs)
    assert layer(rng.random((2, 8, 16)), rng.random((2, 4, 16))).shape == (2, 8, 16)
    assert _n_weights(layer) == n_weights and layer.supports_masking


GQA_SHAPES = [("without_key_proj_mha", (4, 8), (2, 8), None, 2, 2), ("with_key_proj_mha", (4, 8), (2, 8), (2, 3), 2, 2),
              ("without_key_proj_gqa", (4, 8), (2, 8), None, 4, 2), ("with_key_proj_gqa", (4, 8), (2, 8), (2, 3), 4, 2),
              ("without_key_value_proj_mqa", (4, 8), (2, 8), None, 4, 1),
              ("with_key_value_proj_mqa", (4, 8), (2, 8), (2, 3), 4, 1)]


@pytest.mark.parametrize("name,qd,vd,kd,hq,hkv", GQA_SHAPES, ids=[c[0] for c in GQA_SHAPES])
def test_gqa_compute_output_shape(name, qd, vd, kd, hq, hkv):   # grouped_query_attention_test::test_compute_output_shape
    layer = GroupedQueryAttention(num_query_heads=hq, num_key_value_heads=hkv, head_dim=2)
    B = 7
    qs, vs, ks = (B,) + qd, (B,) + vd, (B,) + kd if kd else None
    out = layer(query=np.ones(qs), value=np.ones(vs), key=np.ones(ks) if ks else None)
    assert out.shape == layer.compute_output_shape(qs, vs, ks)


@pytest.mark.parametrize("qs,vs,ks", [((2, 4, 8), (2, 2, 7), (2,)), ((2, 4, 8), (2, 2, 8), (2, 1, 7))])
def test_gqa_shape_mismatch_error(qs, vs, ks):           # grouped_query_attention_test::test_shape_mismatch_error
    with pytest.raises(ValueError, match="must be equal"):
        GroupedQueryAttention(num_query_heads=4, num_key_value_heads=4, head_dim=2).compute_output_shape(qs, vs, ks)


# -------------------------------------------------------------------------------------------------
# Keras's symbolic-shape cases, run eagerly (a concrete batch instead of keras.Input's None)
# -------------------------------------------------------------------------------------------------
def test_attention_symbolic_cases_eagerly(rng):
    # attention_test::test_return_attention_scores_with_symbolic_tensors and
    # ::test_symbolic_call_does_not_leak_return_attention_scores
    att = Attention()
    out, scores = att([rng.random((2, 3, 5)), rng.random((2, 4, 5))], return_attention_scores=True)
    assert out.shape == (2, 3, 5) and scores.shape == (2, 3, 4)
    out = att([rng.random((7, 3, 5)), rng.random((7, 4, 5))])
    assert not isinstance(out, (tuple, list)) and out.shape == (7, 3, 5)
    assert att.compute_output_shape([(None, 3, 5), (None, 4, 5)]) == (None, 3, 5)


@pytest.mark.parametrize("shape", [(1, 2, 3), (2, 3, 5)])
def test_mha_symbolic_return_attention_scores_eagerly(shape, rng):
    # multi_head_attention_test::test_symbolic_return_attention_scores
    out = MultiHeadAttention(num_heads=4, key_dim=2)(rng.random(shape), rng.random(shape), return_attention_scores=True)
    assert len(out) == 2
    assert out[0].shape == shape and out[1].shape == (shape[0], 4, shape[1], shape[1])


@pytest.mark.parametrize("want_scores", [True, False])
def test_gqa_symbolic_shapes_eagerly(want_scores, rng):
    # grouped_query_attention_test::test_symbolic_shape_with/without_return_attention_scores
    layer = GroupedQueryAttention(num_query_heads=4, num_key_value_heads=2, head_dim=8)
    out = layer(rng.random((3, 10, 32)), rng.random((3, 15, 32)), return_attention_scores=want_scores)
    if want_scores:
        assert out[0].shape == (3, 10, 32) and out[1].shape == (3, 4, 10, 15)
    else:
        assert out.shape == (3, 10, 32)


# -------------------------------------------------------------------------------------------------
# The cases left out (Keras internals, not layer behaviour) - 18 of the 115 (31 + 4 + 50 + 30 with
# parameterisations); the other 97 are mirrored:
#   attention_test::test_attention_seed_preserved_in_config       - get_config/from_config (serialization)
#   multi_head_attention_test (10): ::test_basics_with_flash_attention, ::test_flash_attention_with_errors,
#       ::test_correctness[enable_flash_attention] - flash attention (JAX/torch backends);
#       ::test_causal_only_skipped_for_subclass, ::test_compute_attention_combines_causal_and_explicit_mask
#       (2 parameterisations) - the _compute_attention override hook of Keras's implementation;
#       ::test_sliding_window_serialization - get_config; ::test_lora, ::test_dtype_policy_map,
#       ::test_quantize_int8 - LoRA, dtype-policy maps and int8 quantization (Keras features tinyattn
#       does not have). [::test_symbolic_return_attention_scores (2) runs eagerly above.]
#   grouped_query_attention_test (7): ::test_basics_with_flash_attention, ::test_flash_attention_with_errors,
#       ::test_correctness[enable_flash_attention], ::test_causal_only_skipped_for_subclass,
#       ::test_compute_attention_combines_causal_and_explicit_mask (2), ::test_sliding_window_serialization.
#       [::test_symbolic_shape_with/without_return_attention_scores run eagerly above.]
#   (attention_test's two symbolic cases run eagerly above.)
