"""fit / evaluate / predict on tiny models built from the engine directly."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import losses, optim
from tinyattn.nn import Module, Parameter
from tinyattn.train import History, evaluate, fit, predict


class Linear(Module):
    """y = x W + b: x (B, d_in) -> (B, d_out). Records the batches it sees, by mode."""

    def __init__(self, d_in, d_out, seed=0, dtype=np.float32):
        super().__init__()
        r = np.random.default_rng(seed)
        self.w = Parameter(ta.tensor((r.standard_normal((d_in, d_out)) * 0.1).astype(dtype)).data)
        self.b = Parameter(ta.tensor(np.zeros(d_out, dtype)).data)
        object.__setattr__(self, "seen", {True: [], False: []})

    def forward(self, x):
        self.seen[self.training].append(x.numpy())
        return x @ self.w + self.b


class TwoInputs(Module):
    """y = a W + b V (two inputs)."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(ta.tensor(np.zeros((3, 1), np.float32)).data)
        self.v = Parameter(ta.tensor(np.zeros((2, 1), np.float32)).data)

    def forward(self, a, b):
        return a @ self.w + b @ self.v


def _regression(rng, n=96):
    x = rng.standard_normal((n, 3)).astype(np.float32)
    w = np.array([[1.0], [-2.0], [0.5]], np.float32)
    return x, x @ w + 0.3


def test_fit_reduces_regression_loss(rng):
    x, y = _regression(rng)
    model = Linear(3, 1)
    before = evaluate(model, "mse", x, y)
    h = fit(model, "mse", optim.Adam(model.parameters(), lr=0.05), x, y, epochs=30, batch_size=16, verbose=0)
    assert isinstance(h, History) and h.history is h and h.epoch == list(range(30))
    assert set(h) == {"loss"} and len(h["loss"]) == 30
    assert h["loss"][-1] < 0.05 * h["loss"][0]
    after = evaluate(model, "mse", x, y)
    assert after < 0.05 * before
    np.testing.assert_allclose(model.w.numpy()[:, 0], [1.0, -2.0, 0.5], atol=0.1)


def test_epoch_loss_is_batch_size_weighted_mean(rng):
    """With lr = 0 nothing changes, so every epoch's loss equals evaluate()'s (sizes 16+16+8)."""
    x, y = _regression(rng, n=40)
    model = Linear(3, 1)
    h = fit(model, "mse", optim.SGD(model.parameters(), lr=0.0), x, y, epochs=2, batch_size=16, verbose=0)
    full = losses.mse(y, model(ta.tensor(x))).item()
    assert h["loss"] == pytest.approx([full, full], rel=1e-5)
    assert evaluate(model, "mse", x, y, batch_size=16) == pytest.approx(full, rel=1e-5)


def test_validation_split_takes_the_last_fraction(rng):
    n = 50
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.zeros((n, 1), np.float32)
    model = Linear(1, 1)
    h = fit(model, "mse", optim.SGD(model.parameters(), lr=0.0), x, y, epochs=2, batch_size=8,
            validation_split=0.3, verbose=0)
    assert set(h) == {"loss", "val_loss"} and len(h["val_loss"]) == 2
    split_at = 35                                             # floor(50 · 0.7), like Keras
    train_seen = np.concatenate(model.seen[True])[:, 0]
    val_seen = np.concatenate(model.seen[False])[:, 0]
    assert sorted(train_seen.tolist()) == sorted(2 * list(range(split_at)))
    assert val_seen.tolist() == 2 * list(range(split_at, n))      # in order, every epoch
    assert not np.array_equal(train_seen[:split_at], np.arange(split_at))   # shuffled
    expected_val = float(((x[split_at:] @ model.w.numpy() + model.b.numpy()) ** 2).mean())
    assert h["val_loss"][0] == pytest.approx(expected_val, rel=1e-5)


