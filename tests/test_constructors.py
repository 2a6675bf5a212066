"""Impossible constructor arguments: a ValueError naming the layer and the argument, at construction."""
import numpy as np
import pytest

from tinyattn import nn

CASES = [
    (lambda: nn.Dense(0), r"Dense: units must be a positive integer, got 0"),
    (lambda: nn.Dense(-3), r"Dense: units must be a positive integer, got -3"),
    (lambda: nn.Dense(True), r"Dense: units must be a positive integer, got True"),
    (lambda: nn.Dense(2.5), r"Dense: units must be a positive integer"),
    (lambda: nn.LSTM(0), r"^LSTM: units must be a positive integer, got 0"),
    (lambda: nn.LSTM(-1), r"^LSTM: units must be a positive integer, got -1"),
    (lambda: nn.GRU(0), r"^GRU: units must be a positive integer, got 0"),
    (lambda: nn.GRU(np.int64(-2)), r"^GRU: units must be a positive integer, got .*-2"),
    (lambda: nn.LSTM(4, activation="relu"), r"^LSTM: only activation='tanh'"),
    (lambda: nn.GRU(4, recurrent_activation="hard_sigmoid"), r"^GRU: only activation='tanh'"),
    (lambda: nn.LSTMCell(0), r"^LSTMCell: units must be a positive integer, got 0"),
    (lambda: nn.GRUCell(-4), r"^GRUCell: units must be a positive integer, got -4"),
    (lambda: nn.LSTMCell(False), r"^LSTMCell: units must be a positive integer, got False"),
    (lambda: nn.Embedding(0, 4), r"Embedding: input_dim .*must be a positive integer, got 0"),
    (lambda: nn.Embedding(10, 0), r"Embedding: output_dim .*must be a positive integer, got 0"),
    (lambda: nn.Embedding(-1, 4), r"Embedding: input_dim .*got -1"),
    (lambda: nn.Embedding(10, 2.5), r"Embedding: output_dim .*got 2.5"),
    (lambda: nn.Dropout(1.0), r"Dropout: rate must be a number in \[0, 1\).*got 1.0"),
    (lambda: nn.Dropout(-0.1), r"Dropout: rate .*got -0.1"),
    (lambda: nn.Dropout(float("nan")), r"Dropout: rate .*got nan"),
    (lambda: nn.Dropout("0.5"), r"Dropout: rate .*got '0.5'"),
    (lambda: nn.Dropout(None), r"Dropout: rate .*got None"),
    (lambda: nn.Conv1D(0, 3), r"Conv1D: filters must be a positive integer, got 0"),
    (lambda: nn.Conv1D(4, 0), r"Conv1D: kernel_size must be a positive integer, got 0"),
    (lambda: nn.Conv1D(4, (3, 3)), r"Conv1D: kernel_size must be an integer or a 1-tuple"),
    (lambda: nn.Conv1D(4, 3, strides=0), r"Conv1D: strides must be a positive integer, got 0"),
    (lambda: nn.Conv1D(4, 3, strides=-2), r"Conv1D: strides must be a positive integer, got -2"),
    (lambda: nn.Conv1D(4, 3, dilation_rate=0), r"Conv1D: dilation_rate must be a positive integer, got 0"),
    (lambda: nn.Conv1D(4, 3, padding="full"), r"Conv1D: padding must be 'valid', 'same' or 'causal', got 'full'"),
    (lambda: nn.Conv1D(4, 3, padding=None), r"Conv1D: padding must be .*got None"),
    (lambda: nn.Conv1D(4, 3, activation="rleu"), r"Conv1D: unknown activation 'rleu' \(argument 'activation'\)"),
    (lambda: nn.Dense(4, activation="rleu"), r"Dense: unknown activation 'rleu' \(argument 'activation'\)"),
    (lambda: nn.Dense(4, activation=3), r"Dense: unknown activation 3"),
    (lambda: nn.Activation("soft_max"), r"Activation: unknown activation 'soft_max'"),
]


@pytest.mark.parametrize("make, message", CASES, ids=[m for _, m in CASES])
def test_impossible_arguments_raise_a_named_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_valid_edge_values_still_work():
    assert nn.Dense(np.int32(3)).units == 3
    assert nn.Dropout(0).rate == 0.0 and nn.Dropout(0.999).rate == 0.999
    assert nn.Embedding(1, 1).embeddings.shape == (1, 1)
    c = nn.Conv1D(2, [3], strides=(1,), padding="CAUSAL")
    assert (c.kernel_size, c.strides, c.padding) == (3, 1, "causal")
    assert nn.LSTM(1).units == 1 and nn.GRUCell(1).units == 1
