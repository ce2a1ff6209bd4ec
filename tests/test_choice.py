"""One choice of mixture per demonstration (choicebc.choice): the episode likelihood, its
EM gradient, units and groups, the auto criterion, and training end to end."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor

from choicebc.choice import (
    ChoiceError,
    ChoiceSchedule,
    ChoiceTraining,
    demo_log_likelihood,
    flagged_shares,
    merge_copies,
    pick_choice,
    unit_ids,
    unit_log_scores,
)
from choicebc.heads import ChoiceNetHead, Mixture
from choicebc.train import TrainConfig, train_bc


def normal_pdf(y: float, mu: float, var: float) -> float:
    return math.exp(-((y - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_episode_log_likelihood_equals_a_hand_computed_case():
    """Two episodes (2 steps and 1 step), two mixtures, 1-D actions: the likelihood of an
    episode is sum_k pi_k(s_0) prod_t N(a_t; mu_k(s_t), var_k(s_t))."""
    pi = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # row 1's pi is not an episode's
    mu = torch.tensor([[[1.0], [-1.0]], [[0.5], [-0.5]], [[2.0], [-2.0]]])
    var = torch.tensor([[[0.1], [0.5]], [[0.2], [0.3]], [[0.1], [0.4]]])
    y = torch.tensor([[0.9], [0.4], [-1.5]])
    mix = Mixture(log_pi=pi.log(), mu=mu, var=var)
    units = torch.tensor([0, 0, 1])
    first = torch.tensor([True, False, True])
    scores = unit_log_scores(mix.log_pi, mix.component_log_prob(y), units, first, 2)
    ep0 = 0.8 * normal_pdf(0.9, 1.0, 0.1) * normal_pdf(0.4, 0.5, 0.2) + 0.2 * normal_pdf(
        0.9, -1.0, 0.5
    ) * normal_pdf(0.4, -0.5, 0.3)
    ep1 = 0.6 * normal_pdf(-1.5, 2.0, 0.1) + 0.4 * normal_pdf(-1.5, -2.0, 0.4)
    got = demo_log_likelihood(scores)
    assert got.tolist() == pytest.approx([math.log(ep0), math.log(ep1)], rel=1e-5)
    # the per-step mixture (one choice per step) is a different number
    per_step = torch.logsumexp(mix.log_pi + mix.component_log_prob(y), -1)
    assert float(per_step[:2].sum()) != pytest.approx(math.log(ep0), rel=1e-3)


def test_the_em_gradient_is_the_episode_likelihoods_gradient():
    """At q = the units' posterior, the M-step loss (fixed responsibilities) has the gradient
    of the units' negative log-likelihood with respect to every mixture's mean and variance."""
    torch.manual_seed(0)
    head = ChoiceNetHead(8, 3, n_mixtures=3, lambda1=0.0, kl_weight=0.0).double().eval()
    with torch.no_grad():
        head.block.weight.mul_(4.0)
    h = torch.randn(12, 8, dtype=torch.float64)
    y = torch.randn(12, 3, dtype=torch.float64)
    units = torch.tensor([0] * 5 + [1] * 4 + [2] * 3)
    first = torch.zeros(12, dtype=torch.bool)
    first[[0, 5, 9]] = True
    # exact: autograd through the units' log-likelihood
    mix = head(h)
    scores = unit_log_scores(mix.log_pi, mix.component_log_prob(y), units, first, 3)
    exact = -demo_log_likelihood(scores).sum() / 12
    q = torch.softmax(scores.detach(), -1)
    g_exact = torch.autograd.grad(exact, [mix.mu, mix.var], retain_graph=True)
    em = head.loss(mix, y, resp=q[units])
    g_em = torch.autograd.grad(em, [mix.mu, mix.var])
    for a, b in zip(g_exact, g_em, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_permuting_steps_within_an_episode_keeps_its_score_moving_one_changes_it():
    rng = np.random.default_rng(0)
    log_pi = torch.log_softmax(torch.from_numpy(rng.normal(size=(7, 3))), -1)
    dens = torch.from_numpy(rng.normal(size=(7, 3)))
    units = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    first = torch.tensor([True, False, False, False, True, False, False])
    base = unit_log_scores(log_pi, dens, units, first, 2)
    perm = torch.tensor([0, 3, 1, 2, 4, 6, 5])  # within episodes, first steps stay first
    permuted = unit_log_scores(log_pi[perm], dens[perm], units, first, 2)
    assert torch.allclose(base, permuted)
    moved = units.clone()
    moved[3] = 1  # one step of episode 0 now belongs to episode 1
    other = unit_log_scores(log_pi, dens, moved, first, 2)
    assert not torch.allclose(base, other)
    assert torch.allclose(base.sum(0), other.sum(0))  # the same steps, counted elsewhere


def test_groups_tie_episodes_into_one_choice():
    episode_ids = np.repeat(np.arange(4), [3, 2, 4, 1])
    groups = np.array(["bob", "ann", "bob", "ann"])
    units, n = unit_ids(episode_ids, groups, "group")
    assert n == 2
    assert units.tolist() == [0] * 3 + [1] * 2 + [0] * 4 + [1]  # numbered by first appearance
    same, n_ep = unit_ids(episode_ids, groups, "episode")
    assert n_ep == 4 and same.tolist() == episode_ids.tolist()
    # one posterior per group: episodes 0 and 2 share bob's
    rng = np.random.default_rng(1)
    log_pi = torch.log_softmax(torch.from_numpy(rng.normal(size=(10, 2))), -1)
    dens = torch.from_numpy(rng.normal(size=(10, 2)))
    first = torch.from_numpy(
        np.r_[True, False, False, True, False, True, False, False, False, True]
    )
    grouped = unit_log_scores(log_pi, dens, torch.from_numpy(units), first, 2)
    per_ep = unit_log_scores(log_pi, dens, torch.from_numpy(same), first, 4)
    dens_sum = per_ep - unit_log_scores(log_pi, dens * 0, torch.from_numpy(same), first, 4)
    bob_dens = grouped - unit_log_scores(log_pi, dens * 0, torch.from_numpy(units), first, 2)
    assert torch.allclose(bob_dens[0], dens_sum[0] + dens_sum[2])


def test_group_errors_are_clear():
    episode_ids = np.repeat(np.arange(3), 2)
    with pytest.raises(ChoiceError, match="one per episode"):
        unit_ids(episode_ids, np.array([1, 2]), "group")
    with pytest.raises(ChoiceError, match="needs a per-episode group"):
        unit_ids(episode_ids, None, "group")


def test_pick_choice_prefers_the_finer_structure_unless_the_coarser_explains_better():
    assert pick_choice({"step": -1.0, "episode": -1.01}) == "step"  # clean data: a tie
    assert pick_choice({"step": 4.815, "episode": 4.869}) == "step"  # clean HalfCheetah
    assert pick_choice({"step": -1.0, "episode": -9.0}) == "step"  # mixed within episodes
    assert pick_choice({"step": -1.0, "episode": -0.5}) == "episode"
    assert pick_choice({"step": -1.0, "episode": -0.5, "group": -0.51}) == "group"
    assert pick_choice({"step": -1.0, "episode": -0.5, "group": -3.0}) == "episode"


def test_pick_choice_reads_corruption_that_fades_after_the_first_step_as_by_episode():
    worse = {"step": 4.7, "episode": 4.0}  # the warm-up fits a bad driver's own states
    assert pick_choice(worse, {"first": 0.15, "later": 0.01}) == "episode"
    assert pick_choice(worse, {"first": 0.20, "later": 0.18}) == "step"  # by steps: everywhere
    assert pick_choice(worse, {"first": 0.01, "later": 0.0}) == "step"  # clean
    assert pick_choice(worse, {"first": 0.35, "later": 0.08}) == "step"  # fades too little
    # a bad driver identified at the first step and fitted as the target in its own states
    # after it: one mixture per episode cannot explain both, however much it loses
    far_worse = {"step": 4.8, "episode": -11.5}
    assert pick_choice(far_worse, {"first": 0.43, "later": 0.0}) == "episode"
    quality = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    shares = flagged_shares(quality, np.array([0, 1, 2, 0, 1, 2]))
    assert shares == pytest.approx({"first": 0.5, "later": 0.0})


def test_the_warm_up_starts_at_the_majority_drivers_action_not_between_the_drivers():
    """60 % of the actions are +a, 40 % -a, at the same states: the median the warm-up starts
    from is +a, where the mean (0.2 a) would leave the target between the two drivers."""
    from choicebc.policy import BCPolicy
    from choicebc.train import _fit_median

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2000, 3)).astype(np.float32)
    a = np.tanh(obs[:, :2])
    flipped = rng.random(2000) < 0.4
    actions = np.where(flipped[:, None], -a, a).astype(np.float32)
    torch.manual_seed(0)
    policy = BCPolicy(3, 2, head="choicenet", hidden=(32, 32))
    _fit_median(policy, obs, actions, TrainConfig(batch_size=128, seed=0))
    policy.eval()
    with torch.no_grad():
        mu = policy(torch.from_numpy(obs)).numpy()
    assert np.abs(mu - a).mean() < 0.15
    assert np.abs(mu - 0.2 * a).mean() > 0.3


def test_horizon_grows_from_the_first_steps_to_whole_episodes():
    t = np.tile(np.arange(100), 3)
    trainer = ChoiceTraining(
        np.repeat(np.arange(3), 100), t, 3, 2, 1000, 16, ChoiceSchedule(5, 0.1, 0.5)
    )
    e_hs = [trainer.estep_horizon(s) for s in range(0, 1000, 10)]
    assert e_hs[0] == 1 and trainer.estep_horizon(500) == 100
    assert all(a <= b for a, b in zip(e_hs, e_hs[1:], strict=False))
    assert trainer.horizon(0) == 5 and trainer.horizon(400) == trainer.estep_horizon(400) > 5
    assert trainer.rows_in_horizon(0) == 15
    rows = trainer.sample(0, torch.Generator().manual_seed(0))
    assert (torch.from_numpy(t)[rows] < 5).all()


class FixedMixturePolicy(torch.nn.Module):
    """A policy whose mixture is given per row (the observation is the row's index)."""

    def __init__(
        self, log_pi: Tensor, log_density: Tensor, rho: Tensor, var: Tensor | None = None
    ) -> None:
        super().__init__()
        self.log_pi, self.log_density, self.rho = log_pi, log_density, rho
        self.var = torch.ones(*rho.shape, 1) if var is None else var

    def mixture(self, obs: Tensor) -> SimpleNamespace:
        i = obs[:, 0].long()
        return SimpleNamespace(
            log_pi=self.log_pi[i],
            rho=self.rho[i],
            var=self.var[i],
            component_log_prob=lambda a: self.log_density[i],
        )


def test_a_copy_of_the_target_on_a_units_steps_is_the_target_for_that_unit():
    q = torch.tensor([[0.1, 0.7, 0.2], [0.2, 0.3, 0.5]])
    rho = torch.tensor([[1.0, 0.97, 0.5], [1.0, -0.99, 0.96]])
    assert torch.allclose(merge_copies(q, rho), torch.tensor([[0.8, 0.0, 0.2], [0.7, 0.3, 0.0]]))
    # the E-step: unit 0's later steps fit mixture 2 slightly better, and there mixture 2 has
    # become a copy of the target (rho 0.99) although at the first step it is not (rho 0.9)
    t = np.tile(np.arange(4), 2)
    log_pi = torch.log(torch.tensor([[0.5, 0.25, 0.25]])).repeat(8, 1)
    log_density = torch.zeros(8, 3)
    log_density[1:4, 1] = 1.0  # unit 0, steps 1-3: mixture 2 explains them better
    log_density[4:, 2] = 3.0  # unit 1: a broad mixture (rho 0.3) explains it
    rho = torch.tensor([1.0, 0.3, 0.3]).repeat(8, 1)
    rho[0, 1] = 0.9
    rho[1:4, 1] = 0.99
    trainer = ChoiceTraining(np.repeat([0, 1], 4), t, 2, 3, 100, 4, ChoiceSchedule(1, 0.1, 0.5))
    policy = FixedMixturePolicy(log_pi, log_density, rho)
    obs = torch.arange(8, dtype=torch.float32)[:, None]
    trainer.estep(policy, obs, torch.zeros(8, 1), torch.arange(8))
    scores = unit_log_scores(
        log_pi, log_density, torch.tensor(np.repeat([0, 1], 4)), torch.from_numpy(t == 0), 2
    )
    assert torch.softmax(scores, -1)[0].argmax() == 1  # without the merge: mixture 2 takes it
    assert trainer.q[0, 0] > 0.95 and trainer.q[0, 1] == 0.0
    assert trainer.family[0] > 0.95 and trainer.tied[0, 0] == 1.0  # it teaches mu_1
    assert trainer.q[1].argmax() == 2 and trainer.family[1] < 0.01


def test_a_broad_mixture_does_not_tie_a_unit_to_the_target_whatever_its_rho():
    # two units explained by mixture 2 (rho -0.99 at their first steps): unit 0 a flipped
    # driver (mixture 2 as sharp as the target), unit 1 a worse operator whose mixture is
    # broad through Sigma_0 (20x the target's variance) although its rho is -0.99
    t = np.tile(np.arange(3), 2)
    log_pi = torch.log(torch.tensor([[0.6, 0.4]])).repeat(6, 1)
    log_density = torch.tensor([[0.0, 2.0]]).repeat(6, 1)
    rho = torch.tensor([[1.0, -0.99]]).repeat(6, 1)
    var = torch.ones(6, 2, 2)
    var[3:, 1] = torch.tensor([10.0, 30.0])  # unit 1: mean spread 20
    trainer = ChoiceTraining(np.repeat([0, 1], 3), t, 2, 2, 100, 4, ChoiceSchedule(3, 0.1, 0.5))
    policy = FixedMixturePolicy(log_pi, log_density, rho, var)
    obs = torch.arange(6, dtype=torch.float32)[:, None]
    trainer.estep(policy, obs, torch.zeros(6, 2), torch.arange(6))
    assert (trainer.q.argmax(-1) == 1).all()
    assert trainer.tied.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    weights = trainer.loss_weights(torch.arange(6))
    assert weights["tie_weight"][:3, 1].eq(1).all() and weights["tie_weight"][3:, 1].eq(0).all()
    # the same holds for the target's copies: a broad mixture at rho 0.99 over the first
    # steps is not the target's family (rho 0 later, so the merge of copies leaves it alone)
    t = np.tile(np.arange(6), 2)
    rho = torch.tensor([[1.0, 0.99]]).repeat(12, 1)
    rho[t >= 3, 1] = 0.0
    var = torch.ones(12, 2, 2)
    var[6:9, 1] = 20.0  # unit 1's first steps
    trainer = ChoiceTraining(np.repeat([0, 1], 6), t, 2, 2, 100, 4, ChoiceSchedule(3, 0.1, 0.5))
    policy = FixedMixturePolicy(log_pi.repeat(2, 1), log_density.repeat(2, 1), rho, var)
    trainer.estep(policy, torch.arange(12.0)[:, None], torch.zeros(12, 2), torch.arange(12))
    assert (trainer.q.argmax(-1) == 1).all()
    assert trainer.family[0] > 0.99 and trainer.family[1] < 0.01


@dataclass
class EpisodeDemos:
    """Flat arrays shaped like a DemoSet whose corruption comes in whole episodes."""

    observations: np.ndarray
    actions: np.ndarray
    is_corrupt: np.ndarray
    episode_ids: np.ndarray
    episode_lengths: np.ndarray
    timesteps: np.ndarray
    env_id: str = "Toy-v0"
    action_low = -np.ones(2, dtype=np.float32)
    action_high = np.ones(2, dtype=np.float32)


def toy_expert() -> tuple[np.ndarray, np.ndarray]:
    return np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]]), np.array([0.6, -0.4])


