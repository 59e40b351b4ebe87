"""Low-level helpers (models/torch_utils.py): padding, length-sorted token-budget batches, softmax, pooling."""
import numpy as np
import pytest
import torch

from ml_backend.models.torch_utils import length_batches, mean_pool, pad_batch, sigmoid, softmax


def test_pad_batch_pads_right_and_masks_the_padding():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    labels, _ = pad_batch([[1], [2, -100, 3]], pad_id=-100)
    assert labels.tolist() == [[1, -100, -100], [2, -100, 3]]


@pytest.mark.parametrize("batch_size, budget", [(2, None), (None, 12), (3, 10), (None, None)])
def test_length_batches_sort_by_length_and_respect_both_limits(batch_size, budget):
    lengths = [5, 1, 4, 4, 2, 9, 3]
    batches = length_batches(lengths, batch_size, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first: little padding
    for b in batches:
        assert batch_size is None or len(b) <= batch_size
        assert budget is None or len(b) == 1 or max(lengths[i] for i in b) * len(b) <= budget
    if batch_size is None and budget is None:
        assert len(batches) == 1


def test_softmax_sigmoid_and_mean_pool():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]])
    p = softmax(x)
    assert np.allclose(p.sum(1), 1) and np.allclose(p[1], 1 / 3) and p[0].argmax() == 2
    assert np.allclose(sigmoid(np.array([0.0])), 0.5)
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]  # padding never counts
