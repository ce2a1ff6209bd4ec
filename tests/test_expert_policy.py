"""Shipped experts act row by row: a row's action does not depend on the batch it is in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import choicebc as cb

ENV = "HalfCheetah-v5"


def bits(actions: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(actions, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("threads", [1, 2])
def test_actions_are_bit_identical_in_batches_of_1_10_and_256(threads):
    expert = cb.load_expert(ENV)
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(256, expert.obs_dim)) * 2).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        whole = expert(obs)
        tens = np.concatenate([expert(obs[i : i + 10]) for i in range(0, 256, 10)])
        ones = np.concatenate([expert(obs[i : i + 1]) for i in range(256)])
        perm = rng.permutation(256)
        shuffled = np.empty_like(whole)
        shuffled[perm] = expert(obs[perm])
    finally:
        torch.set_num_threads(before)
    assert whole.shape == (256, expert.act_dim)
    np.testing.assert_array_equal(bits(tens), bits(whole))
    np.testing.assert_array_equal(bits(ones), bits(whole))
    np.testing.assert_array_equal(bits(shuffled), bits(whole))


def test_collected_demonstrations_do_not_depend_on_num_envs():
    """The README's claim: with deterministic actors the data do not depend on ``num_envs``."""
    expert = cb.load_expert(ENV)
    kw = {"ratio": 0.3, "transitions": 2000, "seed": 0, "progress": False}
    one = cb.collect(ENV, expert, "flipped", num_envs=1, **kw)
    four = cb.collect(ENV, expert, "flipped", num_envs=4, **kw)
    np.testing.assert_array_equal(one.observations, four.observations)
    np.testing.assert_array_equal(one.actions, four.actions)
    np.testing.assert_array_equal(one.rewards, four.rewards)
