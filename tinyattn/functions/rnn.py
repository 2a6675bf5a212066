"""Moved: the fused LSTM/GRU kernels and their buffer pool live in :mod:`tinyattn.kernels.rnn`.

This module re-exports them so that ``tinyattn.functions.rnn.lstm_sequence`` and friends keep working.
The textbook cells they must equal are in :mod:`tinyattn.nn.recurrent` (``fused=False``).
"""
from ..kernels.rnn import (LSTMCellFn, LSTMSequenceFn, GRUCellFn, GRUSequenceFn,  # noqa: F401
                           lstm_sequence, gru_sequence, release_buffers, buffer_pool_bytes,
                           set_buffer_pool_limit, register_user)

__all__ = ["LSTMCellFn", "LSTMSequenceFn", "GRUCellFn", "GRUSequenceFn", "lstm_sequence", "gru_sequence",
           "release_buffers", "buffer_pool_bytes", "set_buffer_pool_limit"]