def drifting_episodes(n_episodes=60, length=40, bad_share=0.3, seed=0) -> EpisodeDemos:
    """Each episode starts near the origin and drifts along its own direction, the good ones
    one way, the bad ones the other (so later states are visited by one driver only); the
    expert's action is tanh(W s + b), a bad episode records its negation throughout."""
    rng = np.random.default_rng(seed)
    w, b = toy_expert()
    obs, acts, bad_rows, ids, ts = [], [], [], [], []
    bad = rng.random(n_episodes) < bad_share
    for e in range(n_episodes):
        t = np.arange(length)
        direction = -1.0 if bad[e] else 1.0
        s = rng.normal(scale=0.05, size=(length, 3)) + direction * 0.1 * t[:, None]
        a = np.tanh(s @ w + b) * (-1.0 if bad[e] else 1.0)
        obs.append(s), acts.append(a), bad_rows.append(np.full(length, bad[e]))
        ids.append(np.full(length, e)), ts.append(t)
    return EpisodeDemos(
        np.concatenate(obs).astype(np.float32),
        np.concatenate(acts).astype(np.float32),
        np.concatenate(bad_rows),
        np.concatenate(ids),
        np.full(n_episodes, length),
        np.concatenate(ts),
    )


@pytest.fixture(scope="module")
def flipped_point_reach_episodes():
    """choicebc/PointReach-v0, 30 % of 60 episodes driven by the flipped expert: those run
    into a wall for 200 steps while the expert reaches the goal in ~18, so most transitions
    are corrupt, and outside the start states only the flipped driver is seen there."""
    from choicebc.envs import POINT_REACH_ID, PointReachExpert

    import choicebc as cb

    expert = PointReachExpert()
    adversary = cb.make_adversary("flipped", expert)
    return cb.collect(
        POINT_REACH_ID,
        expert,
        adversary,
        ratio=0.3,
        mix="episode",
        episodes=60,
        seed=0,
        progress=False,
    )


