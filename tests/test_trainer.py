"""The training sampler: every row once an epoch, length-grouped batches, an order that depends only
on (seed, epoch), so a resumed run sees the batches the uninterrupted one saw."""

from __future__ import annotations

import numpy as np

from ftlab.training.trainer import EpochSeededLengthSampler

BATCH = 32


def padded_tokens(order: list[int], lengths: np.ndarray) -> int:
    return sum(int(lengths[order[i : i + BATCH]].max()) * len(order[i : i + BATCH]) for i in range(0, len(order), BATCH))


def test_each_epoch_is_a_permutation_in_length_grouped_batches():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    order = list(EpochSeededLengthSampler(BATCH, list(lengths), seed=7))
    assert sorted(order) == list(range(1000))
    shuffled = list(np.random.default_rng(7).permutation(1000))
    assert padded_tokens(order, lengths) < 0.8 * padded_tokens(shuffled, lengths)


def test_the_order_depends_on_seed_and_epoch_only():
    lengths = list(np.random.default_rng(1).integers(3, 60, size=300))
    a, b = EpochSeededLengthSampler(BATCH, lengths, seed=7), EpochSeededLengthSampler(BATCH, lengths, seed=7)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second  # a new epoch draws new batches
    b.set_epoch(1)  # a resumed run re-creates the sampler and goes straight to epoch 1
    assert list(b) == second
    assert list(EpochSeededLengthSampler(BATCH, lengths, seed=8)) != first
