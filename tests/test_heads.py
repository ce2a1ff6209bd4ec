"""Heads: the Cholesky transform's statistics, the mixture likelihood, numerics, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy import stats

from choicebc.heads import (
    HEADS,
    ChoiceNetHead,
    Head,
    MDNHead,
    Mixture,
    TukeyHead,
    head_from_config,
    make_head,
)
from choicebc.heads.cholesky import cholesky_transform, correlated_mean_moments

ALL_HEADS = ["choicenet", "mdn", "mse", "l1", "robust"]
Q, D = 8, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seeded_head(name: str, seed: int = 0, **hparams) -> Head:
    torch.manual_seed(seed)
    return make_head(name, Q, D, **hparams)


def features(n: int = 16, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, Q, generator=torch.Generator().manual_seed(seed))


def test_registry_has_every_head_and_rejects_unknown_names():
    assert set(ALL_HEADS) <= set(HEADS)
    with pytest.raises(ValueError, match="unknown head"):
        make_head("nope", Q, D)
    with pytest.raises(ValueError):
        make_head("choicenet", Q, D, n_mixtures=1)
    with pytest.raises(ValueError):
        make_head("choicenet", Q, D, sigma_z=0.0)
    with pytest.raises(ValueError):
        make_head("choicenet", Q, D, kl_weight=-1.0)
    with pytest.raises(ValueError):
        make_head("mdn", Q, D, prediction="median")


# -- eq. (5): the Cholesky transform ----------------------------------------------------------
@pytest.mark.parametrize("rho", [-0.95, -0.5, 0.0, 0.3, 0.8])
def test_cholesky_transform_gives_correlation_rho_and_closed_form_moments(rho):
    g = torch.Generator().manual_seed(0)
    n, mu_w, sigma_w, sigma_z = 200_000, 0.7, 0.3, 0.5
    w = mu_w + sigma_w * torch.randn(n, generator=g, dtype=torch.float64)
    z = sigma_z * torch.randn(n, generator=g, dtype=torch.float64)
    r = torch.tensor(rho, dtype=torch.float64)
    w_tilde = cholesky_transform(w, z, r, torch.tensor(mu_w), torch.tensor(sigma_w), sigma_z)
    corr = torch.corrcoef(torch.stack([w, w_tilde]))[0, 1].item()
    # sampling error of a correlation ~ (1 - rho^2) / sqrt(n) < 0.0023: 0.01 is ~4 sigma
    if rho != 0.0:
        assert corr == pytest.approx(rho, abs=0.01)
    else:
        assert abs(corr) < 0.01
    # closed form: W~ ~ N(rho mu_W, (1 - rho^2) sigma_Z^2)
    assert w_tilde.mean().item() == pytest.approx(rho * mu_w, abs=0.005)
    assert w_tilde.var().item() == pytest.approx((1 - rho**2) * sigma_z**2, rel=0.02)


def test_cholesky_transform_at_rho_pm1_is_finite_with_finite_gradient():
    rho = torch.tensor([1.0, -1.0, 0.999999], requires_grad=True)
    out = cholesky_transform(
        torch.tensor([0.3, 0.3, 0.3]), torch.tensor([2.0, 2.0, 2.0]), rho,
        torch.tensor(0.5), torch.tensor(0.1), torch.tensor(0.2),
    )  # fmt: skip
    out.sum().backward()
    assert torch.allclose(out[:2].detach(), torch.tensor([0.5, -0.5]), atol=1e-5)
    assert torch.isfinite(rho.grad).all()


def test_correlated_mean_moments_match_sampled_weights():
    """mu_k = W~_k h with W~_k drawn element-wise by eq. (5) has the closed-form moments."""
    g = torch.Generator().manual_seed(0)
    q, d, n = 4, 2, 100_000
    mu_w = torch.randn(q, d, generator=g, dtype=torch.float64)
    sigma_w, sigma_z = 0.4, 0.3
    h = torch.randn(1, q, generator=g, dtype=torch.float64)
    rho = torch.tensor([[1.0, -0.7, 0.2]], dtype=torch.float64)
    mean, var = correlated_mean_moments(h, rho, mu_w, torch.full_like(mu_w, sigma_z))
    w = mu_w + sigma_w * torch.randn(n, 1, q, d, generator=g, dtype=torch.float64)
    z = sigma_z * torch.randn(n, 1, q, d, generator=g, dtype=torch.float64)
    r = rho[0].view(1, 3, 1, 1)
    w_tilde = cholesky_transform(w, z, r, mu_w, torch.tensor(sigma_w), torch.tensor(sigma_z))
    mu = torch.einsum("q,nkqd->nkd", h[0], w_tilde)  # (n, K, D)
    assert torch.allclose(mu.mean(0), mean[0], atol=0.01)
    assert torch.allclose(mu.var(0), var[0], rtol=0.03, atol=1e-6)
    # the correlation of mu_k with mu_1 is rho_k too
    corr = torch.corrcoef(torch.stack([mu[:, 0, 0] - mean[0, 0, 0], mu[:, 1, 0]]))[0, 1]
    assert corr.item() == pytest.approx(-0.7, abs=0.01)


# -- ChoiceNet head -----------------------------------------------------------------------------
def test_target_mixture_mean_is_mu_star_h_in_every_mode():
    h = features()
    for sampling in ("closed_form", "sample", "mean"):
        head = seeded_head("choicenet", sampling=sampling).train()
        mix = head(h)
        assert torch.equal(mix.rho[:, 0], torch.ones(len(h)))
        h1 = torch.cat([h, torch.ones(len(h), 1)], dim=1)  # the Block acts on [h, 1]
        assert torch.allclose(mix.mu[:, 0], head.target_mean(h), atol=1e-6)
        assert torch.allclose(mix.mu[:, 0], h1 @ head.mu_w, atol=1e-6)
        assert torch.allclose(mix.var[:, 0], torch.full_like(mix.var[:, 0], head.tau_inv))
        assert torch.allclose(head.eval().predict(h), head.target_mean(h), atol=1e-6)


def test_eq6_variances_and_eval_means():
    head = seeded_head("choicenet", n_mixtures=4).eval()
    h = features()
    mix = head(h)
    d, k = D, 4
    sigma0 = torch.nn.functional.linear(h, head.block.weight[-d:], head.gate_bias("sigma0")).exp()
    assert torch.allclose(head.correlations(h), mix.rho)
    assert head.gate_bias("pi").shape == (k,) and head.gate_bias("rho").shape == (k - 1,)
    expected_var = (1 - mix.rho**2).unsqueeze(-1) * sigma0.unsqueeze(1) + head.tau_inv
    assert torch.allclose(mix.var, expected_var, rtol=1e-5)
    assert torch.allclose(mix.mu, mix.rho.unsqueeze(-1) * mix.mu[:, :1], atol=1e-6)
    assert torch.allclose(mix.pi.sum(-1), torch.ones(len(h)))


def test_closed_form_and_sampled_means_agree_in_distribution():
    """Two-sample KS test on mu_2 of one example: eq. (5) sampling vs local reparameterisation."""
    h = features(n=1, seed=3)
    draws = {}
    for sampling in ("closed_form", "sample"):
        head = seeded_head("choicenet", n_mixtures=3, sigma_z=0.5, sampling=sampling).train()
        with torch.no_grad():
            head.gate_bias("rho").copy_(torch.tensor([-1.0, 0.4]))  # rho_2 < 0 < rho_3
        torch.manual_seed(7)
        with torch.no_grad():
            draws[sampling] = torch.stack([head(h).mu[0, 1:, 0] for _ in range(3000)])
    for k in range(2):
        a, b = draws["closed_form"][:, k].numpy(), draws["sample"][:, k].numpy()
        assert stats.ks_2samp(a, b).pvalue > 1e-3
        assert a.std() > 0.05  # noise is really there: sqrt(1 - rho^2) sigma_z ||h||


def test_choicenet_loss_is_eq7_plus_eq8():
    head = seeded_head("choicenet", lambda1=0.3, lambda2=0.7, kl_weight=0.05).eval()
    h, y = features(), torch.randn(16, D)
    mix = head(h)
    l2 = ((y - mix.mu[:, 0]) ** 2).sum(-1).mean()
    nll = -mix.log_prob(y).mean()
    kl = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=torch.softmax(mix.rho, -1)),
        torch.distributions.Categorical(logits=mix.log_pi),
    ).mean()
    expected = 0.3 * l2 + 0.7 * nll + 0.05 * kl
    assert head.loss(mix, y).item() == pytest.approx(expected.item(), rel=1e-5)


# -- every head ---------------------------------------------------------------------------------
def test_mixture_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    n, k = 32, 4
    mix = Mixture(
        log_pi=torch.log_softmax(torch.randn(n, k, generator=g), -1),
        mu=torch.randn(n, k, D, generator=g),
        var=torch.rand(n, k, D, generator=g) + 0.05,
    )
    y = torch.randn(n, D, generator=g) * 2
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=mix.log_pi),
        torch.distributions.Independent(torch.distributions.Normal(mix.mu, mix.var.sqrt()), 1),
    )
    assert torch.allclose(mix.log_prob(y), ref.log_prob(y), atol=1e-4)
    post = mix.posterior(y)
    assert torch.allclose(post.sum(-1), torch.ones(n))


@pytest.mark.parametrize("name", ALL_HEADS)
def test_shapes_and_gradients_reach_every_parameter(name):
    head = seeded_head(name).train()
    h = features().requires_grad_()
    mix = head(h)
    k = mix.log_pi.shape[1]
    assert mix.mu.shape == (16, k, D) and mix.var.shape == (16, k, D)
    assert (mix.var > 0).all()
    assert head.mode(mix).shape == (16, D)
    head.loss(mix, torch.randn(16, D)).backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert h.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_HEADS)
@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_extreme_features_stay_finite(name, scale):
    head = seeded_head(name).train()
    mix = head(features(scale=scale))
    loss = head.loss(mix, 1e3 * torch.randn(16, D))
    loss.backward()
    assert torch.isfinite(loss)
    for tensor in (mix.log_pi, mix.mu, mix.var, head.mode(mix)):
        assert torch.isfinite(tensor).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("sampling", ["closed_form", "sample"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_choicenet_with_saturated_rho_has_finite_loss_and_gradients(sampling, sign):
    head = seeded_head("choicenet", sampling=sampling).train()
    with torch.no_grad():
        head.gate_bias("rho").fill_(sign * 50.0)  # tanh(50) == 1.0 exactly in float32
    h = features()
    mix = head(h)
    assert (mix.rho.abs() == 1.0).all()
    loss = head.loss(mix, torch.randn(16, D))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize("name", ALL_HEADS)
def test_save_load_round_trip_gives_identical_outputs(name, tmp_path):
    head = seeded_head(name, seed=3)
    with torch.no_grad():  # move off the initialisation so a fresh head would differ
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_file(head.state_dict(), tmp_path / "head.safetensors")
    torch.manual_seed(99)
    clone = head_from_config(head.config())
    clone.load_state_dict(load_file(tmp_path / "head.safetensors"))
    h = features()
    head.eval(), clone.eval()
    a, b = head(h), clone(h)
    assert type(clone) is type(head) and clone.config() == head.config()
    for x, y in ((a.log_pi, b.log_pi), (a.mu, b.mu), (a.var, b.var)):
        assert torch.equal(x, y)
    assert torch.equal(head.mode(a), clone.mode(b))


@pytest.mark.parametrize("name", ALL_HEADS)
def test_same_seed_same_head_and_same_training_sample(name):
    h = features()
    a, b = seeded_head(name, seed=5).train(), seeded_head(name, seed=5).train()
    torch.manual_seed(1)
    ma = a(h)
    torch.manual_seed(1)
    mb = b(h)
    assert torch.equal(ma.mu, mb.mu)
    assert not torch.equal(seeded_head(name, seed=6)(h).mu, ma.mu)


def test_mdn_prediction_modes():
    head = seeded_head("mdn", n_mixtures=3)
    log_pi = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    mu = torch.tensor([[[1.0], [2.0], [4.0]]]).expand(1, 3, 1).clone()
    mix = Mixture(log_pi=log_pi, mu=mu, var=torch.ones_like(mu))
    assert head.mode(mix).item() == 2.0
    mean_head = MDNHead(Q, 1, n_mixtures=3, prediction="mean")
    assert mean_head.mode(mix).item() == pytest.approx(0.2 + 1.0 + 1.2)


def test_pointwise_losses():
    y = torch.tensor([[0.0], [0.0], [0.0], [0.0], [100.0]])
    mu = torch.zeros(5, 1, 1, requires_grad=True)
    mix = Mixture(log_pi=torch.zeros(5, 1), mu=mu, var=torch.ones_like(mu))
    assert make_head("mse", Q, 1).loss(mix, y).item() == pytest.approx(2000.0)
    assert make_head("l1", Q, 1).loss(mix, y).item() == pytest.approx(20.0)
    # Tukey: residuals beyond c * 1.4826 * MAD cost a constant, so the outlier gets no gradient
    y = torch.tensor([[0.1], [-0.2], [0.3], [-0.1], [0.2], [100.0]])
    mu = torch.zeros(6, 1, 1, requires_grad=True)
    mix = Mixture(log_pi=torch.zeros(6, 1), mu=mu, var=torch.ones_like(mu))
    loss = TukeyHead(Q, 1).loss(mix, y)
    loss.backward()
    assert mu.grad[5].item() == 0.0
    assert (mu.grad[:5] != 0).all()
    assert loss.item() < TukeyHead(Q, 1).c ** 2 / 6


def test_choicenet_config_documents_defaults():
    head = ChoiceNetHead(Q, D)
    cfg = head.config()
    for key in ("n_mixtures", "tau_inv", "lambda1", "lambda2", "kl_weight", "sigma_z"):
        assert key in cfg and math.isfinite(cfg[key])


def test_lambda1_schedule_anneals_the_l2_pull_and_set_progress_applies_it():
    from choicebc.heads.choicenet import lambda1_schedule

    assert lambda1_schedule(0.1, 1.0, 0.5, 0, 100) == pytest.approx(1.0)
    assert lambda1_schedule(0.1, 1.0, 0.5, 25, 100) == pytest.approx(0.55)  # cosine midpoint
    assert lambda1_schedule(0.1, 1.0, 0.5, 50, 100) == lambda1_schedule(0.1, 1.0, 0.5, 99, 100)
    assert lambda1_schedule(0.1, 1.0, 0.5, 99, 100) == pytest.approx(0.1)
    assert lambda1_schedule(0.1, None, 0.5, 0, 100) == 0.1  # no start: the constant
    head = make_head("choicenet", Q, D, lambda1=0.2, lambda1_start=3.0, lambda1_anneal=0.25)
    head.set_progress(0, 40)
    assert head.lambda1 == pytest.approx(3.0)
    head.set_progress(5, 40)
    assert head.lambda1 == pytest.approx(1.6)
    head.set_progress(10, 40)
    assert head.lambda1 == pytest.approx(0.2)
    constant = make_head("choicenet", Q, D, lambda1=0.2, lambda1_start=None)
    constant.set_progress(0, 40)
    assert constant.lambda1 == 0.2
    make_head("mdn", Q, D).set_progress(0, 40)  # other heads: a no-op
    with pytest.raises(ValueError, match="lambda1_start"):
        make_head("choicenet", Q, D, lambda1_start=-1.0)
    with pytest.raises(ValueError, match="lambda1_anneal"):
        make_head("choicenet", Q, D, lambda1_start=1.0, lambda1_anneal=2.0)


def test_rho_init_sets_the_starting_correlation():
    head = seeded_head("choicenet", n_mixtures=3, rho_init=-0.76).eval()
    with torch.no_grad():
        head.block.weight.zero_()
    rho = head(features()).rho
    assert torch.allclose(rho[:, 1:], torch.full_like(rho[:, 1:], -0.76), atol=1e-6)
    with pytest.raises(ValueError, match="rho_init"):
        make_head("choicenet", Q, D, rho_init=1.0)


@pytest.mark.parametrize("stop", [False, True])
def test_kl_gradient_reaches_rho_only_without_stop_grad(stop):
    """With the NLL and L2 switched off, only eq. (8) acts: it moves pi, and rho unless stopped."""
    head = seeded_head("choicenet", lambda1=0.0, lambda2=0.0, kl_weight=1.0, kl_stop_grad_rho=stop)
    head.loss(head.eval()(features()), torch.randn(16, D)).backward()
    grad = head.block.bias.grad
    assert grad[D + 4 : D + 9].abs().sum() > 0  # pi gate
    rho_grad = grad[D : D + 4].abs().sum()
    assert (rho_grad == 0) if stop else (rho_grad > 0)


@pytest.mark.parametrize("sampling", ["closed_form", "sample", "mean"])
@pytest.mark.parametrize("fused", [False, True])
def test_isolate_target_keeps_the_other_mixtures_from_moving_mu_1(sampling, fused):
    """The regional mirror: data near -mu_1, every other mixture at rho = -1 (mu_k = -mu_1
    nearly fits them) and no L2. As the paper, those mixtures push mu_1 away from the data (to
    bring -mu_1 closer); isolated, mu_1 gets only its own likelihood's gradient, which vanishes
    this far (4 standard deviations) from the data."""

    def mu_grad(isolate: bool) -> torch.Tensor:
        head = seeded_head(
            "choicenet", seed=2, lambda1=0.0, sampling=sampling, isolate_target=isolate
        ).double()
        with torch.no_grad():
            head.gate_bias("rho").fill_(-6.0)  # rho_k = tanh(-6) = -0.99999
            head.gate_bias("mu").fill_(2.0)
        h = features(n=32).double()
        with torch.no_grad():
            y = -head.target_mean(h) - 0.3
        torch.manual_seed(3)
        loss = head.training_loss(h, y) if fused else head.loss(head(h), y)
        loss.backward()
        return head.block.weight.grad[:D]  # the mu_* rows

    tied, isolated = mu_grad(False), mu_grad(True)
    assert tied.abs().max() > 1e-2
    assert isolated.abs().max() < 1e-6 * tied.abs().max()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "hparams",
    [
        {},
        {"kl_stop_grad_rho": True},
        {"sampling": "mean"},
        {"lambda1": 0.0, "kl_weight": 1.0},
        {"isolate_target": True},
    ],
)
def test_fused_training_loss_equals_the_reference_loss_and_its_gradients(hparams, training):
    """ChoiceNet's hand-written backward against autograd through forward() + loss(), in
    float64, with rho spread over (-1, 1) and the same closed-form noise draw."""
    head = seeded_head("choicenet", seed=4, **hparams).double().train(training)
    with torch.no_grad():
        head.block.weight.mul_(5.0)  # |rho| up to ~1, pi and Sigma_0 far from uniform
    h = features(n=64).double().requires_grad_()
    y = torch.randn(64, D, dtype=torch.float64)
    params = [h, *head.parameters()]
    torch.manual_seed(7)
    ref = head.loss(head(h), y)
    ref_grads = torch.autograd.grad(ref, params)
    torch.manual_seed(7)
    fused = head.training_loss(h, y)
    fused_grads = torch.autograd.grad(fused, params)
    assert torch.allclose(fused, ref, rtol=1e-12, atol=0)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("with_resp", [True, False])
def test_fused_loss_with_fixed_responsibilities_equals_the_reference(with_resp, training):
    """The demonstration-level choice's M-step (fixed responsibilities, per-step L2 and KL
    weights) through the fused node equals autograd through forward() + loss()."""
    head = seeded_head("choicenet", seed=5).double().train(training)
    with torch.no_grad():
        head.block.weight.mul_(5.0)
    h = features(n=64).double().requires_grad_()
    y = torch.randn(64, D, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    resp = torch.softmax(3 * torch.randn(64, head.k, generator=gen, dtype=torch.float64), -1)
    resp = resp if with_resp else None
    l2_w = torch.rand(64, generator=gen, dtype=torch.float64)
    l2_w = None if with_resp and training else l2_w  # None with resp: the target family's share
    kl_w = (torch.rand(64, generator=gen) < 0.3).double()
    tie_w = (torch.rand(64, head.k, generator=gen) < 0.5).double()
    params = [h, *head.parameters()]
    torch.manual_seed(7)
    ref = head.loss(head(h), y, resp=resp, l2_weight=l2_w, kl_weight=kl_w, tie_weight=tie_w)
    ref_grads = torch.autograd.grad(ref, params)
    torch.manual_seed(7)
    fused = head.training_loss(h, y, resp=resp, l2_weight=l2_w, kl_weight=kl_w, tie_weight=tie_w)
    fused_grads = torch.autograd.grad(fused, params)
    assert torch.allclose(fused, ref, rtol=1e-12, atol=0)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # unit weights and no responsibilities: exactly the per-step loss
    ones = torch.ones(64, dtype=torch.float64)
    torch.manual_seed(7)
    plain = head.training_loss(h, y)
    torch.manual_seed(7)
    assert torch.allclose(
        head.training_loss(h, y, l2_weight=ones, kl_weight=ones), plain, rtol=1e-12
    )


@pytest.mark.parametrize("scale", [1e-4, 1e4])
@pytest.mark.parametrize("rho_bias", [0.0, 50.0, -50.0])
def test_fused_training_loss_stays_finite_for_extreme_features_and_saturated_rho(scale, rho_bias):
    head = seeded_head("choicenet").train()
    with torch.no_grad():
        head.gate_bias("rho").fill_(rho_bias)  # +-50: tanh == +-1.0 exactly in float32
    h = features(scale=scale).requires_grad_()
    loss = head.training_loss(h, 1e3 * torch.randn(16, D))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(h.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_choicenet_losses_reject_unknown_weights():
    head = seeded_head("choicenet").train()
    h, y = features(), torch.randn(16, D)
    with pytest.raises(TypeError, match="l2_weight"):
        head.loss(head(h), y, l2_weights=torch.ones(16))
    with pytest.raises(TypeError, match="resp"):
        head.training_loss(h, y, responsibilities=torch.ones(16, 5))
