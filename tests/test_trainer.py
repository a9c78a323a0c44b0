"""The training sampler: every row once an epoch, batches of nearly equal length, an order that
depends only on (seed, epoch)."""

from __future__ import annotations

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from ftlab.trainer import EpochSeededLengthSampler

BATCH = 32


def padded_tokens(order: list[int], lengths: np.ndarray) -> int:
    return sum(int(lengths[order[i : i + BATCH]].max()) * len(order[i : i + BATCH]) for i in range(0, len(order), BATCH))


def test_each_epoch_is_a_permutation_in_batches_of_nearly_equal_length():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)  # 31 batches of 32, then one of 8
    sampler = EpochSeededLengthSampler(BATCH, list(lengths), seed=7)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    batches = [lengths[order[i : i + BATCH]] for i in range(0, 1000, BATCH)]
    assert batches[0].max() == lengths.max()  # the longest batch first: too large for memory fails at once
    # as little padding as batches cut from the sorted rows can have
    assert padded_tokens(order, lengths) == padded_tokens(list(np.argsort(-lengths)), lengths)
    assert batches[-1].max() == lengths.min() and len(batches[-1]) == 8  # the short batch last
    grouped = list(LengthGroupedSampler(BATCH, lengths=list(lengths), generator=torch.Generator().manual_seed(7)))
    assert padded_tokens(order, lengths) < padded_tokens(grouped, lengths)


def test_the_order_depends_on_seed_and_epoch_only():
    lengths = list(np.random.default_rng(1).integers(3, 60, size=300))
    a, b = EpochSeededLengthSampler(BATCH, lengths, seed=7), EpochSeededLengthSampler(BATCH, lengths, seed=7)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second  # a new epoch draws new batches and a new batch order
    list(b)  # b has served its own first epoch: a resumed run that re-creates the sampler
    b.set_epoch(1)
    assert list(b) == second
    assert list(EpochSeededLengthSampler(BATCH, lengths, seed=8)) != first