def test_shuffle_is_seeded_and_optional(rng):
    x, y = _regression(rng, n=32)
    runs = []
    for _ in range(2):
        ta.manual_seed(123)
        model = Linear(3, 1)
        runs.append(fit(model, "mse", optim.SGD(model.parameters(), lr=0.05), x, y, epochs=3,
                        batch_size=8, verbose=0)["loss"])
        order = np.concatenate(model.seen[True])
    assert runs[0] == runs[1]
    model = Linear(3, 1)
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.05), x, y, epochs=1, batch_size=8,
        shuffle=False, verbose=0)
    np.testing.assert_array_equal(np.concatenate(model.seen[True]), x)
    assert not np.array_equal(order[:32], x)


def test_modes_and_restore(rng):
    x, y = _regression(rng, n=20)
    model = Linear(3, 1)
    model.eval()
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.01), x, y, epochs=1, batch_size=10,
        validation_split=0.5, verbose=0)
    assert len(model.seen[True]) == 1 and len(model.seen[False]) == 1
    assert model.training is False                               # restored
    model.train()
    predict(model, x, batch_size=7)
    assert model.training is True and len(model.seen[False]) == 1 + 3


def test_predict_matches_forward_and_is_numpy(rng):
    x, _ = _regression(rng, n=23)
    model = Linear(3, 2)
    out = predict(model, x, batch_size=5)
    assert isinstance(out, np.ndarray) and out.shape == (23, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, x @ model.w.numpy() + model.b.numpy(), rtol=1e-6, atol=1e-6)
    out64 = predict(model, x.astype(np.float64))                   # float inputs cast to the model dtype
    assert out64.dtype == np.float32


def test_predict_builds_no_graph(rng):
    class Spy(Linear):
        def forward(self, x):
            y = super().forward(x)
            object.__setattr__(self, "grad_flag", y.requires_grad)
            return y
    model = Spy(3, 1)
    predict(model, rng.standard_normal((4, 3)))
    assert model.grad_flag is False


def test_multi_input_and_validation_data(rng):
    a = rng.standard_normal((64, 3)).astype(np.float32)
    b = rng.standard_normal((64, 2)).astype(np.float32)
    y = a @ np.array([[1.0], [2.0], [3.0]], np.float32) - b @ np.array([[1.0], [1.0]], np.float32)
    model = TwoInputs()
    h = fit(model, losses.MeanSquaredError(), optim.Adam(model.parameters(), lr=0.1), (a, b), y,
            epochs=40, batch_size=16, validation_data=((a[:16], b[:16]), y[:16]), verbose=0)
    assert h["val_loss"][-1] < 0.01 * h["val_loss"][0]
    assert predict(model, [a, b]).shape == (64, 1)


@pytest.mark.parametrize("kind", ["binary", "binary_logits", "sparse", "categorical", "callable"])
def test_accuracy_metric(kind, rng):
    n = 120
    x = rng.standard_normal((n, 2)).astype(np.float32)
    label = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    if kind == "binary":
        loss, y, d_out = "binary_crossentropy", label[:, None].astype(np.float32), 1
    elif kind == "binary_logits":
        loss, y, d_out = losses.BinaryCrossentropy(from_logits=True), label.astype(np.float32), 1
    elif kind == "sparse":
        loss, y, d_out = losses.SparseCategoricalCrossentropy(from_logits=True), label, 2
    elif kind == "categorical":
        loss, y, d_out = losses.CategoricalCrossentropy(from_logits=True), np.eye(2, dtype=np.float32)[label], 2
    else:
        def loss(t, p):
            return losses.sparse_categorical_crossentropy(t, p, from_logits=True)
        y, d_out = label, 2

    class Model(Linear):
        def forward(self, x):
            z = super().forward(x)
            return z.sigmoid() if kind == "binary" else z

    model = Model(2, d_out)
    h = fit(model, loss, optim.Adam(model.parameters(), lr=0.1), x, y, epochs=15, batch_size=16,
            validation_split=0.25, metrics=("accuracy",), verbose=0)
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h["accuracy"][-1] > 0.9 and h["val_accuracy"][-1] > 0.85
    res = evaluate(model, loss, x, y, metrics=["accuracy"])
    p = predict(model, x)
    pred_label = (p[:, 0] > (0.5 if kind == "binary" else 0.0)) if d_out == 1 else p.argmax(-1)
    assert res["accuracy"] == pytest.approx((pred_label == label).mean())
    assert res["loss"] == pytest.approx(evaluate(model, loss, x, y), rel=1e-6)


