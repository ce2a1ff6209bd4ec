"""``Mixture.target_posterior`` and ``BCPolicy.data_quality``: what counts as the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from choicebc.heads import Mixture
from choicebc.policy import BCPolicy


def mixture(rho):
    # components 0 and 1 are the same distribution (the target and a copy), 2 is its mirror
    mu = torch.tensor([[[1.0], [1.0], [-1.0]]]).repeat(2, 1, 1)
    var = torch.full((2, 3, 1), 0.01)
    log_pi = torch.log(torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]]))
    return Mixture(log_pi, mu, var, None if rho is None else torch.tensor([rho, rho]))


def test_copies_of_the_target_share_its_posterior():
    y = torch.tensor([[1.0], [-1.0]])  # a clean step, a flipped one
    mix = mixture([1.0, 0.99, -1.0])
    post = mix.posterior(y)
    q = mix.target_posterior(y)
    torch.testing.assert_close(q, post[:, 0] + post[:, 1])
    assert q[0] > 0.999 and q[1] < 1e-6  # component 0 alone would give the clean step 0.29
    assert post[0, 0] == pytest.approx(0.2 / 0.7, rel=1e-4)
    # a component less correlated than rho_min is not the target
    torch.testing.assert_close(mixture([1.0, 0.5, -1.0]).target_posterior(y), post[:, 0])


def test_without_correlations_the_most_probable_component_is_the_target():
    y = torch.tensor([[1.0], [-1.0]])
    mix = mixture(None)  # an MDN: it predicts from component 1 (pi = 0.5)
    torch.testing.assert_close(mix.target_posterior(y), mix.posterior(y)[:, 1])


def test_single_component_heads_have_no_quality_score():
    policy = BCPolicy(3, 2, head="mse")
    with pytest.raises(ValueError, match="no noise model"):
        policy.data_quality(observations=np.zeros((4, 3), np.float32), actions=np.zeros((4, 2)))
