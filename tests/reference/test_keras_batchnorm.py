"""BatchNormalization against Keras 3: outputs, gradients (input and every trainable weight) and the
updated moving statistics, in training and in inference, with masks and on another axis."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tinyattn as ta  # noqa: E402
from tinyattn import nn  # noqa: E402

RTOL = ATOL = 1e-5


@pytest.mark.parametrize("shape,axis,masked", [((8, 5), -1, False), ((4, 6, 3), -1, False),
                                               ((4, 6, 3), -1, True), ((2, 3, 4, 5), 1, False),
                                               ((2, 4, 5, 3), -2, False)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batchnorm_matches_keras(shape, axis, masked, training, center, scale):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    G = rng.standard_normal(shape).astype(np.float32)
    mask = (rng.random(shape[:-1]) > 0.3) if masked else None
    kl = keras.layers.BatchNormalization(axis=axis, momentum=0.8, epsilon=1e-3, center=center, scale=scale)
    kl.build(shape)
    kl.set_weights([rng.standard_normal(w.shape).astype(np.float32) if i < len(kl.weights) - 1
                    else rng.uniform(0.5, 2, w.shape).astype(np.float32)
                    for i, w in enumerate(kl.get_weights())])
    ours = nn.BatchNormalization(axis=axis, momentum=0.8, epsilon=1e-3, center=center, scale=scale)
    ours(x, training=False)
    ours.set_weights(kl.get_weights())

    xt = tf.constant(x)
    kw = {} if mask is None else {"mask": tf.constant(mask)}
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = kl(xt, training=training, **kw)
        loss = tf.reduce_sum(out * G)
    want_grads = tape.gradient(loss, [xt] + list(kl.trainable_weights))

    xo = ta.tensor(x, requires_grad=True)
    y = ours(xo, training=training, mask=mask)
    grads = ta.grad((y * ta.tensor(G)).sum(), [xo] + ours.parameters())

    np.testing.assert_allclose(y.numpy(), out.numpy(), rtol=RTOL, atol=ATOL)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g.numpy(), np.asarray(w), rtol=1e-4, atol=1e-4)
    for a, b in zip(ours.get_weights(), kl.get_weights()):            # moving statistics too
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_weight_order_and_names_match_keras():
    kl = keras.layers.BatchNormalization()
    kl.build((2, 3))
    ours = nn.BatchNormalization()
    ours(np.zeros((2, 3), np.float32), training=False)
    assert [w.path.split("/")[-1] for w in kl.weights] == [w.name for w in ours.weights()]
    for a, b in zip(kl.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)