def test_progress_output(rng, capsys):
    x, y = _regression(rng, n=16)
    model = Linear(3, 1)
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.01), x, y, epochs=2, batch_size=8, verbose=2,
        validation_split=0.25)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].startswith("Epoch 2/2") and "loss: " in out[1] and "val_loss: " in out[1]
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.01), x, y, epochs=1, batch_size=8, verbose=1)
    captured = capsys.readouterr()
    assert "Epoch 1/1" in captured.out + captured.err
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.01), x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_clipnorm_limits_the_step(rng):
    x, y = _regression(rng, n=8)
    y = y * 1000
    model = Linear(3, 1)
    w0 = model.w.numpy()
    fit(model, "mse", optim.SGD(model.parameters(), lr=1.0), x, y, epochs=1, batch_size=8, verbose=0,
        clipnorm=0.5)
    step = np.sqrt(((model.w.numpy() - w0) ** 2).sum() + (model.b.numpy() ** 2).sum())
    assert step == pytest.approx(0.5, rel=1e-4)


def test_errors(rng):
    x, y = _regression(rng, n=10)
    model = Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        fit(model, "mse", opt, x, y[:9], verbose=0)
    with pytest.raises(ValueError, match="cannot be split"):
        fit(model, "mse", opt, x[:1], y[:1], validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="validation_split must lie in"):
        fit(model, "mse", opt, x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        fit(model, "mse", opt, x, y, metrics=["f1"], verbose=0)
    with pytest.raises(ValueError, match="unknown loss"):
        fit(model, "nope", opt, x, y, verbose=0)
    with pytest.raises(TypeError, match="the loss must return a scalar Tensor"):
        fit(model, lambda t, p: losses.mse(t, p, reduction="none"), opt, x, y, verbose=0)
    with pytest.raises(ValueError, match="different numbers of samples"):
        predict(TwoInputs(), (x, x[:5, :2]))


def test_warns_when_optimizer_misses_lazily_built_weights(rng):
    class Lazy(Module):
        def __init__(self):
            super().__init__()
            self.scale = Parameter(ta.tensor(np.ones(1, np.float32)).data)

        def build(self, shape):
            self.w = Parameter(ta.tensor(np.zeros((shape[-1], 1), np.float32)).data)

        def forward(self, x):
            return (x @ self.w) * self.scale

    x, y = _regression(rng, n=8)
    model = Lazy()
    opt = optim.SGD(model.parameters(), lr=0.1)         # made too early: only `scale`
    with pytest.warns(UserWarning, match=r"1 trainable parameter\(s\) of the model are not in the optimizer"):
        fit(model, "mse", opt, x, y, epochs=1, verbose=0)


@pytest.mark.slow
def test_lstm_example_runs():
    """The example trains an Embedding/LSTM/Dense classifier to >= 95% and reloads it bit-identically."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "lstm_sequence_classification.py"
    spec = importlib.util.spec_from_file_location("lstm_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main() == 0


def test_predict_multiple_outputs(rng):
    class Two(Linear):
        def forward(self, x):
            y = super().forward(x)
            return [y, y * 2.0]

    x, _ = _regression(rng, n=11)
    a, b = predict(Two(3, 2), x, batch_size=4)
    assert a.shape == b.shape == (11, 2)
    np.testing.assert_allclose(b, 2 * a, rtol=1e-6)


def test_fit_with_library_layers(rng):
    """nn.Sequential of Dense layers (built lazily by one call before the optimizer is made)."""
    import warnings
    x = rng.standard_normal((128, 2)).astype(np.float32)
    y = np.sin(2 * x[:, :1]) * x[:, 1:]
    ta.manual_seed(0)
    model = ta.nn.Sequential(ta.nn.Dense(16, activation="tanh"), ta.nn.Dense(1))
    predict(model, x[:1])                                        # builds the layers
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # every parameter is in the optimizer
        h = fit(model, "mse", optim.Adam(model.parameters(), lr=0.02), x, y, epochs=40, batch_size=32,
                validation_split=0.25, verbose=0)
    assert h["loss"][-1] < 0.2 * h["loss"][0] and h["val_loss"][-1] < 0.3 * h["val_loss"][0]


# --- issue 7: NaN, empty data, batch_size, own shuffling generator, reproducible weights -------------

def test_one_nan_in_the_data_stops_fit_with_epoch_and_batch(rng):
    """Before: relu turned the NaN into 0 in the forward but NaN reached the weights through the
    gradient, while fit printed a finite loss. Now fit stops before the update."""
    x, y = _regression(rng, n=32)
    x[21, 1] = np.nan
    ta.manual_seed(0)
    model = ta.nn.Sequential(ta.nn.Dense(4, activation="relu"), ta.nn.Dense(1))
    model(ta.tensor(x[:1]))
    before = [p.numpy() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"fit: the loss is nan at epoch 1/2, batch 3/4 .*"
                                                 r"terminate_on_nan=False"):
        fit(model, "mse", optim.SGD(model.parameters(), lr=0.1), x, y, epochs=2, batch_size=8,
            shuffle=False, verbose=0)
    after = [p.numpy() for p in model.parameters()]
    assert all(np.isfinite(a).all() for a in after)          # the NaN batch never reached the weights
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))   # batches 1-2 did train
    h = fit(model, "mse", optim.SGD(model.parameters(), lr=0.1), x, y, epochs=1, batch_size=8,
            shuffle=False, verbose=0, terminate_on_nan=False)
    assert np.isnan(h["loss"][0])                            # switched off: trains on, reports NaN


def test_relu_model_loss_is_nan_for_a_nan_input():
    model = ta.nn.Dense(1, activation="relu")
    x = np.array([[np.nan, 1.0], [1.0, 1.0]], np.float32)
    assert np.isnan(predict(model, x)[0]).all()


def test_empty_data_and_zero_batch_size_are_clear_errors(rng):
    model = Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x0, y0 = np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32)
    with pytest.raises(ValueError, match=r"fit: x is empty \(0 samples"):
        fit(model, "mse", opt, x0, y0, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: x is empty"):
        evaluate(model, "mse", x0, y0)
    with pytest.raises(ValueError, match=r"predict: x is empty"):
        predict(model, x0)
    x, y = _regression(rng, n=8)
    with pytest.raises(ValueError, match=r"fit: validation_data x is empty"):
        fit(model, "mse", opt, x, y, validation_data=(x0, y0), verbose=0)
    for bs in (0, -1, 2.5, None):
        with pytest.raises(ValueError, match=rf"fit: batch_size must be a positive integer, got {bs}"):
            fit(model, "mse", opt, x, y, batch_size=bs, verbose=0)
        with pytest.raises(ValueError, match="evaluate: batch_size must be a positive integer"):
            evaluate(model, "mse", x, y, batch_size=bs)
        with pytest.raises(ValueError, match="predict: batch_size must be a positive integer"):
            predict(model, x, batch_size=bs)


def test_fit_shuffles_with_its_own_generator(rng):
    """fit(seed=s) shuffles the same way whatever else draws from tinyattn's generator meanwhile,
    and without seed= a manual_seed fixes it."""
    x, y = _regression(rng, n=32)
    seen = []
    for other_draws in (0, 5):
        model = Linear(3, 1)
        ta.manual_seed(other_draws)
        fit(model, "mse", optim.SGD(model.parameters(), lr=0.05), x, y, epochs=2, batch_size=8,
            verbose=0, seed=7)
        seen.append(np.concatenate(model.seen[True]))
    np.testing.assert_array_equal(seen[0], seen[1])
    model = Linear(3, 1)
    fit(model, "mse", optim.SGD(model.parameters(), lr=0.05), x, y, epochs=2, batch_size=8,
        verbose=0, seed=8)
    assert not np.array_equal(np.concatenate(model.seen[True]), seen[0])


def _small_lstm(seed):
    ta.manual_seed(seed)
    model = ta.nn.Sequential(ta.nn.LSTM(6), ta.nn.Dense(1))
    model(ta.tensor(np.zeros((1, 5, 3), np.float32)))
    return model


def _sequence_data():
    r = np.random.default_rng(3)
    x = r.standard_normal((40, 5, 3)).astype(np.float32)
    return x, x.sum(axis=(1, 2))[:, None].astype(np.float32) * 0.1


def test_two_threads_train_like_a_sequential_run():
    import threading
    x, y = _sequence_data()

    def train(model, seed, out):
        fit(model, "mse", optim.Adam(model.parameters(), lr=0.01), x, y, epochs=3, batch_size=8,
            verbose=0, seed=seed)
        out.append([p.numpy() for p in model.parameters()])

    sequential = []
    for s in (1, 2):
        train(_small_lstm(s), 10 + s, sequential)
    models = [_small_lstm(1), _small_lstm(2)]                # built in order: the init is seeded
    results = [[], []]
    threads = [threading.Thread(target=train, args=(m, 10 + s, results[i]))
               for i, (m, s) in enumerate(zip(models, (1, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seq, thr in zip(sequential, results):
        for a, b in zip(seq, thr[0]):
            np.testing.assert_array_equal(a, b)


_TRAIN_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {root!r})
import tinyattn as ta
from tinyattn import optim
from tinyattn.train import fit
clutter = [[object() for _ in range(k % 7 + 1)] for k in range(int(sys.argv[1]))]   # what else the
del clutter[::2]                                      # process did before: moves memory addresses
ta.manual_seed(1234)


class Model(ta.nn.Module):             # one Dense shared by every time step: T gradient terms of one
    def __init__(self):                # generation summed into its kernel (float32, order-sensitive)
        super().__init__()
        self.lstm = ta.nn.LSTM(8, return_sequences=True)
        self.head = ta.nn.Dense(1)

    def forward(self, x):
        h = self.lstm(x)
        return sum(self.head(h[:, t]) for t in range(h.shape[1])).sigmoid()


model = Model()
r = np.random.default_rng(0)
x = r.standard_normal((48, 6, 4)).astype(np.float32)
y = (x[:, :, 0].sum(axis=1, keepdims=True) > 0).astype(np.float32)
model(ta.tensor(x[:1]))
fit(model, "binary_crossentropy", optim.Adam(model.parameters(), lr=0.01), x, y, epochs=2,
    batch_size=8, verbose=0)
h = hashlib.sha256()
for p in model.parameters():
    h.update(p.numpy().tobytes())
print(h.hexdigest())
"""


def test_three_fresh_processes_give_bit_identical_weights():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _TRAIN_SCRIPT.format(root=root)
    hashes = set()
    for clutter in (0, 1000, 5003):
        run = subprocess.run([sys.executable, "-c", code, str(clutter)], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        hashes.add(run.stdout.strip())
    assert len(hashes) == 1 and len(next(iter(hashes))) == 64, hashes


def test_fit_reads_the_device_once_per_batch(backend, rng):
    """On the device, a training epoch waits for the device once per batch (the loss value for the
    epoch mean) and nowhere else: no hidden ``float()``/``.item()``/``asnumpy`` in the loop. Counted
    by the strict CuPy stand-in (tests/strict_xp.py); skips on NumPy and on a real GPU."""
    import strict_xp
    if backend != "cupy" or ta.backend.default_xp() is not strict_xp:
        pytest.skip("counts the strict stand-in's device->host syncs")
    x, y = _regression(rng, n=64)
    model = ta.nn.Dense(1)
    model(ta.tensor(x[:2]))                                          # builds the layer on the device
    assert ta.backend.is_gpu_array(model.kernel.data)
    opt = optim.Adam(model.parameters(), lr=0.01)
    strict_xp.reset_syncs()
    fit(model, "mse", opt, x, y, epochs=1, batch_size=16, verbose=0, shuffle=True)
    assert strict_xp.syncs <= 4, dict(strict_xp.sync_counts)        # 64 samples / 16 = 4 batches
    strict_xp.reset_syncs()
    fit(model, "mse", opt, x, y, epochs=1, batch_size=16, verbose=0, metrics=["accuracy"])
    assert strict_xp.syncs <= 4 + 1, dict(strict_xp.sync_counts)    # accuracy: counted on the device, one read
    strict_xp.reset_syncs()
    out = predict(model, x, batch_size=16)
    assert isinstance(out, np.ndarray) and strict_xp.syncs <= 4, dict(strict_xp.sync_counts)
