"""Sequential passes keyword arguments (mask=, training=) to the layers that take them."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn


def test_mask_reaches_the_recurrent_layer(rng):
    ids = rng.integers(1, 10, (3, 6))
    ids[0, 4:] = 0
    ids[2, 2:] = 0
    mask = ids != 0
    ta.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(5), nn.Dense(2))
    got = model(ta.tensor(ids), mask=mask).numpy()
    emb, lstm, dense = model
    want = dense(lstm(emb(ta.tensor(ids)), mask=mask)).numpy()
    np.testing.assert_array_equal(got, want)
    unmasked = model(ta.tensor(ids)).numpy()
    assert not np.allclose(got[0], unmasked[0])     # the mask was not dropped
    np.testing.assert_array_equal(got[1], unmasked[1])


def test_training_reaches_dropout_and_is_accepted_everywhere(rng):
    x = ta.tensor(rng.standard_normal((4, 50)).astype(np.float32))
    ta.manual_seed(0)
    model = nn.Sequential(nn.Dense(50), nn.Dropout(0.5))
    model.eval()
    out = model(x, training=True).numpy()
    assert (out == 0).mean() > 0.3                   # dropout ran: training=True reached it
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x).numpy())
    dense_only = nn.Sequential(nn.Dense(3), nn.Dense(2))
    dense_only(x, training=False)                    # Keras models all take training=


def test_unknown_keyword_is_a_clear_type_error(rng):
    x = ta.tensor(rng.standard_normal((2, 4, 3)).astype(np.float32))
    model = nn.Sequential(nn.LSTM(5), nn.Dense(2))
    with pytest.raises(TypeError, match=r"Sequential: no layer takes the keyword argument\(s\) \['maks'\].*LSTM, Dense"):
        model(x, maks=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match=r"\['mask'\]"):
        nn.Sequential(nn.Dense(2))(x, mask=np.ones((2, 4), bool))


def test_nested_sequential_and_kwargs_layers(rng):
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    ta.manual_seed(1)
    inner = nn.Sequential(nn.LSTM(5, return_sequences=True))
    model = nn.Sequential(inner, nn.Dense(2))
    got = model(ta.tensor(x), mask=mask).numpy()
    np.testing.assert_array_equal(got, model[1](inner[0](ta.tensor(x), mask=mask)).numpy())

    class Anything(nn.Module):
        def forward(self, x, **kw):
            self.seen = kw
            return x

    a = Anything()
    nn.Sequential(nn.Dense(2), a)(ta.tensor(x), foo=1)
    assert a.seen == {"foo": 1}