def test_one_choice_per_episode_recovers_the_expert_where_per_step_fails(
    flipped_point_reach_episodes,
):
    from choicebc.envs import POINT_REACH_ID

    import choicebc as cb

    demos = flipped_point_reach_episodes
    bad = demos.adversary_share >= 0.5
    assert demos.is_corrupt.mean() > 0.5  # the corrupt driver holds most of the data
    cfg = TrainConfig(steps=1500, batch_size=128, hidden=(64, 64), torch_threads=1)
    scores, quality = {}, {}
    for choice in ("step", "auto"):
        policy = train_bc(demos, config=replace(cfg, choice=choice), progress=False)
        res = cb.evaluate(policy, POINT_REACH_ID, episodes=50, num_envs=50, seed=100)
        scores[policy.choice], quality[policy.choice] = res.normalized_score, policy
    assert set(scores) == {"step", "episode"}  # auto took one choice per episode
    assert scores["step"] < 0  # the per-step model follows the flipped driver
    assert scores["episode"] > 80
    info = quality["episode"].choice_info
    assert info["requested"] == "auto"
    assert info["log_lik_per_step"]["episode"] > info["log_lik_per_step"]["step"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(~bad, quality["episode"].demo_quality(demos)) > 0.8


def test_episode_choice_resumes_to_the_same_result(tmp_path, monkeypatch):
    import choicebc.choice as choice_mod

    demos = drifting_episodes(n_episodes=20, length=12)
    cfg = TrainConfig(
        steps=60,
        batch_size=32,
        hidden=(16,),
        log_every=20,
        checkpoint_every=30,
        choice="episode",
        torch_threads=1,
    )
    full = train_bc(demos, config=cfg, out=tmp_path / "a", progress=False)
    calls = {"n": 0}
    real = choice_mod.ChoiceTraining.sample

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 45:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(choice_mod.ChoiceTraining, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_bc(demos, config=cfg, out=tmp_path / "b", progress=False)
    monkeypatch.setattr(choice_mod.ChoiceTraining, "sample", real)
    resumed = train_bc(demos, config=cfg, out=tmp_path / "b", resume=True, progress=False)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert resumed.choice == "episode"


def test_one_choice_per_episode_keeps_lambda1_at_its_start_after_the_warm_up():
    """With the units identified, eq. (7)'s L2 is MSE-BC on the target's demonstrations: it
    does not anneal (per step it does, to lambda1 = 0.1 by half the steps)."""
    demos = drifting_episodes(n_episodes=10, length=6)
    cfg = TrainConfig(steps=20, batch_size=16, hidden=(8,), choice="episode", torch_threads=1)
    assert train_bc(demos, config=cfg, progress=False).head.lambda1 == 1.0
    per_step = train_bc(demos, config=replace(cfg, choice="step"), progress=False)
    assert per_step.head.lambda1 == pytest.approx(0.1)


def test_episodes_of_one_step_train_and_score_beside_long_ones():
    """Episodes of any length: one-step episodes (shorter than the choice's first steps and
    the warm-up's horizon) train with one choice per episode and get a finite quality."""
    long = drifting_episodes(n_episodes=12, length=30, seed=1)
    lengths = np.array([1, 30, 1, 2, 30, 1] + [30] * 6)  # each episode's first steps kept
    keep = long.timesteps < np.repeat(lengths, 30)
    ids = np.repeat(np.arange(12), lengths)
    demos = EpisodeDemos(
        long.observations[keep],
        long.actions[keep],
        long.is_corrupt[keep],
        ids,
        lengths,
        long.timesteps[keep],
    )
    cfg = TrainConfig(steps=40, batch_size=16, hidden=(8,), torch_threads=1)
    for choice in ("episode", "auto"):
        policy = train_bc(demos, config=replace(cfg, choice=choice), progress=False)
        quality = policy.demo_quality(demos)
        assert quality.shape == (12,)
        assert np.isfinite(quality).all() and ((quality >= 0) & (quality <= 1)).all()


def test_choice_is_saved_with_the_policy_and_checked(tmp_path):
    demos = drifting_episodes(n_episodes=10, length=6)
    cfg = TrainConfig(steps=20, batch_size=16, hidden=(8,), choice="episode", torch_threads=1)
    policy = train_bc(demos, config=cfg, progress=False)
    policy.save(tmp_path / "p")
    from choicebc.policy import BCPolicy

    loaded = BCPolicy.load(tmp_path / "p")
    assert loaded.choice == "episode"
    assert np.allclose(loaded.demo_quality(demos), policy.demo_quality(demos))
    with pytest.raises(ChoiceError, match="head='choicenet'"):
        train_bc(demos, config=replace(cfg, head="mse"), progress=False)
    with pytest.raises(ChoiceError, match="choice must be one of"):
        train_bc(demos, config=replace(cfg, choice="sometimes"), progress=False)
    with pytest.raises(ChoiceError, match="per-episode group"):
        train_bc(demos, config=replace(cfg, choice="group"), progress=False)
